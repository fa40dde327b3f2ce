"""Which device runs a command (``"auto"`` is the GPU when there is one, the CPU otherwise),
and at which precision (``"auto"``: bfloat16 mixed precision on a CPU that computes it
natively, full precision elsewhere)."""

from __future__ import annotations

import contextlib
import platform
import sys
from collections.abc import Iterator
from importlib import metadata
from typing import Any

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


#: The precision setting that lets the machine choose (:func:`resolve_precision`).
PRECISION_AUTO = "auto"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (Intel AMX tiles or AVX512-BF16), the
    instructions oneDNN's bfloat16 convolutions run on. Elsewhere bfloat16 is emulated and
    slower than float32. Reads PyTorch's CPU-feature probes (``torch.cpu``, private: a
    PyTorch without them counts as no)."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """The Lightning precision a run uses: ``precision`` itself unless it is ``"auto"``.

    ``"auto"`` is ``"bf16-mixed"`` for a CPU run on a CPU with native bfloat16 (convolutions
    in bfloat16, losses in float32; on this project's 2-core CPU with AMX a quick-profile
    main job's training took 0.65-0.67x the time, same scores within a few tenths) and
    ``"32-true"`` otherwise: on a GPU (mixed precision stays opt-in there, unmeasured) and on a
    CPU without it.

    Args:
        precision: a Lightning precision (``"32-true"``, ``"bf16-mixed"``, ...) or ``"auto"``.
        accelerator: the run's accelerator setting (``"auto"``, ``"cpu"``, ``"gpu"``, ...) or
            a Lightning accelerator.
    """
    if precision != PRECISION_AUTO:
        return precision
    return "bf16-mixed" if runs_on_cpu(accelerator) and cpu_has_native_bf16() else "32-true"


def with_resolved_precision(train: dict[str, Any]) -> dict[str, Any]:
    """A copy of loop settings (``train``/``train_old`` as a dict) whose ``precision`` is what
    :func:`resolve_precision` makes of it with their ``accelerator``; unchanged without one."""
    if "precision" not in train:
        return dict(train)
    precision = resolve_precision(train["precision"], train.get("accelerator", "auto"))
    return {**train, "precision": precision}


def runs_on_cpu(accelerator: Any = "auto") -> bool:
    """Whether Lightning's Trainer runs on the CPU with this ``accelerator`` setting: ``"cpu"``
    (or a ``CPUAccelerator``), or ``"auto"`` where none of the accelerators Lightning tries
    first (TPU/XLA, MPS, CUDA) is available."""
    from lightning.pytorch.accelerators import (
        CPUAccelerator,
        CUDAAccelerator,
        MPSAccelerator,
        XLAAccelerator,
    )

    if isinstance(accelerator, CPUAccelerator) or accelerator == "cpu":
        return True
    if accelerator != "auto":
        return False
    others = (XLAAccelerator, MPSAccelerator, CUDAAccelerator)
    return not any(kind.is_available() for kind in others)


def check_thread_count(count: Any) -> None:
    """Raises ValueError naming ``threads`` unless ``count`` is an integer >= 1."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"threads: expected an integer >= 1, got {count!r}")


@contextlib.contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Compute with ``count`` CPU threads inside the block (``torch.set_num_threads``), then
    the previous count again. A CPU's float sums are split by thread, so the same run at
    another thread count gives other bits (README, "Reproducibility")."""
    check_thread_count(count)
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


#: The packages whose versions decide a run's bits (with the CPU and the thread count).
RECORDED_PACKAGES = (
    "torch", "torchvision", "lightning", "segmentation-models-pytorch", "torchmetrics",
    "albumentations", "numpy",
)  # fmt: skip


def describe_environment() -> dict[str, Any]:
    """What a result was computed with, beyond its config: package versions, the CPU (its name
    and the instruction set PyTorch's kernels dispatch to), the thread count, the GPU (where
    this process has started CUDA; results rows name each run's device). Two runs
    of one config are bit-identical only where these agree (README, "Reproducibility")."""
    versions = {}
    for package in RECORDED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["torch"] = str(torch.__version__)  # with its build tag ("+cu130", "+cpu")
    return {
        "python": sys.version.split()[0],
        "packages": versions,
        "cpu": _cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        # Named only once this process uses CUDA: querying it would start a CUDA context in
        # a parent whose runs go to workers (and forbid Lightning's ddp_fork).
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_initialized() else None,
        "platform": platform.platform(),
    }


def _cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, where ``platform.processor()`` often
    says only the architecture)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
