"""Training checkpoints that survive a kill and never run code when loaded.

:class:`SafeCheckpointIO` is Lightning's checkpoint I/O with two guarantees of our own:

- saving writes a temporary file beside the target, fsyncs it and renames it over the target
  (:func:`incremental.io.write_atomic`), so a kill mid-save leaves the previous checkpoint whole;
- loading (``fit(ckpt_path=...)``, testing on the best checkpoint) always uses
  ``weights_only=True``: a checkpoint holding pickled objects (possibly code) is refused with an
  error naming the file, instead of being executed.

For resuming: :class:`CheckpointTag` writes what a run trains (an old model's cache key) into
its checkpoints, :func:`checkpoint_state` reads it back with the step reached, and
:class:`FollowMovedFolder` points a moved checkpoint's records at its new folder.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from incremental.io import load_weights_only, write_atomic


class SafeCheckpointIO(TorchCheckpointIO):
    """Atomic saves, ``weights_only`` loads (see the module docstring)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("SafeCheckpointIO.save_checkpoint takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # serialise fully before touching the target
        write_atomic(path, lambda f: f.write(buffer.getbuffer()), "the checkpoint")

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return load_weights_only(
            path,
            "checkpoint",
            "only checkpoints written by this framework are accepted",
            map_location=map_location,
        )


class CheckpointTag(L.Callback):
    """Writes ``tag`` into every checkpoint of the run (``checkpoint["callbacks"]``), so that a
    resume can tell a checkpoint of these settings from one another run left in its folder."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def state_dict(self) -> dict[str, Any]:
        return {"tag": self.tag}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A resumed run keeps its own tag (it resumed only where the tags matched)."""


def checkpoint_state(path: str | Path) -> tuple[str | None, int]:
    """(the :class:`CheckpointTag` of a Lightning checkpoint or None, its global step). The
    file is mapped, not read: of its weights and optimizer state nothing is touched."""
    checkpoint = load_weights_only(
        path, "checkpoint", "only checkpoints of this framework", mmap=True
    )
    tag = checkpoint.get("callbacks", {}).get(CheckpointTag.__qualname__, {}).get("tag")
    return tag, int(checkpoint.get("global_step", 0))


def follow_moved_folder(checkpoint: dict[str, Any], here: str) -> str | None:
    """Point the ``ModelCheckpoint`` records of a loaded checkpoint (its folder, best and last
    files) at the folder ``here`` when they name another one: the output folder was moved or
    copied. Lightning would otherwise keep only the best file's (old) path and forget the best
    score, so the first epoch after a resume would count as the best. Rewrites ``checkpoint``
    in memory (the file is left as written).

    Returns:
        the folder the records named before, or None when they already name ``here``.
    """
    changed = None
    for key, state in checkpoint.get("callbacks", {}).items():
        before = state.get("dirpath") if key.startswith("ModelCheckpoint") else None
        if not isinstance(before, str) or before == here:
            continue
        changed = before

        def moved(file: Any, before: str = before) -> Any:
            inside = isinstance(file, str) and file.startswith(before + os.sep)
            return here + file[len(before) :] if inside else file

        state["dirpath"] = here
        for name in ("best_model_path", "last_model_path", "kth_best_model_path"):
            if name in state:
                state[name] = moved(state[name])
        if isinstance(state.get("best_k_models"), dict):
            state["best_k_models"] = {moved(k): v for k, v in state["best_k_models"].items()}
    return changed


class FollowMovedFolder(L.Callback):
    """On every checkpoint load (a resumed fit, testing the best epoch), before the callbacks'
    states are restored: :func:`follow_moved_folder` to the trainer's checkpoint folder."""

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.checkpoint_callback is None:
            return
        here = trainer.checkpoint_callback.dirpath
        before = follow_moved_folder(checkpoint, here)
        if before is not None and trainer.is_global_zero:
            print(f"  checkpoint written in {before}: its records now name {here}", flush=True)
