"""One set of knobs for every train command: defaults in the config dataclasses only, `--config
FILE.yaml` with flags on top, the older pretraining names, clear errors."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

import pytest

from aigc.cli import main
from aigc.cli.main import build_parser
from aigc.cli.train_args import config_from
from aigc.training.config import TrainConfig, build
from aigc.training.finetune_config import ClassifyConfig, PreferenceConfig, SFTConfig
from aigc.training.pretrain_config import PretrainConfig

COMMANDS = {"sft": SFTConfig, "classify": ClassifyConfig, "dpo": PreferenceConfig, "kto": PreferenceConfig,
            "pretrain": PretrainConfig}
REQUIRED = {"pretrain": ["--data", "d", "--out", "o"]}


def parse(command: str, *argv: str) -> argparse.Namespace:
    required = REQUIRED.get(command, ["--base", "b", "--data", "d", "--out", "o"])
    return build_parser().parse_args(["train", command, *required, *argv])


def config(command: str, *argv: str):
    args = parse(command, *argv)
    fixed = {"objective": args.objective} if command in ("dpo", "kto") else {}
    return config_from(COMMANDS[command], args, **fixed)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_line_defaults_are_the_dataclass_defaults(command):
    cls = COMMANDS[command]
    cfg = config(command)
    given = {"base", "data", "out", "objective", "models_dir", "lora_targets"}
    for f in fields(cls):
        if f.name not in given:
            assert getattr(cfg, f.name) == getattr(cls(**{k: getattr(cfg, k) for k in ("data", "out")},
                                                        **({"base": "b"} if "base" in {x.name for x in fields(cls)}
                                                           else {})), f.name), f.name
    # every knob of the loop has its flag, and no flag carries an argparse default of its own
    args = parse(command)
    for f in fields(TrainConfig):
        assert hasattr(args, f.name), f.name
        if f.name != "resume" or command != "pretrain":
            assert getattr(args, f.name) is None, f.name


def test_the_sft_batch_size_is_declared_once():
    assert SFTConfig(base="b", data="d", out="o").batch_size == config("sft").batch_size == 8
    assert config("classify").batch_size == 16 and config("dpo").batch_size == 4
    assert config("pretrain").batch_size == 16 and config("pretrain").seed == 1337


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_config_file_with_flags_on_top(command, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("batch-size: 2\nlr: 6.0e-4\ngrad_accum: 3\nlog_every: 5\ndropout: 0.1\n")
    cfg = config(command, "--config", str(path), "--lr", "1e-4")
    assert (cfg.batch_size, cfg.lr, cfg.grad_accum, cfg.log_every, cfg.dropout) == (2, 1e-4, 3, 5, 0.1)


def test_a_config_file_can_name_the_run_itself(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text("base: models/x\ndata: chat.jsonl\nout: runs/sft\nlora_r: 8\nlora_targets: q_proj,v_proj\n")
    args = build_parser().parse_args(["train", "sft", "--config", str(path), "--out", "runs/other"])
    cfg = config_from(SFTConfig, args)
    assert (cfg.base, str(cfg.data), str(cfg.out), cfg.lora_r) == ("models/x", "chat.jsonl", "runs/other", 8)
    assert cfg.lora_targets == ["q_proj", "v_proj"]
    args = build_parser().parse_args(["train", "sft", "--config", str(path), "--lora-targets", "all-linear"])
    assert config_from(SFTConfig, args).lora_targets is None


def test_lora_flag_means_rank_16_unless_a_rank_is_given(tmp_path):
    assert config("sft", "--lora").lora_r == 16
    assert config("sft", "--lora", "--lora-r", "4").lora_r == 4
    path = tmp_path / "r.yaml"
    path.write_text("lora_r: 8\n")
    assert config("sft", "--lora", "--config", str(path)).lora_r == 8


def test_older_pretraining_names_are_read_as_the_new_ones(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("warmup: 7\nsave_every: 9\ndtype: bfloat16\nclip: 0.5\n")
    cfg = build(PretrainConfig, path, data="d", out="o")
    assert (cfg.warmup_steps, cfg.checkpoint_every, cfg.precision, cfg.grad_clip) == (7, 9, "bf16", 0.5)
    cfg = config("pretrain", "--warmup", "3", "--save-every", "4", "--dtype", "float32")
    assert (cfg.warmup_steps, cfg.checkpoint_every, cfg.precision) == (3, 4, "fp32")


@pytest.mark.parametrize(("text", "message"), [
    ("batch_sise: 2\n", "unknown setting 'batch_sise'"),
    ("lr: fast\n", "setting 'lr': expected a number"),
    ("epochs: [1, 2]\n", "setting 'epochs': expected a number"),
    ("- 1\n- 2\n", "a mapping of settings"),
    ("lr: [\n", "invalid YAML"),
    ("batch_size: 0\n", "--batch-size must be >= 1"),
    ("precision: fp16\n", "--precision"),
])
def test_bad_config_files_are_one_line_and_exit_2(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    code = main(["train", "sft", "--base", "b", "--data", str(tmp_path / "d.jsonl"), "--out", str(out),
                 "--config", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_missing_required_settings_and_missing_files(tmp_path, capsys):
    assert main(["train", "sft", "--data", "d.jsonl", "--out", str(tmp_path / "o")]) == 2
    assert "missing --base" in capsys.readouterr().err
    assert main(["train", "dpo", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_a_run_from_a_config_file_records_what_it_used(base_dir, tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"ping {i}"},
                                                     {"role": "assistant", "content": "pong"}]}) + "\n"
                            for i in range(8)))
    path = tmp_path / "sft.yaml"
    path.write_text(f"base: {base_dir}\ndata: {data}\nbatch_size: 2\nmax_steps: 3\nlr: 1.0e-3\n"
                    "device: cpu\nprecision: fp32\ntensorboard: false\n")
    out = tmp_path / "out"
    assert main(["train", "sft", "--config", str(path), "--out", str(out), "--max-steps", "2", "--quiet"]) == 0
    args = json.loads((out / "training_args.json").read_text())
    assert (args["batch_size"], args["max_steps"], args["lr"], args["tensorboard"]) == (2, 2, 1e-3, False)
    assert not (out / "tensorboard").exists() and (out / "metrics.jsonl").is_file()
    results = json.loads((out / "train_results.json").read_text())
    assert results["steps"] == 2 and results["processes"] == 1
