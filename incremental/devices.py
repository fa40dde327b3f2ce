"""Which device runs a command: ``"auto"`` is the GPU when there is one, the CPU otherwise."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> a usable torch device.

    Raises:
        ValueError: an unknown name, or CUDA asked for where there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(
            f"device: {name!r} is not one of {list(DEVICE_CHOICES)} or 'cuda:N'"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} asked for, but this machine has no CUDA device")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device: {name!r} is not one of {list(DEVICE_CHOICES)} or 'cuda:N'")
    return device


def describe_device(device: torch.device | str) -> str:
    """``"cpu"`` or ``"cuda (NVIDIA H100 80GB HBM3)"``: what results record."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
