"""Will a training step fit in memory? An estimate made before training, so that an image far
larger than the others fails with a message instead of the kernel's OOM killer.

The network's activation memory per pixel is measured on a small probe batch (the bytes autograd
saves for the backward pass), then scaled to the largest training batch.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

PROBE_SIDE = 64
#: Gradients, optimizer state, the teacher's transient activations, allocator slack.
SAFETY = 2.0


def activation_bytes_per_pixel(model: nn.Module, side: int = PROBE_SIDE) -> float:
    """Bytes autograd keeps for the backward pass per input pixel of ``model`` (a copy runs,
    in train mode, on one random side x side image)."""
    probe = copy.deepcopy(model).train()
    device = next(probe.parameters()).device
    saved = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved[0] += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        probe(torch.randn(1, 3, side, side, device=device)).sum()
    return saved[0] / (side * side)


def available_bytes(device: torch.device) -> int | None:
    """Free memory of the device (the CPU's MemAvailable), or None where unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_batch_fits(
    model: nn.Module, batch_size: int, height: int, width: int, device: torch.device
) -> None:
    """Raise a ValueError naming the sizes when a training batch of ``batch_size`` images of
    ``height`` x ``width`` would not fit in the device's free memory."""
    free = available_bytes(device)
    if free is None:
        return
    need = SAFETY * activation_bytes_per_pixel(model) * batch_size * height * width
    if need > free:
        raise ValueError(
            f"memory: a training batch of {batch_size} images of {width}x{height} needs about "
            f"{need / 2**30:.1f} GiB, and {free / 2**30:.1f} GiB are free on {device.type}; set "
            "train.crop_size (e.g. 512), a smaller train.max_image_side or train.batch_size"
        )
