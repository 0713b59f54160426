"""Classification metrics against hand-computed values."""

import pytest
from rich.console import Console

from aigc.eval.classification import classification_report, confusion_matrix, render_report


def test_confusion_matrix_rows_are_true_labels():
    assert confusion_matrix([0, 0, 1, 2], [0, 1, 1, 0], 3) == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    with pytest.raises(ValueError, match="predictions"):
        confusion_matrix([0], [0, 1], 2)


def test_report_values():
    # true:  a a a a b b c ; predicted: a a b c b b c
    y_true = [0, 0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 2, 1, 1, 2]
    r = classification_report(y_true, y_pred, ["a", "b", "c"])
    assert r.accuracy == pytest.approx(5 / 7)
    assert r.precision == pytest.approx([1.0, 2 / 3, 0.5])
    assert r.recall == pytest.approx([0.5, 1.0, 1.0])
    f1 = [2 / 3, 0.8, 2 / 3]
    assert r.f1 == pytest.approx(f1)
    assert r.macro_f1 == pytest.approx(sum(f1) / 3)
    assert r.majority_label == "a" and r.majority_accuracy == pytest.approx(4 / 7)
    assert r.to_dict()["per_class"]["b"]["support"] == 2


def test_majority_from_training_labels_and_absent_class():
    # A class never seen nor predicted does not drag macro-F1 down; the baseline label is the given one.
    r = classification_report([1, 1, 0], [1, 1, 1], ["neg", "pos", "neutral"], majority_label=0)
    assert r.majority_label == "neg" and r.majority_accuracy == pytest.approx(1 / 3)
    assert r.macro_f1 == pytest.approx((0 + 0.8) / 2)
    with pytest.raises(ValueError, match="no examples"):
        classification_report([], [], ["a"])


def test_render_report_shows_matrix():
    console = Console(record=True, width=100)
    console.print(render_report(classification_report([0, 1, 1], [0, 1, 0], ["neg", "pos"])))
    text = console.export_text()
    assert "accuracy=0.6667" in text and "confusion matrix" in text and "pos" in text
