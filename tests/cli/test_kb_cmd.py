"""`aigc kb` as a user runs it: create, add files (a bad one fails alone, exit 2), search, list."""

from __future__ import annotations

import json
import subprocess
import sys


def aigc(*args: str, db: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aigc", *args, "--database-url", db], capture_output=True,
                          text=True, timeout=180)


def test_kb_commands(tmp_path):
    db = f"sqlite:///{tmp_path}/app.db"
    (tmp_path / "returns.md").write_text("# 退货政策\n\n收到商品后7天内可以无理由退货。\n\n# Shipping\n\nOrders over 50 "
                                         "dollars ship free.\n", encoding="utf-8")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    assert aigc("kb", "create", "shop", db=db).returncode == 0
    r = aigc("kb", "add", "shop", str(tmp_path / "returns.md"), str(tmp_path / "broken.pdf"), db=db)
    assert r.returncode == 2 and "returns.md: indexed" in r.stdout and "broken.pdf" in r.stderr
    r = aigc("kb", "search", "shop", "退货", "--k", "2", "--json", db=db)
    hits = json.loads(r.stdout)["hits"]
    assert r.returncode == 0 and hits[0]["document"]["filename"] == "returns.md" and hits[0]["heading"] == "退货政策"
    assert "no relevant source" in aigc("kb", "search", "shop", "What is the capital of France?", db=db).stdout
    assert "shop\t2 documents" in aigc("kb", "list", db=db).stdout
    r = aigc("kb", "add", "nope", str(tmp_path / "returns.md"), db=db)
    assert r.returncode == 2 and "no knowledge base named 'nope'" in r.stderr
    r = aigc("kb", "list", "shop", db=db)
    assert "returns.md\tindexed\t" in r.stdout and "broken.pdf\tfailed" in r.stdout
    r = aigc("kb", "reindex", "shop", "returns.md", db=db)
    assert r.returncode == 0 and "[1/1] returns.md:" in r.stdout and "chunks" in r.stdout
    r = aigc("kb", "reindex", "shop", db=db)  # the broken file fails again, alone
    assert r.returncode == 2 and "returns.md" in r.stdout and "broken.pdf: failed" in r.stderr
    assert aigc("kb", "search", "shop", "退货", db=db).returncode == 0
    r = aigc("kb", "reindex", "shop", "nothing.txt", db=db)
    assert r.returncode == 2 and "no document named 'nothing.txt'" in r.stderr
