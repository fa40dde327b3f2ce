"""Training checkpoints that survive a kill and never run code when loaded.

:class:`SafeCheckpointIO` is Lightning's checkpoint I/O with two guarantees of our own:

- saving writes a temporary file beside the target, fsyncs it and renames it over the target
  (:func:`incremental.io.write_atomic`), so a kill mid-save leaves the previous checkpoint whole;
- loading (``fit(ckpt_path=...)``, testing on the best checkpoint) always uses
  ``weights_only=True``: a checkpoint holding pickled objects (possibly code) is refused with an
  error naming the file, instead of being executed.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
