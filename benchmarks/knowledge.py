"""Knowledge-base indexing and search speed: pages of the shared Chinese novels (and Tiny
Shakespeare) indexed into a fresh knowledge base, then hybrid searches timed.

    python benchmarks/knowledge.py [--pages 1000] [--queries 200] [--database-url sqlite:///...]

A page is 1,500 characters. Prints pages/s and chunks/s for indexing (parse, chunk, BM25 terms,
multilingual-e5-small vectors, database writes) and the p50/p95 latency of `search` (BM25 + dense
KNN in the database's vector extension + fusion, no answer generation) at the chunk count reached.
The issue's target: p95 <= 50 ms at 10k chunks. There is no anchor to run beside it offline.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aigc.knowledge import vectors  # noqa: E402
from aigc.knowledge.store import KnowledgeStore  # noqa: E402
from aigc.store import Database  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PAGE = 1500


def pages(n: int) -> list[tuple[str, str]]:
    texts = []
    for path in sorted((DATA / "zh-novels").glob("*.txt.gz")):
        texts.append((path.name.split(".")[0], gzip.open(path, "rt", encoding="utf-8").read()))
    shakespeare = DATA / "en-shakespeare" / "tinyshakespeare.txt"
    if shakespeare.is_file():
        texts.append(("shakespeare", shakespeare.read_text(encoding="utf-8")))
    out = []
    while len(out) < n:
        for name, text in texts:
            start = (len(out) // len(texts)) * PAGE
            if start + PAGE <= len(text):
                out.append((f"{name}-p{len(out):05d}.txt", text[start:start + PAGE]))
            if len(out) >= n:
                break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--reuse", action="store_true",
                    help="search the knowledge base a run with the same --database-url indexed (no indexing)")
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="aigc-kb-bench-")
    db = Database(args.database_url or f"sqlite:///{folder}/kb.db")
    print(f"database: {db.url.render_as_string()}", file=sys.stderr)
    store = KnowledgeStore(db)
    docs = pages(args.pages)
    reused = next((b for b in store.list() if b["name"] == "bench"), None) if args.reuse else None
    started = time.perf_counter()
    if reused is not None:
        kb, chunks = reused["id"], reused["chunks"]
    else:
        kb = store.create("bench" if args.database_url else f"bench-{os.getpid()}")["id"]
        chunks = 0
        for i, (name, text) in enumerate(docs):
            chunks += store.add_document(kb, name, text.encode("utf-8"))["chunks"]
            if (i + 1) % 100 == 0:
                print(f"  indexed {i + 1}/{len(docs)} pages, {chunks} chunks", file=sys.stderr)
    seconds = time.perf_counter() - started
    rng = random.Random(0)
    queries: list[str] = []
    while len(queries) < args.queries:  # a phrase of a random page, as a reader might search it
        name, text = docs[rng.randrange(len(docs))]
        at = rng.randrange(0, len(text) - 40)
        phrase = " ".join(text[at:at + rng.randrange(6, 30)].split())
        if len(phrase) >= 4:
            queries.append(phrase)
    store.search([kb], queries[0], 5)  # warm: the BM25 index is built on the first search
    latencies = []
    found = 0
    for q in queries:
        t = time.perf_counter()
        hits = store.search([kb], q, 5)
        latencies.append((time.perf_counter() - t) * 1000)
        found += bool(hits)
    latencies.sort()
    with db.engine.connect() as conn:
        backend = vectors.backend_of(conn)
    print(f"CPU: {platform.processor() or platform.machine()} · {os.cpu_count()} cores · database "
          f"{db.url.get_backend_name()} · vectors {backend}")
    if reused is None:
        print(f"indexing: {len(docs)} pages ({PAGE} chars each) -> {chunks} chunks in {seconds:.1f} s: "
              f"{len(docs) / seconds:.2f} pages/s, {chunks / seconds:.1f} chunks/s")
    p50 = statistics.median(latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(f"search at {chunks} chunks: p50 {p50:.1f} ms, p95 {p95:.1f} ms over {len(queries)} queries "
          f"(target p95 <= 50 ms at 10k chunks); {found}/{len(queries)} returned a source")


if __name__ == "__main__":
    main()
