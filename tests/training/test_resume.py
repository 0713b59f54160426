"""Exact resume of the shared fine-tuning loop: SFT, classification and DPO runs interrupted after a
checkpoint and continued with --resume end with the same weights as uninterrupted runs (dropout on,
so the RNG streams matter too)."""

from __future__ import annotations

import pytest
from finetune_harness import write_records
from safetensors.torch import load_file

import aigc.training.loop as loop
from aigc.cli import main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("data"))


def run(command: str, base, data, out, *extra) -> int:
    return main(["train", command, "--base", str(base), "--data", str(data), "--out", str(out), "--quiet",
                 "--device", "cpu", "--precision", "fp32", "--batch-size", "4", "--max-steps", "6",
                 "--dropout", "0.1", "--checkpoint-every", "3", "--val-fraction", "0", "--lr", "1e-3", *extra])


@pytest.mark.parametrize("command", ["sft", "classify", "dpo"])
def test_an_interrupted_run_resumes_to_the_same_weights(base_dir, data, tmp_path, monkeypatch, command):
    assert run(command, base_dir, data[command], tmp_path / "straight") == 0

    real_lr_at = loop.lr_at

    def crash_at_step_5(step, *args):
        if step == 4:  # the 5th optimizer step, after the checkpoint of step 3
            raise KeyboardInterrupt
        return real_lr_at(step, *args)

    monkeypatch.setattr(loop, "lr_at", crash_at_step_5)
    out = tmp_path / "resumed"
    assert run(command, base_dir, data[command], out) == 130  # Ctrl-C's exit code
    assert not out.exists() and (tmp_path / ".resumed.resume" / "resume.pt").is_file()
    monkeypatch.setattr(loop, "lr_at", real_lr_at)
    assert run(command, base_dir, data[command], out) == 2  # an unfinished run is not silently restarted
    assert run(command, base_dir, data[command], out, "--lr", "5e-4", "--resume") == 2  # other settings
    assert run(command, base_dir, data[command], out, "--resume") == 0
    assert not (tmp_path / ".resumed.resume").exists()  # published: the checkpoint is gone

    weights = "adapter_model.safetensors" if (out / "adapter_model.safetensors").exists() else "model.safetensors"
    straight, resumed = load_file(tmp_path / "straight" / weights), load_file(out / weights)
    assert straight.keys() == resumed.keys()
    for name, tensor in straight.items():
        assert resumed[name].equal(tensor), name
