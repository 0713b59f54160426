"""`aigc eval retrieval` on the bilingual shop corpus (shop_corpus.py: 9 documents in five formats,
44 questions: Chinese, English, paraphrased, cross-language, follow-ups): recall@3 >= 90%."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from shop_corpus import write


def aigc(*args: str, db: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aigc", *args, "--database-url", db], capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_recall_at_3_on_the_bilingual_corpus(tmp_path):
    files, questions = write(tmp_path / "corpus")
    db = f"sqlite:///{tmp_path}/kb.db"
    assert aigc("kb", "create", "shop", db=db).returncode == 0
    r = aigc("kb", "add", "shop", *map(str, files), db=db)
    assert r.returncode == 0, r.stderr
    r = aigc("eval", "retrieval", "--kb", "shop", "--questions", str(questions), "--json", db=db)
    assert r.returncode == 0, r.stderr
    figures = json.loads(r.stdout)
    assert figures["all"]["questions"] == 44
    assert figures["all"]["recall@3"] >= 0.90, figures
    for kind in ("zh", "en", "follow-up"):
        assert figures[kind]["recall@3"] == 1.0, (kind, figures[kind])
    bad = aigc("eval", "retrieval", "--kb", "shop", "--questions", str(files[0]), db=db)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
