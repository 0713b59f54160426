"""`aigc train recipe NAME --data DIR`: run a whole pipeline recipe (e.g. poet-zh) step by step."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("recipe", help="run a pipeline recipe end to end (e.g. poet-zh)",
                       description="Run every step of a pipeline recipe (recipes/NAME.yaml). Finished steps "
                                   "are skipped and pretraining resumes, so re-running continues a stopped run.")
    p.add_argument("name", help="recipe name in recipes/ or a path to a YAML file")
    p.add_argument("--data", type=Path, required=True, help="the shared data folder (holds zh-poetry/, zh-novels/)")
    p.add_argument("--out", type=Path, default=None, help="work folder (default: runs/NAME)")
    p.add_argument("--steps", default=None, help="comma-separated subset of: corpus,tokenizer,data,pretrain,sft,"
                                                  "eval,publish (default: all)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aigc.training.recipe import PipelineRun, load_pipeline, parse_steps

    recipe = load_pipeline(args.name)
    steps = parse_steps(args.steps)
    if not args.data.is_dir():
        raise FileNotFoundError(f"--data {args.data} is not a folder")
    out = args.out or Path("runs") / Path(args.name).stem
    PipelineRun(recipe, args.data, out, device=args.device).run(steps)
    return 0
