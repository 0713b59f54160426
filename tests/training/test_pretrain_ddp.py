"""`torchrun --nproc_per_node 2` on the CPU (gloo): runs, ranks agree, rank 0 writes, same losses as one process.

Two ranks with batch B see exactly the samples one process sees with batch B and 2 gradient
accumulation steps (see `sample_index`), so the two runs must compute the same losses up to
floating-point reduction order.
"""

import os
import signal
import subprocess
import sys

import pytest
from pretrain_harness import TINY_MODEL, data_dir, losses

from aigc.cli import main
from aigc.training import checkpointing as ckpt
from aigc.training.progress import read_metrics

ARGS = [*TINY_MODEL, "--max-steps", "10", "--warmup", "2", "--lr", "1e-2", "--eval-every", "5",
        "--save-every", "5", "--log-every", "1", "--seed", "3"]


def test_torchrun_two_processes_match_one_process(tmp_path):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "aigc", "train", "pretrain", "--data", str(data_dir()), "--out", str(ddp), *ARGS]
    # own process group: on a timeout the workers are killed with the launcher, not left behind
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    assert stdout.count("finished at step 10") == 1  # only rank 0 reports
    done = ckpt.read_done(ddp)
    assert done["world_size"] == 2 and done["step"] == 10
    assert (ddp / "config.json").is_file() and [s for s, _ in ckpt.list_checkpoints(ddp)] == [5, 10]
    val_records = [rec for rec in read_metrics(ddp / "metrics.jsonl") if rec["split"] == "val"]
    assert [rec["step"] for rec in val_records] == [0, 5, 10]
    assert all(rec["ranks_agree"] == 1.0 for rec in val_records)  # identical weights on both ranks

    assert main(["train", "pretrain", "--data", str(data_dir()), "--out", str(single), *ARGS,
                 "--grad-accum", "2"]) == 0
    a, b = losses(ddp), losses(single)
    assert sorted(a) == sorted(b) == list(range(1, 11))
    for step in a:
        assert a[step] == pytest.approx(b[step], abs=2e-3), step
    assert a[10] < a[1] - 0.5  # and it learns
    assert losses(ddp, "val")[10] == pytest.approx(losses(single, "val")[10], abs=2e-3)
