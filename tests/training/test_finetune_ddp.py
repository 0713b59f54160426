"""Fine-tuning under `torchrun --nproc_per_node 2` on the CPU (gloo): the one loop averages the
gradients over the processes, and micro-batch k of a step on rank r is batch (step * accum + k) * 2 + r
of the one data order -- so two processes train on exactly what one process does with twice the
accumulation, and end with the same weights (up to the order of floating-point sums)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from finetune_harness import write_records
from safetensors.torch import load_file

from aigc.cli import main
from aigc.training.progress import read_metrics


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("data"), sft_count=32,
                         sft_reply=lambda i: "pong " * (i % 3 + 1))  # replies of several lengths: padding


def args(command, base, data, out) -> list[str]:
    return ["train", command, "--base", str(base), "--data", str(data), "--out", str(out), "--quiet",
            "--device", "cpu", "--precision", "fp32", "--batch-size", "2", "--max-steps", "5", "--lr", "1e-3",
            "--val-fraction", "0", "--log-every", "1", "--seed", "3"]


@pytest.mark.parametrize("command", ["sft", "classify", "dpo"])
def test_two_processes_train_what_one_does_with_twice_the_accumulation(base_dir, data, tmp_path, command):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "aigc",
           *args(command, base_dir, data[command], ddp)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    assert stdout.count(f"to {ddp}") == 1  # only the main process writes and reports
    assert main([*args(command, base_dir, data[command], single), "--grad-accum", "2"]) == 0

    results = json.loads((ddp / ("eval_results.json" if command == "classify" else "train_results.json")).read_text())
    assert results["processes"] == 2 and results["steps"] == 5
    train = [r for r in read_metrics(ddp / "metrics.jsonl") if r["split"] == "train"]
    reference = [r for r in read_metrics(single / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in train] == [r["step"] for r in reference] == [1, 2, 3, 4, 5]
    for a, b in zip(train, reference, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4), a["step"]
    weights = "model.safetensors"
    a, b = load_file(ddp / weights), load_file(single / weights)
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] - b[name]).abs().max() < 1e-4, name
