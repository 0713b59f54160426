"""Chunk vectors in the database's own vector extension, behind one small interface.

- SQLite with sqlite-vec: a `vec0` virtual table partitioned by knowledge base (cosine KNN).
- PostgreSQL with pgvector: `vector(384)` with an HNSW index (`<=>`, cosine distance).
- Either database without its extension: a plain table of float arrays, searched exactly with
  numpy (correct, slower on large bases; the server logs which one it uses).

`kb_vectors` is made by migration 0003; its rows go with their chunks (a trigger on SQLite, a
foreign key on PostgreSQL).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from sqlalchemy import Connection, text

log = logging.getLogger("aigc.knowledge")


def backend_of(conn: Connection) -> str:
    """sqlite-vec | pgvector | exact."""
    if conn.dialect.name == "sqlite":
        sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'kb_vectors'")).scalar() or ""
        return "sqlite-vec" if "vec0" in sql.lower() else "exact"
    udt = conn.execute(text("SELECT udt_name FROM information_schema.columns WHERE table_name = 'kb_vectors' "
                            "AND column_name = 'embedding'")).scalar()
    return "pgvector" if udt == "vector" else "exact"


def _literal(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in v.tolist()) + "]"


def insert(conn: Connection, backend: str, kb_id: int, chunk_ids: Sequence[int], vectors: np.ndarray) -> None:
    vectors = np.asarray(vectors, dtype=np.float32)
    if conn.dialect.name == "sqlite":
        rows = [{"id": int(i), "kb": int(kb_id), "v": v.tobytes()} for i, v in zip(chunk_ids, vectors, strict=True)]
        if rows:
            conn.execute(text("INSERT INTO kb_vectors(rowid, kb_id, embedding) VALUES (:id, :kb, :v)"), rows)
        return
    if backend == "pgvector":
        rows = [{"id": int(i), "v": _literal(v)} for i, v in zip(chunk_ids, vectors, strict=True)]
        sql = "INSERT INTO kb_vectors(chunk_id, embedding) VALUES (:id, CAST(:v AS vector))"
    else:
        rows = [{"id": int(i), "v": v.tolist()} for i, v in zip(chunk_ids, vectors, strict=True)]
        sql = "INSERT INTO kb_vectors(chunk_id, embedding) VALUES (:id, :v)"
    if rows:
        conn.execute(text(sql), rows)


def nearest(conn: Connection, backend: str, kb_ids: Sequence[int], query: np.ndarray,
            k: int) -> list[tuple[int, float]]:
    """(chunk id, cosine similarity) of the k nearest chunks in these knowledge bases."""
    query = np.asarray(query, dtype=np.float32)
    if not kb_ids:
        return []
    if backend == "sqlite-vec":
        out: list[tuple[int, float]] = []
        for kb in kb_ids:  # one partition each
            rows = conn.execute(text("SELECT rowid, distance FROM kb_vectors WHERE embedding MATCH :q AND k = :k "
                                     "AND kb_id = :kb"), {"q": query.tobytes(), "k": int(k), "kb": int(kb)})
            out += [(int(r[0]), 1.0 - float(r[1])) for r in rows]
        return sorted(out, key=lambda x: -x[1])[:k]
    if backend == "pgvector":
        rows = conn.execute(text(
            "SELECT v.chunk_id, 1 - (v.embedding <=> CAST(:q AS vector)) FROM kb_vectors v "
            "JOIN kb_chunks c ON c.id = v.chunk_id WHERE c.kb_id = ANY(:kbs) "
            "ORDER BY v.embedding <=> CAST(:q AS vector) LIMIT :k"),
            {"q": _literal(query), "kbs": list(map(int, kb_ids)), "k": int(k)})
        return [(int(r[0]), float(r[1])) for r in rows]
    # exact: every vector of these knowledge bases
    if conn.dialect.name == "sqlite":
        marks = ",".join(str(int(kb)) for kb in kb_ids)
        rows = conn.execute(text(f"SELECT rowid, embedding FROM kb_vectors WHERE kb_id IN ({marks})")).all()
        ids = [int(r[0]) for r in rows]
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1) \
            if rows else np.zeros((0, query.size), np.float32)
    else:
        rows = conn.execute(text("SELECT v.chunk_id, v.embedding FROM kb_vectors v JOIN kb_chunks c "
                                 "ON c.id = v.chunk_id WHERE c.kb_id = ANY(:kbs)"),
                            {"kbs": list(map(int, kb_ids))}).all()
        ids = [int(r[0]) for r in rows]
        matrix = np.asarray([r[1] for r in rows], dtype=np.float32).reshape(len(rows), -1) \
            if rows else np.zeros((0, query.size), np.float32)
    if not ids:
        return []
    scores = matrix @ query
    top = np.argsort(-scores)[:k]
    return [(ids[i], float(scores[i])) for i in top]
