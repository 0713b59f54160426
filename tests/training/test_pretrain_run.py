"""`aigc train pretrain` end to end on a Shakespeare slice: learning, exact resume, HF output, bad input."""

import functools
import json
import math

import pytest
import torch
import transformers
from pretrain_harness import TINY_MODEL, data_dir, losses, workdir

from aigc.cli import main
from aigc.models.hf_checkpoint import load_hf_dir
from aigc.training import checkpointing as ckpt
from aigc.training import pretrain as pretrain_module
from aigc.training.pretrain_config import build_config
from aigc.training.progress import read_metrics


@functools.cache
def trained_run():
    """60 steps with evaluations every 20: the run most tests below inspect."""
    out = workdir() / "run60"
    assert main(["train", "pretrain", "--data", str(data_dir()), "--out", str(out), *TINY_MODEL,
                 "--max-steps", "60", "--warmup", "5", "--lr", "1e-2", "--eval-every", "20",
                 "--save-every", "30", "--log-every", "5", "--tensorboard"]) == 0
    return out


def test_validation_loss_goes_down():
    val = losses(trained_run(), "val")
    assert sorted(val) == [0, 20, 40, 60]  # step 0: the untrained baseline
    assert val[0] == pytest.approx(math.log(384), abs=0.3)  # about uniform over the vocabulary
    assert val[60] < val[0] - 0.8 and val[60] < val[20] - 0.05
    train = losses(trained_run())
    assert train[60] < train[5] - 0.5


def test_run_directory_is_a_finished_hf_model_with_records():
    out = trained_run()
    done = ckpt.read_done(out)
    assert done["step"] == 60 and done["val_loss"] == pytest.approx(losses(out, "val")[60])
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [30, 60]
    assert (out / "loss.png").is_file() and list((out / "tensorboard").glob("events.*"))
    records = read_metrics(out / "metrics.jsonl")
    assert all(r["tokens_per_s"] > 0 and 0 < r["mfu"] for r in records if r["split"] == "train")


def test_transformers_loads_the_output_with_matching_logits():
    out = trained_run()
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    ours = load_hf_dir(out)
    x = torch.randint(0, 384, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, ours(x), rtol=1e-4, atol=1e-4)
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    assert tok.eos_token == "<|endoftext|>" and hf.config.tie_word_embeddings


RESUME_ARGS = [*TINY_MODEL, "--max-steps", "12", "--warmup", "3", "--lr", "3e-3", "--dropout", "0.1",
               "--grad-accum", "2", "--eval-every", "6", "--save-every", "4", "--log-every", "1", "--seed", "7"]


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    data = str(data_dir())
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", "pretrain", "--data", data, "--out", str(straight), *RESUME_ARGS]) == 0
    # The first session ends after step 6 (between checkpoints 4 and 8: steps 5-6 are redone).
    assert main(["train", "pretrain", "--data", data, "--out", str(split), *RESUME_ARGS, "--stop-at", "6"]) == 0
    assert ckpt.read_done(split) is None and not (split / "config.json").exists()
    assert main(["train", "pretrain", "--data", data, "--out", str(split), *RESUME_ARGS, "--resume"]) == 0
    a, b = losses(straight), losses(split)
    assert sorted(a) == sorted(b) == list(range(1, 13))
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=1e-6), step
    assert losses(split, "val") == pytest.approx(losses(straight, "val"), abs=1e-6)
    torch.testing.assert_close(load_hf_dir(split).state_dict(), load_hf_dir(straight).state_dict(), rtol=0, atol=1e-6)


def test_interrupted_run_is_not_finished_and_resume_completes_it(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_batch = pretrain_module._Run.batch

    def dies_at_step_5(self, index):
        if index == 5:  # one process, no accumulation: micro-batch 5 is step 5's (0-based)
            raise KeyboardInterrupt
        return real_batch(self, index)

    monkeypatch.setattr(pretrain_module._Run, "batch", dies_at_step_5)
    args = ["train", "pretrain", "--data", str(data_dir()), "--out", str(out), *TINY_MODEL, "--max-steps", "8",
            "--save-every", "3", "--eval-every", "0", "--log-every", "1"]
    assert main(args) == 130
    assert ckpt.read_done(out) is None and not (out / "config.json").exists()
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [3]
    assert main(args) == 2  # a fresh run must not overwrite it by accident
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(pretrain_module._Run, "batch", real_batch)
    assert main(args + ["--resume"]) == 0
    assert ckpt.read_done(out)["step"] == 8 and sorted(losses(out)) == list(range(1, 9))
    assert main(args + ["--resume"]) == 0  # already finished: nothing to do
    assert "already finished" in capsys.readouterr().out


@pytest.mark.parametrize(("extra", "message"), [
    (["--n-embd", "8192", "--n-layer", "200", "--n-head", "8"], "GiB"),
    (["--n-embd", "65", "--n-head", "4"], "multiple of --n-head"),
    (["--block-size", "100000"], "fewer than block size + 1"),
    (["--precision", "float16"], "--precision"),
    (["--dtype", "float16"], "--precision"),  # the older name of the same knob
    (["--config", "no-such-recipe"], "recipe not found"),
])
def test_bad_settings_fail_cleanly_without_output(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert main(["train", "pretrain", "--data", str(data_dir()), "--out", str(out), *TINY_MODEL, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (out / "config.json").exists() and not (out / "DONE").exists()


def test_missing_or_unprepared_data(tmp_path, capsys):
    assert main(["train", "pretrain", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "data directory not found" in capsys.readouterr().err
    (tmp_path / "raw").mkdir()
    assert main(["train", "pretrain", "--data", str(tmp_path / "raw"), "--out", str(tmp_path / "o")]) == 2
    assert "aigc data prepare" in capsys.readouterr().err


def test_recipes_load_and_flags_override(tmp_path):
    cfg = build_config("tiny", n_layer=3)
    assert cfg.n_layer == 3 and cfg.n_embd > 0  # the rest from recipes/tiny.yaml
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_layers: 4\n")
    with pytest.raises(ValueError, match="unknown setting 'n_layers'"):
        build_config(bad)
    for name in ("tiny", "small", "base"):
        build_config(name).validate()
    assert json.dumps(build_config("small").to_dict())
