"""Checkpoints are complete or absent; the final model appears only with its DONE marker."""


import pytest
import torch

from aigc.training import checkpointing as ckpt


def write_files(directory, text="weights"):
    (directory / "config.json").write_text("{}")
    (directory / "model.safetensors").write_text(text)


def test_save_list_prune_and_load(tmp_path):
    for step in (10, 20, 30):
        ckpt.save_checkpoint(tmp_path, step, {"optimizer": {"lr": torch.tensor(1.0)}}, write_files, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [20, 30]
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest.name == "step-00000030"
    state = ckpt.load_trainer_state(latest)
    assert state["step"] == 30 and state["optimizer"]["lr"].item() == 1.0


def test_a_crash_while_saving_leaves_the_previous_checkpoint(tmp_path):
    ckpt.save_checkpoint(tmp_path, 5, {}, write_files)

    def crash(directory):
        write_files(directory, "half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        ckpt.save_checkpoint(tmp_path, 6, {}, crash)
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000005"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000005"]
    # A directory without trainer_state.pt (e.g. copied by hand, or a dead process's temp dir) is ignored.
    (tmp_path / "checkpoints" / "step-00000009").mkdir()
    (tmp_path / "checkpoints" / ".tmp-step-00000010-123").mkdir()
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000005"
    ckpt.remove_stale_temp(tmp_path)
    assert not (tmp_path / "checkpoints" / ".tmp-step-00000010-123").exists()


def test_publish_final_moves_model_in_and_marks_done(tmp_path):
    assert ckpt.read_done(tmp_path) is None
    ckpt.publish_final(tmp_path, write_files, {"step": 3})
    assert (tmp_path / "model.safetensors").read_text() == "weights"
    assert ckpt.read_done(tmp_path) == {"step": 3}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    def crash(directory):
        write_files(directory, "new")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        ckpt.publish_final(tmp_path, crash, {"step": 4})
    assert ckpt.read_done(tmp_path) is None  # no longer claims to be finished
    assert (tmp_path / "model.safetensors").read_text() == "weights"  # old files untouched
