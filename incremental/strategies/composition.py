"""A strategy: how the labels are read, how the head starts, which candidate transforms and
which loss terms make the step's loss (DESIGN §3).

``loss = Σ_term term(transform_n(... transform_1(step)))``: the LightningModule builds the step
context, applies the transforms in order and sums the terms; it knows nothing else about any
strategy. Named strategies are factories in :mod:`incremental.strategies.registry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import lightning as L
import torch
from torch import nn

from incremental.labels import LabelReading, StepLabels
from incremental.strategies.components import Component, PartialCE
from incremental.strategies.step import StepContext

#: How the student's head starts: expanded from the teacher (mass-preserving or random rows
#: for the created classes), or a whole network from scratch (oracle only).
INITS = ("mass_preserving", "random", "scratch")


@dataclass(frozen=True)
class Strategy:
    """One step-1 training strategy as a composition.

    Attributes:
        name: the strategy's name (results rows, W&B).
        reading: how the datasets' labels are read into candidate sets.
        init: ``"mass_preserving"``, ``"random"`` or ``"scratch"`` (see :data:`INITS`).
        remainder_share: with mass-preserving init, a split remainder's share of its parent's
            probability at step start (None: equal shares; see
            :func:`~incremental.models.expand_head`).
        transforms: candidate transforms, applied in order.
        terms: loss terms, summed.
        freeze: train only the created classes' classifier rows (the rest of the network, batch
            norm statistics included, stays as the teacher's).
        replay: mix the old images into training.
        old_share: the old images' share of each epoch when replaying.
    """

    name: str
    reading: LabelReading = field(default_factory=LabelReading)
    init: str = "mass_preserving"
    remainder_share: float | None = None
    transforms: tuple[Component, ...] = ()
    terms: tuple[Component, ...] = (PartialCE(),)
    freeze: bool = False
    replay: bool = False
    old_share: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "transforms", tuple(self.transforms))
        object.__setattr__(self, "terms", tuple(self.terms))
        if self.init not in INITS:
            raise ValueError(f"init: {self.init!r} is not one of {list(INITS)}")
        if self.remainder_share is not None and not 0.0 < self.remainder_share < 1.0:
            raise ValueError(f"remainder_share must be in (0, 1), got {self.remainder_share}")
        if self.init == "scratch" and not self.reading.full_labels:
            raise ValueError("init='scratch' needs fully labeled data (the oracle)")
        if not 0.0 < self.old_share < 1.0:
            raise ValueError(f"old_share must be in (0, 1), got {self.old_share}")
        if not self.terms:
            raise ValueError(f"strategy {self.name!r} has no loss term")
        names = [t.name for t in self.terms]
        if len(set(names)) != len(names):
            raise ValueError(f"strategy {self.name!r}: loss terms with the same name {names}")

    # ------------------------------------------------------------------ what it needs
    @property
    def components(self) -> tuple[Component, ...]:
        return self.transforms + self.terms

    @property
    def uses_teacher(self) -> bool:
        """Whether training runs the teacher at every step."""
        return any(c.needs_teacher for c in self.components)

    @property
    def needs_features(self) -> bool:
        """Whether a term reads feature maps (two full forwards, features kept)."""
        return any(c.needs_features for c in self.components)

    @property
    def feature_layers(self) -> str | None:
        """Which feature maps the terms read (one set for all), or None."""
        layers = {c.layers for c in self.components if c.needs_features}
        if len(layers) > 1:
            raise ValueError(f"strategy {self.name!r}: terms read different layers {layers}")
        return next(iter(layers), None)

    @property
    def ema_decay(self) -> float | None:
        """The decay of the student's moving average a piece reads (one for all), or None."""
        # getattr: a piece written before this member (duck-typed, not a Component) reads none.
        decays = {getattr(c, "ema_decay", None) for c in self.components} - {None}
        if len(decays) > 1:
            raise ValueError(
                f"strategy {self.name!r}: pieces ask for different EMA decays {decays}"
            )
        return next(iter(decays), None)

    @property
    def class_weighting(self) -> str | None:
        """The cross-entropy's class-weight rule, if any (computed from the data first)."""
        rules = [t.class_weights for t in self.terms if isinstance(t, PartialCE)]
        return next((r for r in rules if r), None)

    def initial_state(self, labels: StepLabels) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = {}
        for component in self.components:
            state.update(component.initial_state(labels))
        return state

    def callbacks(self) -> list[L.Callback]:
        """The Lightning callbacks of the strategy's pieces (and of freezing)."""
        callbacks = [cb for c in self.components for cb in c.callbacks()]
        if self.freeze:
            from incremental.callbacks import FreezeOldNetwork

            callbacks.append(FreezeOldNetwork())
        return callbacks

    # ------------------------------------------------------------------ the loss
    def loss_terms(self, step: StepContext) -> dict[str, torch.Tensor]:
        """Apply the transforms, then evaluate every term: name -> scalar loss."""
        for transform in self.transforms:
            step = transform(step)
        return {term.name: term(step) for term in self.terms}

    # ------------------------------------------------------------------ variants
    def with_cross_entropy(self, **options: Any) -> Strategy:
        """The same strategy with cross-entropy options changed (``class_weights``,
        ``focal_gamma``), which every strategy with a :class:`PartialCE` term accepts."""
        if not any(isinstance(t, PartialCE) for t in self.terms):
            raise ValueError(f"strategy {self.name!r} has no cross-entropy term for {options}")
        terms = tuple(replace(t, **options) if isinstance(t, PartialCE) else t for t in self.terms)
        return replace(self, terms=terms)

    def describe(self) -> dict[str, Any]:
        """Every setting as plain data (W&B config, saved beside results)."""
        return {
            "name": self.name,
            "reading": self.reading.to_dict(),
            "init": self.init,
            "remainder_share": self.remainder_share,
            "transforms": [t.describe() for t in self.transforms],
            "terms": [t.describe() for t in self.terms],
            "freeze": self.freeze,
            "replay": self.replay,
            "old_share": self.old_share,
        }


class StrategyState(nn.Module):
    """The strategy's state tensors as buffers (saved in checkpoints, moved with the module).

    Args:
        tensors: name -> initial value (see :meth:`Strategy.initial_state`).
    """

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.names: Sequence[str] = tuple(tensors)
        for name, value in tensors.items():
            self.register_buffer(name, value)

    def __getitem__(self, name: str) -> torch.Tensor:
        return getattr(self, name)

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {name: self[name] for name in self.names}
