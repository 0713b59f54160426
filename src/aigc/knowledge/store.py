"""Knowledge bases of one owner: create, list, delete; add documents (parse -> chunk -> BM25 terms
and vectors, in one transaction per document); search them (hybrid retrieval).

Retrieval fuses BM25 (lexical.py) and the dense neighbours (vectors.py) by reciprocal-rank
fusion. A hit counts as a source only if its meaning is very close (cosine >= MIN_SIMILARITY), or
it is fairly close and shares rare words with the query (cosine >= MIN_SIMILARITY_WITH_WORDS and
BM25 >= MIN_BM25), or it shares many (BM25 >= STRONG_BM25). e5's cosines run high even for
unrelated text in the same language (a weather question scores 0.85 against Chinese shop rules),
so meaning alone must clear a high bar. When nothing passes, the answer is an explicit "no
relevant source" (an empty list), never the least bad chunks.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select

from aigc.apps.chat.conversations import NotFoundError
from aigc.knowledge import vectors
from aigc.knowledge.chunking import chunk_document
from aigc.knowledge.embedder import Embedder, default_embedder
from aigc.knowledge.lexical import BM25Index, tokens
from aigc.knowledge.parsing import DocumentError, Parsed, parse
from aigc.store import Database
from aigc.store.models import KBChunk, KBDocument, KnowledgeBase

RRF_K = 60
_CJK = re.compile(r"[\u3400-\u9fff]")
CANDIDATES = 50
MIN_SIMILARITY = 0.875  # multilingual-e5-small cosine; see the docstring
MIN_SIMILARITY_WITH_WORDS = 0.78
MIN_BM25 = 1.5
STRONG_BM25 = 6.0
MAX_NAME = 200
EMBED_BATCH = 16  # chunks per embedding call: progress is reported between calls
QUERY_CACHE_SIZE = 256  # recent query vectors (a chat searches the same follow-up query again on regenerate)
_QUERY_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="aigc-kb-query")
_QUERY_CACHE: dict[tuple[str, str], Any] = {}
_QUERY_CACHE_LOCK = threading.Lock()


class KnowledgeError(ValueError):
    """A request about knowledge bases that cannot be done; `status` is the HTTP status it means."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid_request"):
        super().__init__(message)
        self.status, self.code = status, code


@dataclass
class Hit:
    chunk_id: int
    kb_id: int
    document_id: int
    filename: str
    text: str
    heading: str
    start: int
    end: int
    score: float  # the fused rank score
    similarity: float | None  # cosine to the query, when the dense search found it
    bm25: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"chunk_id": self.chunk_id, "knowledge_base_id": self.kb_id,
                "document": {"id": self.document_id, "filename": self.filename}, "text": self.text,
                "heading": self.heading, "start": self.start, "end": self.end, "score": round(self.score, 6),
                "similarity": None if self.similarity is None else round(self.similarity, 4),
                "bm25": None if self.bm25 is None else round(self.bm25, 3)}


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).isoformat()


def _kb_dict(kb: KnowledgeBase, documents: int = 0, chunks: int = 0) -> dict[str, Any]:
    return {"id": kb.id, "name": kb.name, "description": kb.description, "embedding_model": kb.embedding_model,
            "documents": documents, "chunks": chunks, "created_at": _iso(kb.created_at),
            "updated_at": _iso(kb.updated_at)}


def _doc_dict(d: KBDocument) -> dict[str, Any]:
    return {"id": d.id, "knowledge_base_id": d.kb_id, "filename": d.filename, "kind": d.kind, "size": d.size,
            "sha256": d.sha256, "status": d.status, "error": d.error, "chunks": d.chunk_count,
            "created_at": _iso(d.created_at), "indexed_at": _iso(d.indexed_at)}


