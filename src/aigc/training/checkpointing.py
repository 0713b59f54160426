"""Checkpoints that are either complete or absent, and the finished model of a run.

A run directory looks like this:

    OUT/checkpoints/step-00000500/   HF model files + trainer_state.pt (optimizer, step, sampler, ...)
    OUT/checkpoints/.tmp-...         a checkpoint being written (ignored, removed on the next start)
    OUT/config.json, model.safetensors, tokenizer files   the final model (written at the very end)
    OUT/DONE                         JSON; exists only once the run has finished

Every checkpoint is written into a temporary directory and renamed into place, so a crash leaves
either the old state or the new one, never a half-written checkpoint that `--resume` would pick up.
The final model is moved into OUT with `config.json` last and `DONE` after it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "trainer_state.pt"
DONE_FILE = "DONE"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory; when the block succeeds it replaces `final` in one rename.

    On an exception the temporary directory is removed and `final` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_dir_files(tmp)
        if final.exists():  # rename() cannot replace a non-empty directory: move the old one aside first
            old = final.parent / f".old-{final.name}-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_dir_files(path: Path) -> None:
    """Flush file contents before the rename makes them visible (a power cut must not expose empty files)."""
    for f in path.rglob("*"):
        if f.is_file():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR / f"step-{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first, as (step, directory)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = _STEP_DIR.match(d.name)
        if m and (d / STATE_FILE).is_file():
            found.append((int(m.group(1)), d))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def remove_stale_temp(run_dir: str | Path) -> None:
    """Delete temporary directories left by a run that crashed while saving."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    for pattern in (".tmp-*", ".old-*"):
        for d in [*root.glob(pattern), *Path(run_dir).glob(pattern)]:
            shutil.rmtree(d, ignore_errors=True)


def save_checkpoint(run_dir: str | Path, step: int, trainer_state: dict[str, Any],
                    write_model: Callable[[Path], None], *, keep_last: int = 2) -> Path:
    """Write checkpoint `step` atomically and delete all but the newest `keep_last` ones.

    write_model(directory) writes the model files (e.g. `save_hf_dir(model, directory, tokenizer)`);
    trainer_state (optimizer state, sampler position, config, ...) goes to trainer_state.pt. Tensors,
    numbers, strings, lists, tuples and dicts only, so it loads with `weights_only=True`.
    """
    final = checkpoint_dir(run_dir, step)
    with atomic_directory(final) as tmp:
        write_model(tmp)
        torch.save({**trainer_state, "step": step}, tmp / STATE_FILE)
    if keep_last > 0:
        for _, old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_trainer_state(checkpoint: str | Path) -> dict[str, Any]:
    path = Path(checkpoint) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint}: no {STATE_FILE}; not a training checkpoint")
    return torch.load(path, map_location="cpu", weights_only=True)


# ---- the finished model ---------------------------------------------------------------------------

def read_done(run_dir: str | Path) -> dict[str, Any] | None:
    """The DONE record of a finished run, or None while it is unfinished."""
    path = Path(run_dir) / DONE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}


def clear_done(run_dir: str | Path) -> None:
    """A run that trains further is unfinished again until it publishes a new final model."""
    (Path(run_dir) / DONE_FILE).unlink(missing_ok=True)


def publish_final(run_dir: str | Path, write_model: Callable[[Path], None], info: dict[str, Any]) -> None:
    """Write the final model into `run_dir` itself, then the DONE marker.

    Files are written to a temporary directory first and moved in with config.json last (loaders
    look for it), so an interrupted publish never looks like a loadable, finished model.
    """
    run_dir = Path(run_dir)
    clear_done(run_dir)
    with atomic_directory(run_dir / ".final") as tmp:
        write_model(tmp)
    staged = run_dir / ".final"
    names = sorted(p.name for p in staged.iterdir())
    for name in [n for n in names if n != "config.json"] + [n for n in names if n == "config.json"]:
        os.replace(staged / name, run_dir / name)
    shutil.rmtree(staged, ignore_errors=True)
    tmp_done = run_dir / f".{DONE_FILE}.tmp"
    tmp_done.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    tmp_done.replace(run_dir / DONE_FILE)


def refuse_to_overwrite(out_dir: Path, force: bool) -> None:
    """An existing non-empty output (file or directory) is an error unless `force` says to replace it."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not force:
        raise ValueError(f"{out_dir} exists and is not empty; pass --force to replace it")
