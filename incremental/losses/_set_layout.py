"""The structure of a teacher map T, read once per T tensor, for the set losses' fast paths.

T is a (K, C) bool of a few hundred entries; the losses need which channels each set takes and
which set owns each class. Reading that from T at every step would stop a GPU step for a host
sync each time, so it is read once on the CPU and cached for the life of the tensor.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch


def _prefix(index: torch.Tensor) -> int:
    """How many leading entries of a CPU ``index`` are 0, 1, 2, ..."""
    return int((index == torch.arange(len(index))).cumprod(0).sum())


@dataclass(frozen=True)
class SetLayout:
    """What the losses need to know about T's structure, read once per T tensor (a (K, C)
    bool of a few hundred entries) on the CPU: on a GPU, reading it at every step would stop
    the step for a host sync each time.

    Attributes:
        first: (K,) the first member of every set, on T's device; ``first_prefix`` of them
            are 0, 1, 2, ... (a slice instead of a gather).
        larger: (k, members on T's device) of the sets with several members.
        owner: (C,) the set holding each class when T partitions the classes, else None;
            ``owner_prefix`` as for ``first``.
        empty: teacher classes that map to no student class.
    """

    first: torch.Tensor
    first_prefix: int
    larger: tuple[tuple[int, torch.Tensor], ...]
    owner: torch.Tensor | None
    owner_prefix: int
    empty: tuple[int, ...]


#: id(T) -> (a weak reference to T, T's version when read, its layout); an entry goes with T.
_LAYOUTS: dict[int, tuple[weakref.ref, int, SetLayout]] = {}


def layout_of(teacher_sets: torch.Tensor) -> SetLayout:
    """The cached layout of this T tensor (recomputed if it was modified in place)."""
    key = id(teacher_sets)
    cached = _LAYOUTS.get(key)
    if cached is not None and cached[0]() is teacher_sets and cached[1] == teacher_sets._version:
        return cached[2]
    cpu, device = teacher_sets.cpu(), teacher_sets.device
    first = cpu.to(torch.int8).argmax(dim=1)
    sizes = cpu.sum(dim=1)
    larger = tuple(
        (k, cpu[k].nonzero().flatten().to(device)) for k in (sizes > 1).nonzero().flatten().tolist()
    )
    partition = bool((cpu.sum(dim=0) == 1).all())
    owner = cpu.to(torch.int8).argmax(dim=0) if partition else None
    layout = SetLayout(
        first=first.to(device),
        first_prefix=_prefix(first),
        larger=larger,
        owner=None if owner is None else owner.to(device),
        owner_prefix=0 if owner is None else _prefix(owner),
        empty=tuple((sizes == 0).nonzero().flatten().tolist()),
    )
    reference = weakref.ref(teacher_sets, lambda _: _LAYOUTS.pop(key, None))
    _LAYOUTS[key] = (reference, teacher_sets._version, layout)
    return layout


def select_channels(x: torch.Tensor, index: torch.Tensor, prefix: int) -> torch.Tensor:
    """``x.index_select(1, index)``, as a view over the ``prefix`` leading channels that
    ``index`` takes in order (0, 1, 2, ...).

    A transition keeps each old class at its own index, so the teacher's sets start on the
    student's first K channels: a slice instead of a strided copy over every pixel.
    """
    if prefix == 0:
        return x.index_select(1, index)
    head = x[:, :prefix]
    if prefix == len(index):
        return head
    return torch.cat([head, x.index_select(1, index[prefix:])], dim=1)


def times_owner(
    probs: torch.Tensor, factor: torch.Tensor, owner: torch.Tensor, prefix: int
) -> torch.Tensor:
    """``probs * factor[:, owner]``: (B, C, H, W) x (B, K, H, W) -> (B, C, H, W), written in
    one pass (the old classes' prefix is a slice, the created classes a small gather)."""
    out = torch.empty_like(probs)
    prefix = min(prefix, factor.shape[1])
    torch.mul(probs[:, :prefix], factor[:, :prefix], out=out[:, :prefix])
    if prefix < probs.shape[1]:
        rest = factor.index_select(1, owner[prefix:])
        torch.mul(probs[:, prefix:], rest, out=out[:, prefix:])
    return out


def sum_over_sets(x: torch.Tensor, layout: SetLayout, reduce: str = "sum") -> torch.Tensor:
    """Per teacher set, the sum (or ``"any"`` for bool x) of x's channels in it:
    (B, C, H, W) -> (B, K, H, W). Singleton sets are a slice or a gather; only the few larger
    sets pay a reduction."""
    out = select_channels(x, layout.first, layout.first_prefix).clone()
    for k, members in layout.larger:
        chosen = x.index_select(1, members)
        out[:, k] = chosen.any(dim=1) if reduce == "any" else chosen.sum(dim=1)
    return out
