from aigc.eval.poems import (
    copied_spans,
    even_lines_rhyme,
    form_of,
    has_form,
    poem_quality,
    rhyme_class,
    score_form,
    split_lines,
)

JINGYESI = "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"
DENGGUANQUELOU = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
QILV = ("风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。"
        "万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。")


def test_split_lines_handles_punctuation_and_newlines():
    assert split_lines(JINGYESI) == ["床前明月光", "疑是地上霜", "举头望明月", "低头思故乡"]
    assert split_lines("  春眠不觉晓, 处处闻啼鸟.\n") == ["春眠不觉晓", "处处闻啼鸟"]


def test_forms():
    assert form_of(JINGYESI) == "五言绝句"
    assert form_of(QILV) == "七言律诗"
    assert has_form(DENGGUANQUELOU, "五言绝句")
    assert not has_form(DENGGUANQUELOU, "七言绝句")
    assert form_of("床前明月光，疑是地上霜。举头望明月。") is None  # three lines
    assert form_of("床前明月光光，疑是地上霜。举头望明月，低头思故乡。") is None  # a 6-char line


def test_rhyme_classes_and_even_lines():
    assert rhyme_class("光") == rhyme_class("乡") == rhyme_class("霜")
    assert rhyme_class("云") == rhyme_class("人")
    assert rhyme_class("流") == rhyme_class("楼")
    assert even_lines_rhyme(JINGYESI)
    assert even_lines_rhyme(DENGGUANQUELOU)
    # Rhyme is judged by modern pronunciation: Du Fu's 回/来/台/杯 rhymed in Tang, not in Mandarin.
    assert not even_lines_rhyme(QILV)
    assert not even_lines_rhyme("床前明月光，疑是地上霜。举头望明月，低头思故人。")


def test_copy_check():
    corpus = [JINGYESI, DENGGUANQUELOU]
    samples = ["床前明月光，疑是地上霜。", "春风吹绿江南岸，明月何时照我还。", "白日依山尽黄河"]
    assert copied_spans(samples, corpus, min_len=8) == [True, False, False]


def test_score_form():
    r = score_form("五言绝句", [JINGYESI, DENGGUANQUELOU, QILV])
    assert (r.samples, r.correct_form, r.rhymed) == (3, 2, 2)
    assert abs(r.form_accuracy - 2 / 3) < 1e-9


def test_poem_quality_report():
    samples = {"五言绝句": [JINGYESI, DENGGUANQUELOU, "春风十里"], "七言律诗": [QILV]}
    report = poem_quality(samples, [JINGYESI])
    assert report["forms"]["五言绝句"] == {"samples": 3, "form_accuracy": round(2 / 3, 4),
                                       "even_lines_rhyme": round(2 / 3, 4)}
    assert report["forms"]["七言律诗"]["form_accuracy"] == 1.0
    assert report["not_copied_share"] == 0.75  # the first sample is copied from the corpus
    assert 0 < report["distinct_2"] <= 1


def test_eval_poems_cli_on_the_committed_model(tmp_path, capsys):
    """`aigc eval poems` end to end: the bundled poet model, a tiny corpus, a JSON report."""
    import json
    from pathlib import Path

    import pytest

    from aigc.cli import main

    model_dir = Path(__file__).resolve().parents[2] / "models" / "aigc-poet-zh"
    if not (model_dir / "config.json").exists():
        pytest.skip("models/aigc-poet-zh is not in this checkout")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    held = [{"title": "春晓", "paragraphs": ["春眠不觉晓，处处闻啼鸟。", "夜来风雨声，花落知多少。"], "shape": "五言绝句"},
            {"title": "登鹳雀楼", "paragraphs": ["白日依山尽，黄河入海流。", "欲穷千里目，更上一层楼。"], "shape": "五言绝句"}]
    (corpus / "poems_heldout.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in held))
    (corpus / "poems_train.jsonl").write_text(json.dumps({"title": "静夜思", "paragraphs": JINGYESI.split("\n")},
                                                         ensure_ascii=False) + "\n")
    out = tmp_path / "report.json"
    assert main(["eval", "poems", "--model", str(model_dir), "--corpus", str(corpus), "--samples", "2",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["forms"]) == {"五言绝句", "七言绝句", "五言律诗", "七言律诗"}
    assert all(r["samples"] == 2 for r in report["forms"].values())
    assert report["heldout"]["bits_per_char"] > 0
    assert "form accuracy" in capsys.readouterr().out
    assert main(["eval", "poems", "--model", str(model_dir), "--corpus", str(tmp_path / "none")]) == 2
