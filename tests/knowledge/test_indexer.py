"""Background indexing: documents queued at upload are indexed in order with progress; a server
that stopped mid-way indexes what it left the next time it starts."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest
from corpus import RETURNS_MD, SHIPPING_HTML

from aigc.apps.chat.conversations import NotFoundError
from aigc.knowledge.indexer import Indexer
from aigc.knowledge.store import KnowledgeStore, pending_documents
from aigc.store import Database

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apps"))


def test_queued_documents_are_indexed_in_order_with_progress(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/kb.db")
    store = KnowledgeStore(db)
    kb = store.create("shop")["id"]
    first = store.queue_document(kb, "returns.md", RETURNS_MD)
    second = store.queue_document(kb, "shipping.html", SHIPPING_HTML)
    gone = store.queue_document(kb, "gone.txt", "这一份在索引前就被删除了。".encode())
    assert first["status"] == "queued" and len(pending_documents(db)) == 3
    store.delete_document(kb, gone["id"])
    seen: list[tuple[int, int]] = []
    indexer = Indexer(db)

    futures = [indexer.submit(kb, d["id"], None) for d in (first, second, gone)]
    assert futures[0].result(timeout=120)["status"] == "indexed"
    assert futures[1].result(timeout=120)["status"] == "indexed"
    with pytest.raises(NotFoundError):
        futures[2].result(timeout=120)
    assert pending_documents(db) == [] and indexer.progress(first["id"]) is None
    assert store.search([kb], "退货政策", 3)[0].filename == "returns.md"
    done = store.index_document(kb, first["id"], lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, done["chunks"]) and seen[-1] == (done["chunks"], done["chunks"])
    indexer.close()


def test_a_restarted_server_indexes_what_was_left(tmp_path):
    from app_harness import scripted_server

    url = f"sqlite:///{tmp_path}/app.db"
    store = KnowledgeStore(Database(url))
    kb = store.create("left over")["id"]
    doc = store.queue_document(kb, "returns.md", RETURNS_MD)  # as if the server stopped here
    server, _ = scripted_server(url)
    try:
        deadline = time.monotonic() + 120
        while True:
            docs = httpx.get(f"{server.url}/api/knowledge-bases/{kb}/documents").json()["data"]
            if docs[0]["status"] == "indexed" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert docs[0]["id"] == doc["id"] and docs[0]["status"] == "indexed" and docs[0]["chunks"] > 0
    finally:
        server.stop()


def test_an_interrupted_add_is_finished_by_the_next(tmp_path):
    store = KnowledgeStore(Database(f"sqlite:///{tmp_path}/kb.db"))
    kb = store.create("cli")["id"]
    left = store.queue_document(kb, "returns.md", RETURNS_MD)  # `aigc kb add` stopped here (Ctrl-C)
    done = store.add_document(kb, "returns.md", RETURNS_MD)
    assert done["id"] == left["id"] and done["status"] == "indexed" and len(store.documents(kb)) == 1
