"""The knowledge-base API as the web app and a shop's scripts use it: create, upload several files
at once (bad ones fail alone, duplicates are recognised), list, search with an explicit "no
relevant source", open a document at a cited span, delete."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "knowledge"))

from app_harness import error_of  # noqa: E402
from corpus import RETURNS_MD, SHIPPING_HTML, docx_bytes  # noqa: E402


def test_upload_search_open_and_delete(http):
    kb = http.post("/api/knowledge-bases", json={"name": "客服知识库", "description": "shop rules"})
    assert kb.status_code == 201
    kid = kb.json()["id"]
    error_of(http.post("/api/knowledge-bases", json={"name": "客服知识库"}), 409, "name_taken")
    files = [("files", ("returns.md", RETURNS_MD, "text/markdown")),
             ("files", ("shipping.html", SHIPPING_HTML, "text/html")),
             ("files", ("members.docx", docx_bytes(), "application/octet-stream")),
             ("files", ("corrupt.pdf", b"%PDF-1.7 \x00\x01 truncated", "application/pdf")),
             ("files", ("empty.txt", b"", "text/plain")),
             ("files", ("virus.exe", b"MZ\x90", "application/octet-stream"))]
    r = http.post(f"/api/knowledge-bases/{kid}/documents", files=files)
    assert r.status_code == 201
    status = {d["filename"]: (d["status"], d.get("error") or "") for d in r.json()["data"]}
    assert [status[n][0] for n in ("returns.md", "shipping.html", "members.docx")] == ["indexed"] * 3
    assert status["corrupt.pdf"][0] == status["empty.txt"][0] == status["virus.exe"][0] == "failed"
    assert "empty" in status["empty.txt"][1] and "unsupported type" in status["virus.exe"][1]
    again = http.post(f"/api/knowledge-bases/{kid}/documents", files=files[:1]).json()["data"][0]
    assert again["status"] == "duplicate"
    listed = http.get(f"/api/knowledge-bases/{kid}/documents").json()["data"]
    assert {d["filename"]: d["status"] for d in listed}["returns.md"] == "indexed"

    hits = http.post(f"/api/knowledge-bases/{kid}/search", json={"query": "退货政策", "k": 3}).json()
    assert not hits["no_relevant_source"] and hits["hits"][0]["document"]["filename"] == "returns.md"
    top = hits["hits"][0]
    assert set(top) >= {"document", "text", "score", "heading"}
    doc = http.get(f"/api/knowledge-bases/{kid}/documents/{top['document']['id']}").json()
    assert doc["text"][top["start"]:top["end"]] == top["text"]
    none = http.post(f"/api/knowledge-bases/{kid}/search", json={"query": "What is the capital of France?"}).json()
    assert none == {"hits": [], "no_relevant_source": True}

    error_of(http.post(f"/api/knowledge-bases/{kid}/search", json={"query": ""}), 422)
    error_of(http.post(f"/api/knowledge-bases/{kid}/documents", json={"files": []}), 415)
    error_of(http.get("/api/knowledge-bases/999999"), 404)
    bases = {b["name"]: b for b in http.get("/api/knowledge-bases").json()["data"]}
    assert bases["客服知识库"]["chunks"] > 0
    assert http.delete(f"/api/knowledge-bases/{kid}/documents/{top['document']['id']}").status_code == 204
    after = http.post(f"/api/knowledge-bases/{kid}/search", json={"query": "退货政策"}).json()["hits"]
    assert all(h["document"]["filename"] != "returns.md" for h in after)
    assert http.delete(f"/api/knowledge-bases/{kid}").status_code == 204
    error_of(http.get(f"/api/knowledge-bases/{kid}"), 404)


def test_reindex_a_document_or_a_whole_base(http):
    kid = http.post("/api/knowledge-bases", json={"name": "re-index"}).json()["id"]
    r = http.post(f"/api/knowledge-bases/{kid}/documents", files=[
        ("files", ("returns.md", RETURNS_MD, "text/markdown")), ("files", ("corrupt.pdf", b"%PDF-1.7 x", "application/pdf"))])
    docs = {d["filename"]: d for d in r.json()["data"]}
    again = http.post(f"/api/knowledge-bases/{kid}/documents/{docs['returns.md']['id']}/reindex")
    assert again.status_code == 200 and again.json()["status"] == "indexed"
    assert again.json()["chunks"] == docs["returns.md"]["chunks"]
    every = http.post(f"/api/knowledge-bases/{kid}/reindex").json()["data"]
    assert sorted(d["status"] for d in every) == ["failed", "indexed"]  # the broken file fails again, alone
    assert http.post(f"/api/knowledge-bases/{kid}/search", json={"query": "退货政策"}).json()["hits"]
    error_of(http.post(f"/api/knowledge-bases/{kid}/documents/987654/reindex"), 404)
    error_of(http.post("/api/knowledge-bases/987654/reindex"), 404)


def test_big_uploads_answer_with_progress_and_finish_in_the_background(http, monkeypatch):
    from aigc.server import kb_routes

    monkeypatch.setattr(kb_routes, "UPLOAD_WAIT_S", 0.0)  # answer before any indexing is done
    kid = http.post("/api/knowledge-bases", json={"name": "background"}).json()["id"]
    big = "\n\n".join(f"第{i}条：订单满{i * 10}元包邮，退货请在收货后7天内申请。" for i in range(1, 120)).encode()
    r = http.post(f"/api/knowledge-bases/{kid}/documents", files=[("files", ("rules.txt", big, "text/plain"))])
    doc = r.json()["data"][0]
    assert r.status_code == 201 and doc["status"] in ("queued", "indexing") and "progress" in doc
    again = http.post(f"/api/knowledge-bases/{kid}/documents", files=[("files", ("again.txt", big, "text/plain"))])
    assert again.json()["data"][0]["status"] == "duplicate"  # queued counts: the same file is on its way
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        docs = http.get(f"/api/knowledge-bases/{kid}/documents").json()["data"]
        if docs[0]["status"] == "indexed":
            break
        assert docs[0]["status"] in ("queued", "indexing") and docs[0]["progress"] is not None
        time.sleep(0.3)
    assert docs[0]["status"] == "indexed" and docs[0]["chunks"] > 1 and "progress" not in docs[0]