class _LexicalCache:
    """BM25 indexes per knowledge base, rebuilt when the base changed (its updated_at)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._indexes: dict[int, tuple[Any, BM25Index]] = {}

    def get(self, db: Database, kb_id: int, version: Any) -> BM25Index:
        with self._lock:
            cached = self._indexes.get(kb_id)
            if cached is not None and cached[0] == version:
                return cached[1]
        with db.session() as s:
            rows = s.execute(select(KBChunk.id, KBChunk.tokens).where(KBChunk.kb_id == kb_id)).all()
        index = BM25Index((int(i), t.split()) for i, t in rows)
        with self._lock:
            self._indexes[kb_id] = (version, index)
        return index


_LEXICAL = _LexicalCache()


class KnowledgeStore:
    def __init__(self, db: Database, owner: int | None = None, embedder: Embedder | None = None):
        self.db = db
        self.owner = owner
        self._embedder = embedder

    def scoped(self, owner: int | None) -> KnowledgeStore:
        return KnowledgeStore(self.db, owner, self._embedder)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = default_embedder()
        return self._embedder

    def _mine(self) -> Any:
        return KnowledgeBase.user_id.is_(None) if self.owner is None else KnowledgeBase.user_id == self.owner

    def _kb(self, s: Any, kb_id: int) -> KnowledgeBase:
        kb = s.get(KnowledgeBase, kb_id)
        if kb is None or kb.user_id != self.owner:
            raise NotFoundError("knowledge base", kb_id)
        return kb

    # ---- knowledge bases ----------------------------------------------------------------------

    def create(self, name: str, description: str = "") -> dict[str, Any]:
        name = " ".join((name or "").split())
        if not name or len(name) > MAX_NAME:
            raise KnowledgeError(f"a knowledge base needs a name of 1-{MAX_NAME} characters")
        with self.db.session() as s:
            if s.scalar(select(KnowledgeBase.id).where(self._mine(), KnowledgeBase.name == name)) is not None:
                raise KnowledgeError(f"a knowledge base named {name!r} exists already", 409, "name_taken")
            kb = KnowledgeBase(name=name, description=description or "", user_id=self.owner,
                               embedding_model=self.embedder.name)
            s.add(kb)
            s.flush()
            return _kb_dict(kb)

    def list(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            docs = (select(KBDocument.kb_id, func.count(KBDocument.id).label("n"),
                           func.coalesce(func.sum(KBDocument.chunk_count), 0).label("c"))
                    .group_by(KBDocument.kb_id).subquery())
            rows = s.execute(select(KnowledgeBase, func.coalesce(docs.c.n, 0), func.coalesce(docs.c.c, 0))
                             .outerjoin(docs, docs.c.kb_id == KnowledgeBase.id).where(self._mine())
                             .order_by(KnowledgeBase.id))
            return [_kb_dict(kb, int(n), int(c)) for kb, n, c in rows]

    def by_name(self, name: str) -> dict[str, Any]:
        for kb in self.list():
            if kb["name"] == name:
                return kb
        raise NotFoundError("knowledge base", name)

    def get(self, kb_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            kb = self._kb(s, kb_id)
            docs = list(s.scalars(select(KBDocument).where(KBDocument.kb_id == kb_id).order_by(KBDocument.id)))
            out = _kb_dict(kb, len(docs), sum(d.chunk_count for d in docs))
            out["documents_list"] = [_doc_dict(d) for d in docs]
            return out

    def delete(self, kb_id: int) -> None:
        with self.db.session() as s:
            kb = self._kb(s, kb_id)
            s.execute(delete(KBChunk).where(KBChunk.kb_id == kb_id))  # rows first: their vectors go with them
            s.delete(kb)

    def owned(self, kb_ids: list[int]) -> list[int]:
        """Those of the ids that are knowledge bases of this owner, in the order given."""
        with self.db.session() as s:
            mine = set(s.scalars(select(KnowledgeBase.id).where(KnowledgeBase.id.in_(kb_ids), self._mine())))
        return [k for k in dict.fromkeys(kb_ids) if k in mine]

    def check_access(self, kb_ids: list[int]) -> list[int]:
        """The ids, if every one is a knowledge base of this owner (else the first unknown: 404)."""
        with self.db.session() as s:
            for kb_id in kb_ids:
                self._kb(s, kb_id)
        return list(dict.fromkeys(kb_ids))

    # ---- documents ----------------------------------------------------------------------------

    def documents(self, kb_id: int) -> list[dict[str, Any]]:
        return self.get(kb_id)["documents_list"]

    def add_document(self, kb_id: int, filename: str, data: bytes,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Parse, chunk and index one file now. A file that cannot be read is stored as `failed`
        with its reason (and the call returns it); the same file twice is a 409 (unless an earlier
        try was interrupted: then this one finishes it)."""
        doc = self.queue_document(kb_id, filename, data, resume=True)
        return self.index_document(kb_id, doc["id"], progress)

    def queue_document(self, kb_id: int, filename: str, data: bytes, *, resume: bool = False) -> dict[str, Any]:
        """Store a file as a `queued` document (indexer.py indexes it); the same file twice is a 409.
        `resume`: the same file left unfinished (an interrupted `aigc kb add`) is returned to index."""
        filename = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()[:255] or "document"
        digest = hashlib.sha256(data).hexdigest()
        with self.db.session() as s:
            self._kb(s, kb_id)
            same = s.scalar(select(KBDocument).where(KBDocument.kb_id == kb_id, KBDocument.sha256 == digest,
                                                     KBDocument.status.in_(("indexed", "queued", "indexing"))))
            if same is not None and resume and same.status != "indexed":
                return _doc_dict(same)
            if same is not None:
                raise KnowledgeError(f"{filename}: the same file is in this knowledge base already "
                                     f"(as {same.filename}, document {same.id})", 409, "duplicate_document")
            doc = KBDocument(kb_id=kb_id, filename=filename, kind="text", sha256=digest, size=len(data),
                             status="queued", chunk_count=0, text="", original=data)
            s.add(doc)
            s.flush()
            return _doc_dict(doc)

    def index_document(self, kb_id: int, doc_id: int,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Parse, chunk and embed a document from its stored file: a queued one, or again (after a
        failure, or when the parser, chunker or embedding model changed). Old chunks and vectors
        are replaced in one transaction, so searches see the old or the new ones, never none.
        `progress(done, total)` hears about the chunks embedded so far."""
        with self.db.session() as s:
            self._kb(s, kb_id)
            doc = s.get(KBDocument, doc_id)
            if doc is None or doc.kb_id != kb_id:
                raise NotFoundError("document", doc_id)
            filename, data, text, kind = doc.filename, doc.original, doc.text, doc.kind
            doc.status = "indexing"
        # Stored before files were kept: its extracted text, without headings.
        parsed = Parsed(text, [], kind) if data is None else None
        return self._index(kb_id, doc_id, filename, data, parsed, progress)

    def reindex(self, kb_id: int) -> list[dict[str, Any]]:
        with self.db.session() as s:
            self._kb(s, kb_id)
            ids = list(s.scalars(select(KBDocument.id).where(KBDocument.kb_id == kb_id).order_by(KBDocument.id)))
        return [self.index_document(kb_id, doc_id) for doc_id in ids]

    def _embed(self, texts: list[str], progress: Callable[[int, int], None] | None) -> Any:
        parts = []
        for at in range(0, len(texts), EMBED_BATCH):
            parts.append(self.embedder.passages(texts[at:at + EMBED_BATCH]))
            if progress is not None:
                progress(min(at + EMBED_BATCH, len(texts)), len(texts))
        return np.concatenate(parts) if parts else self.embedder.passages([])

    def _index(self, kb_id: int, doc_id: int, filename: str, data: bytes | None, parsed: Parsed | None,
               progress: Callable[[int, int], None] | None) -> dict[str, Any]:
        try:
            parsed = parsed or parse(filename, data or b"")
            chunks = chunk_document(parsed, self.embedder.count_tokens)
            if progress is not None:
                progress(0, len(chunks))
            matrix = self._embed([c.text for c in chunks], progress)
        except DocumentError as e:
            return self._fail(doc_id, str(e))
        except Exception as e:  # the embedder or chunker tripping over this file fails this file only
            return self._fail(doc_id, f"{filename}: could not be indexed ({type(e).__name__}: {e})")
        with self.db.session() as s:
            doc = s.get(KBDocument, doc_id)
            if doc is None:  # deleted meanwhile
                raise NotFoundError("document", doc_id)
            kb = self._kb(s, kb_id)
            s.execute(delete(KBChunk).where(KBChunk.document_id == doc_id))  # a re-index: and their vectors
            rows = [KBChunk(document_id=doc_id, kb_id=kb_id, ordinal=i, text=c.text, heading=c.heading_text,
                            start=c.start, end=c.end, tokens=" ".join(tokens(c.heading_text + "\n" + c.text)))
                    for i, c in enumerate(chunks)]
            s.add_all(rows)
            s.flush()
            conn = s.connection()
            vectors.insert(conn, vectors.backend_of(conn), kb_id, [r.id for r in rows], matrix)
            doc.kind, doc.text, doc.status, doc.error = parsed.kind, parsed.text, "indexed", None
            doc.chunk_count, doc.indexed_at = len(rows), datetime.now(UTC)
            kb.updated_at = datetime.now(UTC)
            kb.embedding_model = self.embedder.name
            return _doc_dict(doc)

    def _fail(self, doc_id: int, reason: str) -> dict[str, Any]:
        with self.db.session() as s:
            doc = s.get(KBDocument, doc_id)
            if doc is None:
                raise NotFoundError("document", doc_id)
            s.execute(delete(KBChunk).where(KBChunk.document_id == doc_id))  # a failed re-index leaves none
            doc.status, doc.error, doc.chunk_count = "failed", reason, 0
            return _doc_dict(doc)

    def delete_document(self, kb_id: int, doc_id: int) -> None:
        with self.db.session() as s:
            kb = self._kb(s, kb_id)
            doc = s.get(KBDocument, doc_id)
            if doc is None or doc.kb_id != kb_id:
                raise NotFoundError("document", doc_id)
            s.execute(delete(KBChunk).where(KBChunk.document_id == doc_id))  # and their vectors
            s.delete(doc)
            kb.updated_at = datetime.now(UTC)

    def document_text(self, kb_id: int, doc_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            self._kb(s, kb_id)
            doc = s.get(KBDocument, doc_id)
            if doc is None or doc.kb_id != kb_id:
                raise NotFoundError("document", doc_id)
            return {**_doc_dict(doc), "text": doc.text}

    # ---- search -------------------------------------------------------------------------------

    def _query_vector(self, query: str) -> Any:
        key = (self.embedder.name, query)
        with _QUERY_CACHE_LOCK:
            cached = _QUERY_CACHE.get(key)
        if cached is None:
            cached = self.embedder.query(query)
            with _QUERY_CACHE_LOCK:
                _QUERY_CACHE[key] = cached
                while len(_QUERY_CACHE) > QUERY_CACHE_SIZE:
                    _QUERY_CACHE.pop(next(iter(_QUERY_CACHE)))
        return cached

    def search(self, kb_ids: list[int], query: str, k: int = 5, *, rank_only: bool = False) -> list[Hit]:
        """The best chunks for `query`, fused; [] when none is relevant enough. `rank_only`: the
        ranking without the relevance bar (what a retrieval evaluation scores)."""
        query = (query or "").strip()
        if not query:
            raise KnowledgeError("the query is empty")
        if not 1 <= k <= 100:
            raise KnowledgeError("k must be between 1 and 100")
        with self.db.session() as s:
            versions = dict(s.execute(select(KnowledgeBase.id, KnowledgeBase.updated_at)
                                      .where(KnowledgeBase.id.in_(kb_ids), self._mine())).all())
        missing = next((k for k in kb_ids if k not in versions), None)
        if missing is not None:
            raise NotFoundError("knowledge base", missing)
        kb_ids = list(dict.fromkeys(kb_ids))
        # The query's vector is computed in native code (the GIL is released) while BM25 runs here.
        vector = _QUERY_POOL.submit(self._query_vector, query)
        lexical: dict[int, float] = {}
        q_tokens = tokens(query)
        for kb_id in kb_ids:
            for chunk_id, score in _LEXICAL.get(self.db, kb_id, versions.get(kb_id)).search(q_tokens, CANDIDATES):
                lexical[chunk_id] = score
        with self.db.session() as s:
            conn = s.connection()
            dense = dict(vectors.nearest(conn, vectors.backend_of(conn), kb_ids, vector.result(), CANDIDATES))
        # Dense neighbours rank within the query's language and across it separately: e5 scores
        # text in the query's own language higher whatever it says, so one list would bury the
        # other language's best passage (an English question about a Chinese rule).
        with self.db.session() as s:
            texts = dict(s.execute(select(KBChunk.id, KBChunk.text).where(KBChunk.id.in_(list(dense)))).all()) \
                if dense else {}
        chinese = bool(_CJK.search(query))
        same = {c: v for c, v in dense.items() if bool(_CJK.search(texts.get(c, ""))) == chinese}
        other = {c: v for c, v in dense.items() if c not in same}
        ranks: dict[int, float] = {}
        for scores in (lexical, same, other):
            for rank, chunk_id in enumerate(sorted(scores, key=lambda c: -scores[c])):
                ranks[chunk_id] = ranks.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
        def passes(c: int) -> bool:
            sim, words = dense.get(c, 0.0), lexical.get(c, 0.0)
            return sim >= MIN_SIMILARITY or words >= STRONG_BM25 or (sim >= MIN_SIMILARITY_WITH_WORDS and
                                                                    words >= MIN_BM25)

        relevant = list(ranks) if rank_only else [c for c in ranks if passes(c)]
        best = sorted(relevant, key=lambda c: -ranks[c])[:k]
        if not best:
            return []
        with self.db.session() as s:
            rows = {c.id: (c, d) for c, d in s.execute(
                select(KBChunk, KBDocument.filename).join(KBDocument, KBDocument.id == KBChunk.document_id)
                .where(KBChunk.id.in_(best)))}
        return [Hit(cid, rows[cid][0].kb_id, rows[cid][0].document_id, rows[cid][1], rows[cid][0].text,
                    rows[cid][0].heading, rows[cid][0].start, rows[cid][0].end, ranks[cid], dense.get(cid),
                    lexical.get(cid)) for cid in best if cid in rows]


def pending_documents(db: Database) -> list[tuple[int, int, int | None]]:
    """(knowledge base, document, owner) of every document left queued or mid-indexing, oldest
    first: what a restarted server indexes."""
    with db.session() as s:
        return [(kb_id, doc_id, owner) for kb_id, doc_id, owner in s.execute(
            select(KBDocument.kb_id, KBDocument.id, KnowledgeBase.user_id)
            .join(KnowledgeBase, KnowledgeBase.id == KBDocument.kb_id)
            .where(KBDocument.status.in_(("queued", "indexing"))).order_by(KBDocument.id))]
