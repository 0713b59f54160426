"""Pipeline recipes: several training steps in one file, run in order with one command.

`aigc train recipe poet-zh --data ../shared/data` reads `recipes/poet-zh.yaml` and runs
corpus -> tokenizer -> data -> pretrain -> sft -> eval -> publish into `--out` (default
`runs/<recipe>`). A step whose output is complete is skipped; pretraining resumes from its last
checkpoint. So re-running the command after an interruption continues where it stopped.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from aigc.training.config import RECIPES_DIR

STEPS = ("corpus", "tokenizer", "data", "pretrain", "sft", "eval", "publish")


def load_pipeline(name: str | Path) -> dict[str, Any]:
    path = Path(name)
    if not path.is_file():
        path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")) if RECIPES_DIR.is_dir() else []
        raise FileNotFoundError(f"recipe not found: {name} (bundled: {', '.join(known) or 'none'})")
    recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if recipe.get("kind") != "pipeline":
        raise ValueError(f"{path} is not a pipeline recipe (use `aigc train pretrain --config {name}` for it)")
    unknown = set(recipe) - {"kind", "name", "seed", *STEPS}
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    return recipe


class PipelineRun:
    def __init__(self, recipe: dict[str, Any], data: Path, out: Path, *, device: str = "auto",
                 repo_root: Path | None = None, log: Callable[[str], None] = print):
        self.recipe, self.data, self.out, self.device, self.log = recipe, data, out, device, log
        self.seed = int(recipe.get("seed", 1234))
        self.repo_root = repo_root or RECIPES_DIR.parent
        self.dirs = {s: out / s for s in STEPS}

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.recipe.get(name) or {})

    # ---- steps -------------------------------------------------------------------------------

    def corpus(self) -> None:
        from aigc.training.poet import build_corpus

        c = self.section("corpus")
        target = self.dirs["corpus"]
        if (target / "corpus.json").exists():
            return self.log(f"corpus: done ({target})")
        summary = build_corpus(self.data, target, heldout_per_mille=int(c.get("heldout_per_mille", 20)),
                               seed=self.seed, max_per_file=c.get("max_per_file"),
                               max_sft_pairs=c.get("max_sft_pairs"))
        self.log(f"corpus: {json.dumps(summary, ensure_ascii=False)}")

    def _pretrain_inputs(self) -> list[Path]:
        return [self.dirs["corpus"] / "poems_train.jsonl", self.data / "zh-novels"]

    def tokenizer(self) -> None:
        from aigc.training.tokenizer_train import train_tokenizer

        target = self.dirs["tokenizer"]
        if (target / "tokenizer.json").exists():
            return self.log(f"tokenizer: done ({target})")
        t = self.section("tokenizer")
        report = train_tokenizer(self._pretrain_inputs(), target, int(t.get("vocab_size", 8192)), simplify=True,
                                 force=True, show_progress=True)
        self.log(f"tokenizer: vocab {report.vocab_size}, chars/token {report.chars_per_token}")

    def data_step(self) -> None:
        from aigc.tokenizer import Tokenizer
        from aigc.training.data.prepare import prepare_data

        target = self.dirs["data"]
        if (target / "manifest.json").exists():
            return self.log(f"data: done ({target})")
        d = self.section("data")
        manifest = prepare_data(self._pretrain_inputs(), target, Tokenizer.from_dir(self.dirs["tokenizer"]),
                                tokenizer_source=str(self.dirs["tokenizer"]), simplify=True,
                                val_fraction=float(d.get("val_fraction", 0.01)), seed=self.seed, force=True)
        self.log(f"data: {manifest['splits']['train']['tokens']:,} training tokens")

    def pretrain(self) -> None:
        from aigc.training.pretrain import pretrain
        from aigc.training.pretrain_config import build_config

        cfg = build_config(None, **self.section("pretrain"), data=str(self.dirs["data"]),
                           out=str(self.dirs["pretrain"]), seed=self.seed, device=self.device)
        result = pretrain(cfg, resume=(self.dirs["pretrain"]).exists())
        self.log(f"pretrain: {result}")

    def sft(self) -> None:
        from aigc.training.config import build
        from aigc.training.sft import SFTConfig, train_sft

        target = self.dirs["sft"]
        if (target / "config.json").exists():
            return self.log(f"sft: done ({target})")
        s = self.section("sft")
        cfg = build(SFTConfig, None, base=str(self.dirs["pretrain"]), data=self.dirs["corpus"] / "sft_train.jsonl",
                    out=target, device=self.device, seed=self.seed, force=True, **s)
        summary = train_sft(cfg)
        self.log(f"sft: {json.dumps(summary, ensure_ascii=False, default=str)[:400]}")

    def eval(self) -> None:
        from aigc.eval.poems import evaluate_poet

        target = self.dirs["eval"]
        e = self.section("eval")
        report = evaluate_poet(self.dirs["sft"], self.dirs["corpus"], samples=int(e.get("samples", 100)),
                               temperature=float(e.get("temperature", 0.8)), seed=self.seed)
        target.mkdir(parents=True, exist_ok=True)
        (target / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
        self.log(f"eval: {json.dumps(report['forms'], ensure_ascii=False)}")

    def publish(self) -> None:
        from aigc.models.hf_checkpoint import load_hf_dir, parse_dtype, save_hf_dir
        from aigc.tokenizer import Tokenizer

        p = self.section("publish")
        dest = self.repo_root / p.get("dir", f"models/{self.recipe.get('name', 'model')}")
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model = load_hf_dir(self.dirs["sft"])
        save_hf_dir(model, tmp, tokenizer=Tokenizer.from_dir(self.dirs["sft"]),
                    dtype=parse_dtype(p.get("dtype", "bfloat16")))
        report = self.dirs["eval"] / "report.json"
        if report.exists():
            shutil.copy(report, tmp / "eval_report.json")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.replace(dest)
        self.log(f"publish: {dest}")

    def run(self, steps: list[str]) -> None:
        handlers = {"corpus": self.corpus, "tokenizer": self.tokenizer, "data": self.data_step,
                    "pretrain": self.pretrain, "sft": self.sft, "eval": self.eval, "publish": self.publish}
        for step in steps:
            started = time.time()
            self.log(f"== {step} ==")
            handlers[step]()
            self.log(f"   {step} took {time.time() - started:.0f}s")


def parse_steps(spec: str | None) -> list[str]:
    if not spec:
        return list(STEPS)
    steps = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise ValueError(f"unknown step(s) {', '.join(bad)}; steps are {', '.join(STEPS)}")
    return steps
