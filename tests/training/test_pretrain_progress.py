"""metrics.jsonl, TensorBoard events and the loss curve of a run."""

import json

from aigc.training.progress import TrainingProgress, plot_loss_curve, read_metrics, truncate_metrics


def test_log_update_close_writes_jsonl_tensorboard_and_png(tmp_path):
    with TrainingProgress(tmp_path, 4, description="test") as p:
        for step in range(1, 5):
            p.log(step, {"loss": 5.0 - step, "lr": 1e-3})
            p.update(step, loss=5.0 - step, tokens_per_s=1000.0, mfu=0.4)
        p.log(4, {"loss": 1.5}, split="val")
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["split"], r["loss"]) for r in records][-2:] == [(4, "train", 1.0), (4, "val", 1.5)]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    png = tmp_path / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_truncate_drops_records_after_the_checkpoint_and_torn_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 7)) + '{"step": 7, "lo')
    truncate_metrics(path, 4)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4]


def test_disabled_progress_writes_nothing(tmp_path):
    out = tmp_path / "rank1"
    with TrainingProgress(out, 3, enabled=False) as p:
        p.log(1, {"loss": 1.0})
        p.update(1, loss=1.0)
        p.print("hidden")
    assert not out.exists()
    assert plot_loss_curve(tmp_path / "none.jsonl", tmp_path / "x.png") is None
