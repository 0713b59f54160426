"""Classification metrics: accuracy, per-class precision/recall/F1, macro-F1, confusion matrix, and the
majority-class baseline a classifier has to beat. Pure Python; `render_report` draws a rich table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class ClassificationReport:
    labels: list[str]
    confusion: list[list[int]]  # confusion[true][predicted]
    accuracy: float
    macro_f1: float
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    majority_label: str | None = None  # most frequent label in the training data (or in y_true)
    majority_accuracy: float | None = None  # accuracy of always predicting it on these examples
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return sum(self.support)

    def to_dict(self) -> dict:
        return {
            "n": self.n, "accuracy": self.accuracy, "macro_f1": self.macro_f1,
            "majority_label": self.majority_label, "majority_accuracy": self.majority_accuracy,
            "labels": self.labels, "confusion": self.confusion,
            "per_class": {lab: {"precision": p, "recall": r, "f1": f, "support": s} for lab, p, r, f, s
                          in zip(self.labels, self.precision, self.recall, self.f1, self.support, strict=True)},
            **self.extra,
        }


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_labels: int) -> list[list[int]]:
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    m = [[0] * num_labels for _ in range(num_labels)]
    for t, p in zip(y_true, y_pred, strict=True):
        m[t][p] += 1
    return m


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str],
                          majority_label: int | None = None) -> ClassificationReport:
    """Metrics for integer label ids. `majority_label` (an id, usually the most frequent training label)
    gives the baseline; by default the most frequent label of `y_true` is used."""
    if not y_true:
        raise ValueError("no examples to evaluate")
    k = len(labels)
    m = confusion_matrix(y_true, y_pred, k)
    support = [sum(row) for row in m]
    predicted = [sum(m[t][p] for t in range(k)) for p in range(k)]
    precision = [_ratio(m[i][i], predicted[i]) for i in range(k)]
    recall = [_ratio(m[i][i], support[i]) for i in range(k)]
    f1 = [_ratio(2 * p * r, p + r) for p, r in zip(precision, recall, strict=True)]
    # Macro-F1 over the classes present in y_true or predicted (as scikit-learn does with labels given).
    present = [i for i in range(k) if support[i] or predicted[i]]
    if majority_label is None:
        majority_label = Counter(y_true).most_common(1)[0][0]
    n = len(y_true)
    return ClassificationReport(
        labels=list(labels), confusion=m, accuracy=sum(m[i][i] for i in range(k)) / n,
        macro_f1=sum(f1[i] for i in present) / len(present), precision=precision, recall=recall, f1=f1,
        support=support, majority_label=labels[majority_label], majority_accuracy=support[majority_label] / n,
    )


def render_report(report: ClassificationReport | MultiLabelReport, title: str = "validation"):
    """A rich renderable: summary line, per-class table and confusion matrix (multi-label: no matrix)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    if isinstance(report, MultiLabelReport):
        head = Text(f"{title}: n={report.n}  exact-match accuracy={report.accuracy:.4f}  "
                    f"micro-F1={report.micro_f1:.4f}  macro-F1={report.macro_f1:.4f}")
        table = Table(title="per label", show_edge=False)
        for col in ("label", "precision", "recall", "F1", "support"):
            table.add_column(col, justify="left" if col == "label" else "right")
        for i, lab in enumerate(report.labels):
            table.add_row(lab, f"{report.precision[i]:.3f}", f"{report.recall[i]:.3f}", f"{report.f1[i]:.3f}",
                          str(report.support[i]))
        return Group(head, table)

    head = Text(f"{title}: n={report.n}  accuracy={report.accuracy:.4f}  macro-F1={report.macro_f1:.4f}")
    if report.majority_accuracy is not None:
        head.append(f"\nmajority baseline ({report.majority_label})={report.majority_accuracy:.4f}")
    per_class = Table(title="per class", show_edge=False)
    for col in ("label", "precision", "recall", "F1", "support"):
        per_class.add_column(col, justify="left" if col == "label" else "right")
    for i, lab in enumerate(report.labels):
        per_class.add_row(lab, f"{report.precision[i]:.3f}", f"{report.recall[i]:.3f}", f"{report.f1[i]:.3f}",
                          str(report.support[i]))
    cm = Table(title="confusion matrix", show_edge=False)
    cm.add_column("true \\ predicted")
    for lab in report.labels:
        cm.add_column(lab, justify="right")
    for i, lab in enumerate(report.labels):
        cm.add_row(lab, *[str(v) for v in report.confusion[i]])
    return Group(head, per_class, cm)


@dataclass
class MultiLabelReport:
    """Multi-label metrics: each label is its own yes/no decision (threshold 0.5 unless given)."""

    labels: list[str]
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    micro_f1: float
    macro_f1: float
    accuracy: float  # exact match: every label of the example right
    n: int
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"n": self.n, "multi_label": True, "accuracy": self.accuracy, "micro_f1": self.micro_f1,
                "macro_f1": self.macro_f1, "labels": self.labels,
                "per_class": {lab: {"precision": p, "recall": r, "f1": f, "support": s} for lab, p, r, f, s
                              in zip(self.labels, self.precision, self.recall, self.f1, self.support, strict=True)},
                **self.extra}


def multilabel_report(y_true: Sequence[Sequence[int]], y_pred: Sequence[Sequence[int]],
                      labels: Sequence[str]) -> MultiLabelReport:
    """Metrics for sets of label ids per example (an empty set: no label applies)."""
    if not y_true:
        raise ValueError("no examples to evaluate")
    k = len(labels)
    tp, fp, fn = [0] * k, [0] * k, [0] * k
    exact = 0
    for t, p in zip(y_true, y_pred, strict=True):
        ts, ps = set(t), set(p)
        exact += ts == ps
        for i in range(k):
            tp[i] += i in ts and i in ps
            fp[i] += i not in ts and i in ps
            fn[i] += i in ts and i not in ps
    precision = [_ratio(tp[i], tp[i] + fp[i]) for i in range(k)]
    recall = [_ratio(tp[i], tp[i] + fn[i]) for i in range(k)]
    f1 = [_ratio(2 * p * r, p + r) for p, r in zip(precision, recall, strict=True)]
    support = [tp[i] + fn[i] for i in range(k)]
    present = [i for i in range(k) if support[i] or tp[i] + fp[i]] or list(range(k))
    micro = _ratio(2 * sum(tp), 2 * sum(tp) + sum(fp) + sum(fn))
    return MultiLabelReport(list(labels), precision, recall, f1, support, micro,
                            sum(f1[i] for i in present) / len(present), exact / len(y_true), len(y_true))
