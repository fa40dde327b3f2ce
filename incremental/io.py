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


class WriteError(OSError):
    """A file could not be written (read-only folder, full disk...): one line naming the file
    and what it was to hold."""


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None], what: str = "file") -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, then rename it over.

    The file gets the mode any new file gets under the user's umask (0644 under umask 022):
    the temporary file is created private (0600), so it is widened before the rename.

    Raises:
        WriteError: the file system refused (the temporary file is removed).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise WriteError(f"cannot write {what} {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"cannot write {what} {path}: {error.strerror or error}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str, what: str = "file") -> Path:
    """:func:`write_atomic` of a UTF-8 text."""
    return write_atomic(path, lambda f: f.write(text.encode()), what)


class UnsafeFileError(ValueError):
    """A file that holds more than tensors and plain data (possibly code): never unpickled."""


def load_weights_only(
    path: str | Path, what: str, hint: str, map_location: Any = "cpu", mmap: bool | None = None
) -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Args:
        what: what the file should be, for the unreadable-file message ("model file").
        hint: what the user should do instead when the file carries objects.
        mmap: True maps the file instead of reading it: its tensors are read only when
            touched (to read a checkpoint's few plain fields without its weights); where the
            file cannot be mapped, it is read whole. None: torch's default.

    Raises:
        UnsafeFileError: the file holds pickled objects other than tensors and plain data.
        ValueError: the file is truncated or not a PyTorch file.
    """
    import pickle
    import zipfile

    import torch

    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise ValueError(f"{path}: not a readable {what}: not a file written by torch.save")
    try:
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        except (OSError, RuntimeError):  # torch says "unable to mmap" with a RuntimeError
            if not mmap:
                raise
            # A file system that cannot map files: read it whole (a broken file fails again).
            return torch.load(path, map_location=map_location, weights_only=True, mmap=False)
    except pickle.UnpicklingError as error:
        # torch's own message goes on to explain how to load the file anyway, which is the
        # one thing not to do with a file of unknown origin: only the object it names is kept.
        found = _unsupported_global(error)
        raise UnsafeFileError(
            f"{path}: refused to load: the file holds objects other than tensors and plain "
            f"data{found} (possibly code); {hint}"
        ) from None
    except Exception as error:  # truncated, or not a torch file
        raise ValueError(f"{path}: not a readable {what} ({_first_line(error)})") from None


def _unsupported_global(error: BaseException) -> str:
    """`` (such as GLOBAL x.y)`` from torch's weights-only refusal, or nothing."""
    import re

    match = re.search(r"(?:Unsupported global|GLOBAL) ?:? ?(GLOBAL )?([\w.]+)", str(error))
    return f" (such as {match.group(2)})" if match else ""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
