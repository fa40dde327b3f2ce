"""Checkpoints and model files: atomic writes (a crash mid-write keeps the previous file whole)
and weights-only loads (a file carrying pickled code is refused)."""

from __future__ import annotations

import zipfile

import pytest
import torch

from incremental.checkpoint_io import CheckpointTag, SafeCheckpointIO, checkpoint_state
from incremental.io import UnsafeFileError, write_atomic
from incremental.models import create_model, load_model_file, save_model_file


class Crash(Exception):
    pass


def test_crash_mid_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "results.csv"
    write_atomic(path, lambda f: f.write(b"complete,table\n"))

    def half_then_crash(f):
        f.write(b"half a ta")
        raise Crash

    with pytest.raises(Crash):
        write_atomic(path, half_then_crash)
    assert path.read_bytes() == b"complete,table\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary left


def test_checkpoint_crash_mid_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io = SafeCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)

    real_replace = __import__("os").replace

    def crash(*args):  # the process dies after writing the temporary, before the rename
        raise Crash

    monkeypatch.setattr("incremental.io.os.replace", crash)
    with pytest.raises(Crash):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr("incremental.io.os.replace", real_replace)
    assert io.load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    # A whole pickled module: unpickling it imports and runs class code.
    torch.save({"state_dict": torch.nn.Linear(1, 1)}, tmp_path / "evil.ckpt")
    with pytest.raises(UnsafeFileError, match=r"evil.ckpt: refused to load"):
        SafeCheckpointIO().load_checkpoint(tmp_path / "evil.ckpt")


def test_model_file_save_is_atomic(tmp_path, monkeypatch):
    model = create_model("tiny-unet", 2)
    path = save_model_file(tmp_path / "m.pt", model, {"name": "tiny-unet"}, ["a", "b"])

    def crash(obj, f):
        f.write(b"\x80\x02partial")
        raise Crash

    monkeypatch.setattr("incremental.models.model_file.torch.save", crash)
    with pytest.raises(Crash):
        save_model_file(path, model, {"name": "tiny-unet"}, ["a", "c"])
    monkeypatch.undo()
    assert load_model_file(path).classes == ["a", "b"]


def test_files_get_the_users_umask(tmp_path):
    """Results, model files and checkpoints are readable by colleagues under umask 022."""
    import os

    from incremental.io import write_atomic

    previous = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "results.csv", lambda f: f.write(b"a,b\n"))
        assert (path.stat().st_mode & 0o777) == 0o644
        os.umask(0o077)
        private = write_atomic(tmp_path / "private.csv", lambda f: f.write(b"a\n"))
        assert (private.stat().st_mode & 0o777) == 0o600
    finally:
        os.umask(previous)


def _tagged_checkpoint(path):
    callbacks = {CheckpointTag.__qualname__: CheckpointTag("abc123").state_dict()}
    state = {"global_step": 7, "callbacks": callbacks, "state_dict": {"w": torch.ones(64)}}
    SafeCheckpointIO().save_checkpoint(state, path)
    return path


def test_checkpoint_state_reads_the_tag_and_step_beside_the_weights(tmp_path):
    assert checkpoint_state(_tagged_checkpoint(tmp_path / "last.ckpt")) == ("abc123", 7)
    SafeCheckpointIO().save_checkpoint({"global_step": 3}, tmp_path / "untagged.ckpt")
    assert checkpoint_state(tmp_path / "untagged.ckpt") == (None, 3)


def test_a_broken_checkpoint_is_named_whether_mapped_or_read(tmp_path):
    (tmp_path / "cut.ckpt").write_bytes(_tagged_checkpoint(tmp_path / "a.ckpt").read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cut.ckpt: not a readable checkpoint: not a file"):
        checkpoint_state(tmp_path / "cut.ckpt")
    with zipfile.ZipFile(tmp_path / "other.ckpt", "w") as archive:  # a zip, not torch's
        archive.writestr("notes.txt", "not a checkpoint")
    with pytest.raises(ValueError, match=r"other.ckpt: not a readable checkpoint \("):
        checkpoint_state(tmp_path / "other.ckpt")


def test_a_file_system_that_cannot_map_files_reads_the_checkpoint_whole(tmp_path, monkeypatch):
    path = _tagged_checkpoint(tmp_path / "last.ckpt")
    real_load, mapped = torch.load, []

    def load(*args, **kwargs):
        mapped.append(kwargs.get("mmap"))
        return real_load(*args, **kwargs)

    def cannot_map(*args, **kwargs):  # what torch raises where mmap fails
        raise RuntimeError("unable to mmap 1234 bytes from file <last.ckpt>: Invalid argument (22)")

    monkeypatch.setattr(torch, "load", load)
    monkeypatch.setattr(torch.UntypedStorage, "from_file", cannot_map)
    assert checkpoint_state(path) == ("abc123", 7)
    assert mapped == [True, False]
