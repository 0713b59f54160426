"""The knowledge-base API as the web app and a shop's scripts use it: create, upload several files
at once (bad ones fail alone, duplicates are recognised), list, search with an explicit "no
relevant source", open a document at a cited span, delete."""

from __future__ import annotations

import sys
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
