"""Indexing in the background: the server stores an upload at once (`queued`) and one worker
thread parses, chunks and embeds documents in order (embedding uses every core, so one at a time
is as fast as several), reporting each document's progress. The upload route waits for its
documents a little while, so small files come back `indexed` in the same response; big ones come
back `queued` or `indexing` with their progress and finish on their own.

A server that stops mid-way leaves documents `queued` or `indexing`; the next start indexes them
again (`resume`), from the file each document keeps.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any

from aigc.apps.chat.conversations import NotFoundError
from aigc.knowledge.embedder import Embedder
from aigc.knowledge.store import KnowledgeStore, pending_documents
from aigc.store import Database

log = logging.getLogger("aigc.knowledge")


class Indexer:
    def __init__(self, db: Database, embedder: Embedder | None = None):
        self.db = db
        self._embedder = embedder
        self._queue: queue.Queue[tuple[int, int, int | None, Future] | None] = queue.Queue()
        self._progress: dict[int, tuple[int, int]] = {}  # document -> (chunks embedded, chunks)
        self._waiting: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, kb_id: int, doc_id: int, owner: int | None) -> Future:
        """Index a stored document; the future ends with its document dict (indexed or failed)."""
        with self._lock:
            known = self._waiting.get(doc_id)
            if known is not None:
                return known
            future: Future = Future()
            self._waiting[doc_id] = future
            self._progress[doc_id] = (0, 0)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="aigc-kb-indexer", daemon=True)
                self._thread.start()
        self._queue.put((kb_id, doc_id, owner, future))
        return future

    def resume(self) -> int:
        """Queue every document a previous run left unfinished; returns how many."""
        pending = pending_documents(self.db)
        for kb_id, doc_id, owner in pending:
            self.submit(kb_id, doc_id, owner)
        if pending:
            log.warning("indexing %d document(s) left unfinished by the last run", len(pending))
        return len(pending)

    def progress(self, doc_id: int) -> dict[str, int] | None:
        """{"done", "total"} chunks for a document waiting or being indexed, else None."""
        with self._lock:
            p = self._progress.get(doc_id)
        return None if p is None else {"done": p[0], "total": p[1]}

    def annotate(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Documents with their progress, where they have one."""
        for d in docs:
            if d.get("status") in ("queued", "indexing"):
                d["progress"] = self.progress(d["id"])
        return docs

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            kb_id, doc_id, owner, future = item
            store = KnowledgeStore(self.db, owner, self._embedder)

            def report(done: int, total: int, doc_id: int = doc_id) -> None:
                with self._lock:
                    self._progress[doc_id] = (done, total)

            try:
                future.set_result(store.index_document(kb_id, doc_id, report))
            except NotFoundError as e:  # deleted (or its knowledge base) while it waited
                future.set_exception(e)
            except Exception as e:  # noqa: BLE001 -- the worker must outlive any one document
                log.exception("indexing document %s failed", doc_id)
                future.set_exception(e)
            finally:
                with self._lock:
                    self._progress.pop(doc_id, None)
                    self._waiting.pop(doc_id, None)
