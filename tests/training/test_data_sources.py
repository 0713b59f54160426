"""Reading text sources: formats, gzip, auto-detection and clear errors."""

import gzip
import json

import pytest

from aigc.training.data.sources import (
    CHUNK_CHARS,
    Simplifier,
    detect_format,
    expand_inputs,
    iter_documents,
    iter_pieces,
)


def write_jsonl(path, records, gz=False):
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_text_splits_on_blank_lines_and_file_mode_keeps_one_document(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("First:\nHello there.\n\n\nSecond:\nBye.\n  \nThird\n", encoding="utf-8")
    assert list(iter_documents(p)) == ["First:\nHello there.", "Second:\nBye.", "Third"]
    assert list(iter_documents(p, doc_split="file")) == ["First:\nHello there.\n\n\nSecond:\nBye.\n  \nThird"]


def test_file_mode_reads_big_files_in_pieces(tmp_path):
    p = tmp_path / "big.txt"
    line = "x" * 999 + "\n"
    p.write_text(line * (2 * CHUNK_CHARS // 1000 + 5), encoding="utf-8")
    pieces = list(iter_pieces(p, doc_split="file"))
    assert len(pieces) >= 3
    assert [pc.end_of_document for pc in pieces] == [False] * (len(pieces) - 1) + [True]
    assert "".join(pc.text for pc in pieces) == p.read_text().rstrip("\n")


def test_gzip_is_recognised_by_content(tmp_path):
    p = tmp_path / "novel.txt.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write("第一回\n灵根育孕源流出\n\n第二回\n")
    assert list(iter_documents(p)) == ["第一回\n灵根育孕源流出", "第二回"]


def test_jsonl_text_field_and_auto_detection(tmp_path):
    plain = write_jsonl(tmp_path / "r.jsonl", [{"text": "good film", "label": "pos"}, {"text": ""}, {"text": "bad"}])
    assert detect_format(plain) == "jsonl"
    assert list(iter_documents(plain)) == ["good film", "bad"]  # empty records are skipped
    pairs = write_jsonl(tmp_path / "t.jsonl.gz", [{"en": "Hi.", "zh": "你好。"}], gz=True)
    assert list(iter_documents(pairs, text_field="zh")) == ["你好。"]


def test_poems_and_chat_render_plain_text(tmp_path):
    poems = write_jsonl(tmp_path / "p.jsonl", [
        {"title": "静夜思", "author": "李白", "paragraphs": ["床前明月光，疑是地上霜。", "举头望明月，低头思故乡。"]}])
    assert detect_format(poems) == "poems"
    assert list(iter_documents(poems)) == ["静夜思\n床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"]
    dialogs = write_jsonl(tmp_path / "d.jsonl", [
        {"topic": "ai", "turns": ["What is AI?", "A field of science."]},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}])
    assert detect_format(dialogs) == "chat"
    assert list(iter_documents(dialogs)) == ["What is AI?\nA field of science.", "Hi\nHello!"]


@pytest.mark.parametrize(("records", "fmt", "message"), [
    ([{"body": "x"}], "jsonl", "no 'text' field (record has: body)"),
    ([{"text": 3}], "jsonl", "field 'text' is int"),
    ([{"title": "t"}], "poems", "not a poem record: no 'paragraphs' list"),
    ([{"messages": [{"role": "user"}]}], "chat", "every message needs a string 'content'"),
])
def test_wrong_fields_name_file_and_line(tmp_path, records, fmt, message):
    p = write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine", "paragraphs": ["ok"], "turns": ["a"]}, *records])
    with pytest.raises(ValueError) as e:
        list(iter_documents(p, fmt))
    assert f"bad.jsonl:2: {message}" in str(e.value)


def test_unreadable_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="input not found"):
        expand_inputs([tmp_path / "missing.txt"])
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken.jsonl:2: invalid JSON"):
        list(iter_documents(broken))
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        list(iter_documents(latin1))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="holds no .txt or .jsonl"):
        expand_inputs([tmp_path / "empty_dir"])


def test_directories_expand_to_sorted_text_files(tmp_path):
    (tmp_path / "b.jsonl").write_text('{"text": "b"}\n')
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "README.md").write_text("not data\n")
    (tmp_path / "notes.csv").write_text("x,y\n")
    assert [p.name for p in expand_inputs([tmp_path])] == ["a.txt", "b.jsonl"]


def test_simplifier_converts_traditional_chinese():
    assert Simplifier()("萬里山川換古今") == "万里山川换古今"
