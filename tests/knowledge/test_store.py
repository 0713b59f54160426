"""Knowledge bases in the database (SQLite with sqlite-vec; PostgreSQL too when the tests have it):
documents indexed alone, duplicates detected, deletes take chunks and vectors, hybrid search with
an explicit "no relevant source", and owners that do not see each other's bases."""

from __future__ import annotations

import pytest
from corpus import PRIVACY_PDF_LINES, RETURNS_MD, SHIPPING_HTML, WARRANTY_TXT_GB, docx_bytes, pdf_bytes
from sqlalchemy import text

from aigc.accounts import UserStore
from aigc.apps.chat.conversations import NotFoundError
from aigc.knowledge import vectors
from aigc.knowledge.store import KnowledgeError, KnowledgeStore
from aigc.store import Database


@pytest.fixture
def shop(database_url):
    store = KnowledgeStore(Database(database_url))
    kb = store.create("shop")
    for name, data in [("returns.md", RETURNS_MD), ("shipping.html", SHIPPING_HTML),
                       ("warranty.txt", WARRANTY_TXT_GB), ("members.docx", docx_bytes()),
                       ("privacy.pdf", pdf_bytes(PRIVACY_PDF_LINES))]:
        assert store.add_document(kb["id"], name, data)["status"] == "indexed", name
    return store, kb["id"]


def _vector_count(store: KnowledgeStore) -> int:
    with store.db.engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM kb_vectors")).scalar())


@pytest.mark.parametrize(("query", "filename"), [
    ("退货政策是什么", "returns.md"), ("退货的运费谁承担", "returns.md"), ("how many days do I have to return an item",
                                                                   "returns.md"),
    ("is shipping free", "shipping.html"), ("how long does international delivery take", "shipping.html"),
    ("保修多久", "warranty.txt"),
    ("when do my points expire", "members.docx"), ("do you sell my data", "privacy.pdf"),
])
def test_hybrid_search_finds_the_right_document(shop, query, filename):
    store, kb = shop
    hits = store.search([kb], query, 3)
    assert hits and hits[0].filename == filename, [(h.filename, h.similarity, h.bm25) for h in hits]
    doc = store.document_text(kb, hits[0].document_id)
    assert doc["text"][hits[0].start:hits[0].end] == hits[0].text  # the span a citation highlights


def test_no_relevant_source_is_an_empty_answer(shop):
    store, kb = shop
    assert store.search([kb], "what is the capital of France", 3) == []
    assert store.search([kb], "床前明月光", 3) == []


def test_bad_files_fail_alone_duplicates_and_deletes(shop):
    store, kb = shop
    before = _vector_count(store)
    failed = store.add_document(kb, "broken.pdf", b"%PDF-1.4 broken")
    assert failed["status"] == "failed" and "broken.pdf" in failed["error"]
    with pytest.raises(KnowledgeError) as e:
        store.add_document(kb, "copy-of-returns.md", RETURNS_MD)  # the same bytes
    assert e.value.status == 409
    docs = {d["filename"]: d for d in store.documents(kb)}
    assert docs["returns.md"]["status"] == "indexed" and docs["returns.md"]["chunks"] > 0
    store.delete_document(kb, docs["returns.md"]["id"])
    assert _vector_count(store) == before - docs["returns.md"]["chunks"]  # its vectors went too
    assert all(h.filename != "returns.md" for h in store.search([kb], "退货政策", 5))
    store.delete(kb)
    assert _vector_count(store) == 0


def test_reindex_replaces_chunks_and_vectors_in_place(shop):
    store, kb = shop
    before_vectors = _vector_count(store)
    docs = {d["filename"]: d for d in store.documents(kb)}
    again = store.index_document(kb, docs["members.docx"]["id"])
    assert again["status"] == "indexed" and again["chunks"] == docs["members.docx"]["chunks"]
    assert _vector_count(store) == before_vectors  # replaced, not added
    assert store.search([kb], "when do my points expire", 3)[0].filename == "members.docx"
    assert [d["status"] for d in store.reindex(kb)] == ["indexed"] * 5
    assert _vector_count(store) == before_vectors
    with pytest.raises(NotFoundError):
        store.index_document(kb, 987654)


def test_owners_do_not_see_each_others_knowledge_bases(database_url):
    db = Database(database_url)
    users = UserStore(db)
    a, b = users.add("a", None), users.add("b", None)
    mine, theirs = KnowledgeStore(db, a.id), KnowledgeStore(db, b.id)
    kb = mine.create("private")["id"]
    mine.add_document(kb, "returns.md", RETURNS_MD)
    assert theirs.list() == [] and [k["name"] for k in mine.list()] == ["private"]
    for call in (lambda: theirs.get(kb), lambda: theirs.search([kb], "退货"), lambda: theirs.delete(kb),
                 lambda: theirs.add_document(kb, "x.md", b"# x\n\ny"), lambda: theirs.documents(kb)):
        with pytest.raises(NotFoundError):
            call()
    theirs.create("private")  # names are per owner


def test_the_database_vector_extension_is_used(database_url):
    db = Database(database_url)
    with db.engine.connect() as conn:
        backend = vectors.backend_of(conn)
    # sqlite-vec is a dependency; pgvector only where the PostgreSQL server has the extension.
    assert backend == ("sqlite-vec" if db.is_sqlite else backend) and backend in ("sqlite-vec", "pgvector", "exact")
