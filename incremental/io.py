"""Atomic file writes: a kill mid-write leaves the old file or none, never half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    """The process's file-creation mask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, then rename it over.

    The file gets the mode any new file gets under the user's umask (0644 under umask 022):
    the temporary file is created private (0600), so it is widened before the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class UnsafeFileError(ValueError):
    """A file that holds more than tensors and plain data (possibly code): never unpickled."""


def load_weights_only(path: str | Path, what: str, hint: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Args:
        what: what the file should be, for the unreadable-file message ("model file").
        hint: what the user should do instead when the file carries objects.

    Raises:
        UnsafeFileError: the file holds pickled objects other than tensors and plain data.
        ValueError: the file is truncated or not a PyTorch file.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeFileError(
            f"{path}: refused to load: the file holds objects other than tensors and plain "
            f"data (possibly code); {hint} ({_first_line(error)})"
        ) from None
    except Exception as error:  # truncated, or not a torch file
        raise ValueError(f"{path}: not a readable {what} ({_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
