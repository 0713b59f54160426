"""Documents to sections (txt, md, html, pdf, docx) and sections to bilingual chunks."""

from __future__ import annotations

import pytest
from corpus import PRIVACY_PDF_LINES, RETURNS_MD, SHIPPING_HTML, WARRANTY_TXT_GB, docx_bytes, pdf_bytes

from aigc.knowledge.chunking import chunk_document, sentences
from aigc.knowledge.lexical import BM25Index, tokens
from aigc.knowledge.parsing import DocumentError, parse


def test_every_format_keeps_text_and_headings():
    md = parse("returns.md", RETURNS_MD)
    assert [s.heading for s in md.sections] == [["退货政策"], ["退货政策", "运费"], ["Returns"]]
    assert all(md.text[s.start:s.start + len(s.text)] == s.text for s in md.sections)
    html = parse("shipping.html", SHIPPING_HTML)
    assert "var a" not in html.text and "Home | Shop" not in html.text  # scripts and navigation dropped
    assert ["Shipping", "Delivery times"] in [s.heading for s in html.sections]
    assert "保修" in parse("warranty.txt", WARRANTY_TXT_GB).text  # GB18030 text files are read
    docx = parse("members.docx", docx_bytes())
    assert ["Membership", "会员积分"] in [s.heading for s in docx.sections]
    pdf = parse("privacy.pdf", pdf_bytes(PRIVACY_PDF_LINES))
    assert "never sell your personal data" in pdf.text


@pytest.mark.parametrize(("name", "data", "message"), [
    ("empty.txt", b"", "empty"), ("broken.pdf", b"%PDF-1.4 not really", "cannot be read as pdf"),
    ("a.exe", b"MZ", "unsupported type"), ("broken.docx", b"PK\x03\x04 nope", "cannot be read as docx"),
    ("blank.md", b"   \n\n  ", "no text"), ("big.txt", b"x" * (21 << 20), "limit"),
])
def test_bad_files_fail_with_one_line(name, data, message):
    with pytest.raises(DocumentError, match=message) as e:
        parse(name, data)
    assert "\n" not in str(e.value) and name in str(e.value)


def test_sentences_split_in_both_languages():
    text = "收到商品后7天内可以退货。运费谁出？质量问题我们承担！Keep the box. Is it free? Yes."
    assert [text[a:b] for a, b in sentences(text)] == [
        "收到商品后7天内可以退货。", "运费谁出？", "质量问题我们承担！", "Keep the box.", "Is it free?", "Yes."]


def test_chunks_fit_the_budget_keep_spans_and_overlap():
    doc = parse("returns.md", RETURNS_MD * 3)
    count = lambda t: len(t) // 3 + 2  # noqa: E731 -- a stand-in tokenizer
    chunks = chunk_document(doc, count, budget=24, overlap=10)
    assert all(count(c.text) <= 24 for c in chunks)
    assert all(doc.text[c.start:c.end] == c.text for c in chunks)
    assert {tuple(c.heading) for c in chunks} >= {("退货政策",), ("退货政策", "运费"), ("Returns",)}
    words = lambda t: len(t.split())  # noqa: E731
    short = chunk_document(parse("t.txt", " ".join(f"Sentence number {i}." for i in range(30)).encode()),
                           words, budget=10, overlap=4)
    assert all(words(c.text) <= 10 for c in short) and len(short) > 5
    assert all(b.start < a.end for a, b in zip(short, short[1:], strict=False))  # consecutive chunks overlap
    assert short[1].text.startswith(short[0].text.split(". ")[-1].rstrip("."))  # by a whole sentence


def test_chinese_bm25_finds_words_jieba_cuts_differently():
    assert "明月" in tokens("床前明月光") and "前明" in tokens("床前明月光")  # words plus bigrams
    assert tokens("Returns returned RETURNING") == ["return", "return", "return"]
    index = BM25Index([(1, tokens("床前明月光，疑是地上霜")), (2, tokens("退货政策：七天无理由退货")),
                       (3, tokens("Free shipping on orders over 50 dollars"))])
    assert index.search(tokens("明月"))[0][0] == 1
    assert index.search(tokens("无理由退货"))[0][0] == 2
    assert index.search(tokens("is shipping free"))[0][0] == 3
    assert index.search(tokens("火星")) == []
