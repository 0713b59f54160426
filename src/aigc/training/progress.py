"""What a training run shows and records: a rich progress bar, `metrics.jsonl`, TensorBoard, a loss curve.

Any loop (pretraining, SFT, classification) uses one `TrainingProgress`:

    with TrainingProgress(out_dir, max_steps, start_step=step) as progress:
        ...
        progress.log(step, {"loss": loss, "lr": lr})          # metrics.jsonl + TensorBoard
        progress.update(step, loss=loss, tokens_per_s=tps)     # the bar
        progress.log(step, {"loss": val_loss}, split="val")
    # on exit: loss.png from metrics.jsonl

Only the main process should write: pass `enabled=False` on other ranks and every call is a no-op.
Records in metrics.jsonl are `{"step", "split", "time", <metric>: value, ...}`, one JSON object per
line; a resumed run first drops records past its checkpoint (`truncate_metrics`), so the file reads
as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

METRICS_FILE = "metrics.jsonl"
LOSS_CURVE_FILE = "loss.png"
TENSORBOARD_DIR = "tensorboard"


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl file (a torn last line from a crash is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(path: str | Path, last_step: int) -> None:
    """Drop records after `last_step` (logged by a run that died after its last checkpoint)."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [r for r in read_metrics(path) if int(r.get("step", 0)) <= last_step]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    tmp.replace(path)


def plot_loss_curve(metrics_path: str | Path, png_path: str | Path, *, title: str | None = None) -> Path | None:
    """Train (and validation, when logged) loss against step, as a PNG. None when nothing was logged."""
    records = read_metrics(metrics_path)
    series: dict[str, tuple[list[int], list[float]]] = {}
    for r in records:
        if "loss" in r and isinstance(r["loss"], int | float) and math.isfinite(r["loss"]):
            xs, ys = series.setdefault(r.get("split", "train"), ([], []))
            xs.append(int(r["step"]))
            ys.append(float(r["loss"]))
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for split in sorted(series, key=lambda name: (name != "train", name)):  # train first: stable colours
        xs, ys = series[split]
        ax.plot(xs, ys, label=split, marker="o" if split != "train" else None, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title or Path(metrics_path).parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


class TrainingProgress:
    """Progress bar + metrics.jsonl + TensorBoard for one run.

    out_dir: where metrics.jsonl, tensorboard/ and loss.png go (created).
    total_steps / start_step: the bar's range; a resumed run starts part-way.
    enabled: False on non-main ranks (everything becomes a no-op).
    tensorboard: also write TensorBoard event files (`tensorboard --logdir OUT/tensorboard`).
    """

    def __init__(self, out_dir: str | Path, total_steps: int, *, start_step: int = 0, enabled: bool = True,
                 tensorboard: bool = True, description: str = "train", console: Console | None = None,
                 plot: bool = True):
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.total_steps = total_steps
        self.plot = plot
        self.console = console or Console(stderr=True)
        self._tb = None
        self._progress: Progress | None = None
        self._last_line = 0.0
        self._closed = False
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.out_dir / METRICS_FILE
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: the jsonl file still has everything
                SummaryWriter = None
            if SummaryWriter is not None:
                # purge_step hides events a crashed run wrote past the checkpoint we resume from
                self._tb = SummaryWriter(str(self.out_dir / TENSORBOARD_DIR),
                                         purge_step=start_step + 1 if start_step else None)
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), console=self.console,
            )
            self._task = self._progress.add_task(description, total=total_steps, completed=start_step, stats="")
            self._progress.start()
        self._description = description

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close(plot=exc[0] is None and self.plot)

    def log(self, step: int, metrics: Mapping[str, float], *, split: str = "train") -> None:
        """Append one record to metrics.jsonl and the scalars to TensorBoard (as `split/name`)."""
        if not self.enabled:
            return
        record = {"step": step, "split": split, "time": round(time.time(), 3)}
        record.update({k: (float(v) if isinstance(v, int | float) else v) for k, v in metrics.items()})
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, int | float) and math.isfinite(v):
                    self._tb.add_scalar(f"{split}/{k}", v, step)

    def update(self, step: int, *, loss: float | None = None, tokens_per_s: float | None = None,
               mfu: float | None = None, **extra: float) -> None:
        """Move the bar to `step` and show the given numbers next to it."""
        if not self.enabled:
            return
        parts = []
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if tokens_per_s is not None:
            parts.append(f"{tokens_per_s:,.0f} tok/s")
        if mfu is not None:
            parts.append(f"MFU {100 * mfu:.1f}%")
        parts += [f"{k} {v:.4g}" for k, v in extra.items()]
        stats = "  ".join(parts)
        if self._progress is not None:
            self._progress.update(self._task, completed=step, stats=stats)
            return
        # Not a terminal (a log file, CI): a plain line every few seconds and at the end.
        now = time.monotonic()
        if now - self._last_line >= 5.0 or step >= self.total_steps:
            self._last_line = now
            self.console.print(f"{self._description} {step}/{self.total_steps}  {stats}", highlight=False)

    def print(self, text: str) -> None:
        """A message above the bar (eval results, samples, checkpoint notes)."""
        if self.enabled:
            self.console.print(text, highlight=False, markup=False)

    def close(self, plot: bool = True) -> Path | None:
        """Stop the bar, flush TensorBoard and (plot=True) write loss.png. Returns the PNG path."""
        if not self.enabled or self._closed:
            return None
        self._closed = True
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if plot:
            return plot_loss_curve(self.metrics_path, self.out_dir / LOSS_CURVE_FILE)
        return None
