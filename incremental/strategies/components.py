"""The pieces strategies are made of: candidate transforms and loss terms.

Each piece is a frozen dataclass of hyperparameters, callable on a
:class:`~incremental.strategies.step.StepContext`: a transform returns a changed context
(narrower candidate sets, pseudo-labels), a term returns a scalar loss. A piece says whether it
needs the teacher or feature maps, and may bring state (fitted thresholds) and the Lightning
callbacks that maintain it. New pieces only need these few members.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import lightning as L
import torch

from incremental.labels import StepLabels
from incremental.losses import (
    local_pod_loss,
    partial_cross_entropy,
    pseudo_label_candidates,
    refine_candidates,
    set_distillation,
)
from incremental.strategies.step import StepContext


class Component:
    """Members every transform and term has (defaults: needs nothing, brings nothing)."""

    #: the name of a term's value in the logs (``train/<name>``).
    name: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = False
    needs_features: ClassVar[bool] = False

    def initial_state(self, labels: StepLabels) -> dict[str, torch.Tensor]:
        """State tensors this piece keeps in the module (checkpointed, moved with it)."""
        return {}

    def callbacks(self) -> list[L.Callback]:
        """Lightning callbacks that maintain this piece's state."""
        return []

    def describe(self) -> dict[str, Any]:
        """Type and hyperparameters, plain data (for configs, W&B, results)."""
        return {"type": type(self).__name__, **asdict(self)}  # type: ignore[call-overload]


# ---------------------------------------------------------------------- candidate transforms
@dataclass(frozen=True)
class Refine(Component):
    """Teacher-refined sets: where the teacher is confident in k, an informative set S becomes
    S ∩ T(k) (:func:`~incremental.losses.refine_candidates`).

    Attributes:
        threshold: teacher confidence (or normalised entropy) that counts as confident.
        criterion: ``"confidence"`` (max probability ≥ threshold) or ``"entropy"`` (≤).
    """

    threshold: float = 0.7
    criterion: str = "confidence"
    needs_teacher: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.criterion not in ("confidence", "entropy"):
            raise ValueError(
                f"refine_criterion: {self.criterion!r} is not one of ['confidence', 'entropy']"
            )

    def __call__(self, step: StepContext) -> StepContext:
        refined = refine_candidates(
            step.candidates,
            step.require_teacher("Refine"),
            step.teacher_sets,
            self.threshold,
            self.criterion,
        )
        return step.replace(
            candidates=torch.where(step.informative[:, None], refined, step.candidates)
        )


@dataclass(frozen=True)
class PseudoLabel(Component):
    """PLOP's pseudo-labels: unlabeled pixels take the teacher's class where its entropy is
    below that class's threshold, else are ignored; each image's loss is scaled by its accepted
    share (:func:`~incremental.losses.pseudo_label_candidates`). The thresholds are fitted
    before training by :class:`~incremental.callbacks.FitEntropyThresholds`.

    Attributes:
        base_threshold: the thresholds' floor (PLOP's 0.001).
    """

    base_threshold: float = 0.001
    needs_teacher: ClassVar[bool] = True
    #: the state tensor holding the (K,) thresholds; -1 until fitted.
    STATE: ClassVar[str] = "entropy_thresholds"

    def initial_state(self, labels: StepLabels) -> dict[str, torch.Tensor]:
        return {self.STATE: torch.full((labels.transition.num_old_classes,), -1.0)}

    def callbacks(self) -> list[L.Callback]:
        from incremental.callbacks import FitEntropyThresholds

        return [FitEntropyThresholds(self.STATE, self.base_threshold)]

    def __call__(self, step: StepContext) -> StepContext:
        candidates, factor = pseudo_label_candidates(
            step.candidates,
            step.require_teacher("PseudoLabel"),
            step.state[self.STATE],
            step.representatives,
        )
        return step.replace(
            candidates=candidates, image_factor=factor, informative=~candidates.all(dim=1)
        )


# ---------------------------------------------------------------------- loss terms
@dataclass(frozen=True)
class PartialCE(Component):
    """Partial-label cross-entropy ``-log Σ_{c∈S} p_c`` over informative pixels
    (:func:`~incremental.losses.partial_cross_entropy`); with a transform's per-image factor,
    each image's pixel losses are scaled by it (PLOP).

    Attributes:
        class_weights: None, or ``"inverse_frequency"`` (median-frequency balancing over the
            training labels' singleton pixels, computed before training).
        focal_gamma: focal modulation, 0 = off.
    """

    class_weights: str | None = None
    focal_gamma: float = 0.0
    name: ClassVar[str] = "ce"

    def __post_init__(self) -> None:
        if self.class_weights not in (None, "inverse_frequency"):
            raise ValueError(
                f"class_weights: {self.class_weights!r} is not one of [None, 'inverse_frequency']"
            )
        if self.focal_gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0, got {self.focal_gamma}")

    def __call__(self, step: StepContext) -> torch.Tensor:
        per_image = step.image_factor is not None
        ce = partial_cross_entropy(
            step.logits,
            step.candidates,
            step.class_weights,
            self.focal_gamma,
            reduction="none" if per_image else "mean",
            informative=step.informative,
            probs=step.probs,
        )
        if per_image:
            ce = (ce * step.image_factor[:, None, None]).sum() / step.informative.sum().clamp_min(1)
        return ce


@dataclass(frozen=True)
class SetKD(Component):
    """Set distillation ``-Σ_k q_k log Σ_{c∈T(k)} p_c``, averaged over pixels
    (:func:`~incremental.losses.set_distillation`).

    Attributes:
        weight: the term's factor.
        temperature: teacher softmax temperature.
        conditioning: ``"none"``, or ``"label"``: q keeps only the teacher classes whose T(k)
            meets the label's set, renormalised.
    """

    weight: float = 1.0
    temperature: float = 1.0
    conditioning: str = "none"
    name: ClassVar[str] = "kd"
    needs_teacher: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.conditioning not in ("none", "label"):
            raise ValueError(f"conditioning: {self.conditioning!r} is not one of ['none', 'label']")

    def __call__(self, step: StepContext) -> torch.Tensor:
        return self.weight * set_distillation(
            step.logits,
            step.require_teacher("SetKD"),
            step.teacher_sets,
            self.temperature,
            step.label_candidates if self.conditioning == "label" else None,
            probs=step.probs,
        )


@dataclass(frozen=True)
class LocalPOD(Component):
    """Local POD feature distillation (:func:`~incremental.losses.local_pod_loss`).

    Attributes:
        weight: the term's factor.
    """

    weight: float = 0.01
    name: ClassVar[str] = "pod"
    needs_teacher: ClassVar[bool] = True
    needs_features: ClassVar[bool] = True

    def __call__(self, step: StepContext) -> torch.Tensor:
        if step.student_features is None or step.teacher_features is None:
            raise ValueError("LocalPOD needs the student's and the teacher's feature maps")
        return self.weight * local_pod_loss(step.student_features, step.teacher_features)
