"""The pieces strategies are made of: candidate transforms and loss terms.

Each piece is a frozen dataclass of hyperparameters, callable on a
:class:`~incremental.strategies.step.StepContext`: a transform returns a changed context
(narrower candidate sets, pseudo-labels), a term returns a scalar loss. A piece says whether it
needs the teacher or feature maps, and may bring state (fitted thresholds) and the Lightning
callbacks that maintain it. New pieces only need these few members.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import lightning as L
import torch

from incremental.labels import StepLabels
from incremental.losses import (
    family_contrast,
    family_sets,
    label_consistent_distillation,
    local_pod_loss,
    partial_cross_entropy,
    pseudo_label_candidates,
    refine_candidates,
    set_distillation,
)
from incremental.strategies.step import StepContext

#: How set distillation reads the label's sets (see :class:`SetKD`).
CONDITIONINGS = (
    "none", "label", "label_consistent", "label_consistent_sets", "label_consistent_singletons"
)  # fmt: skip


class Component:
    """Members every transform and term has (defaults: needs nothing, brings nothing)."""

    #: the name of a term's value in the logs (``train/<name>``).
    name: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = False
    needs_features: ClassVar[bool] = False
    #: the decay of an exponential moving average of the student this piece reads
    #: (``StepContext.ema_logits``), or None: it reads none.
    ema_decay: float | None = None

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
        image_factor: ``"plop"``, PLOP's ``accepted / (unlabeled + 1e-6)`` per image (0 for an
            image without unlabeled pixels; ``train.py`` lines 281-289), or ``"share"``, the
            accepted share with 1 for such an image (the ``plop-normalised`` variant).
    """

    base_threshold: float = 0.001
    image_factor: str = "plop"
    needs_teacher: ClassVar[bool] = True
    #: the state tensor holding the (K,) thresholds; -1 until fitted.
    STATE: ClassVar[str] = "entropy_thresholds"

    def __post_init__(self) -> None:
        if self.image_factor not in ("plop", "share"):
            raise ValueError(f"image_factor: {self.image_factor!r} is not one of ['plop', 'share']")

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
            epsilon=1e-6 if self.image_factor == "plop" else None,
        )
        return step.replace(
            candidates=candidates, image_factor=factor, informative=~candidates.all(dim=1)
        )


def parent_set_pixels(step: StepContext) -> torch.Tensor:
    """(B, H, W) bool: pixels whose label's set is one of T's larger sets, an old label that
    the step splits or widens (an old image's "footwear" = {footwear_other, sneaker})."""
    family = torch.zeros_like(step.informative)
    for members in family_sets(step.teacher_sets):  # (C,) bool each
        family |= (step.label_candidates == members[None, :, None, None]).all(dim=1)
    return family


@dataclass(frozen=True)
class ParentSetsDistilledOnly(Component):
    """Old labels of a widened class leave the cross-entropy: at a pixel whose label's set is
    one of T's larger sets (an old image's "footwear"), the pixel stops being informative, so
    only the distillation reads it. Such a set says nothing about the split, and its
    cross-entropy pushes both children up in proportion to their share, i.e. it reinforces
    whichever child is ahead; the distillation keeps the parent's mass all the same.

    A pixel an earlier transform narrowed within its set (:class:`SelfTrainWithinSets`: the
    student is sure it is the footwear's remainder) now says something about the split and
    stays; only the pixels whose candidates are still the whole set leave."""

    def __call__(self, step: StepContext) -> StepContext:
        still_whole = (step.candidates == step.label_candidates).all(dim=1)
        return step.replace(informative=step.informative & ~(parent_set_pixels(step) & still_whole))


@dataclass(frozen=True)
class SelfTrainWithinSets(Component):
    """Within-set self-training: at a pixel whose label's set is one of T's larger sets (an old
    image's "footwear" = {footwear_other, sneaker}, or its "background" = {background, bag}),
    once the student is confident within the set (one member holds at least ``threshold`` of
    the set's probability), the set becomes that member. Old images then give the split (or
    the hidden new class) evidence of the student's own, instead of only parent-level labels.

    Attributes:
        threshold: the member's share of the set's probability that counts as confident.
        ema_decay: None: the student's own probabilities decide; a decay in (0, 1): those of
            an exponential moving average of the student's weights (a mean teacher, Tarvainen
            and Valpola 2017), updated after every optimiser step, which change more slowly
            than the student and so confirm its mistakes less.
    """

    threshold: float = 0.9
    ema_decay: float | None = None

    def __post_init__(self) -> None:
        if not 0.5 < self.threshold <= 1.0:
            raise ValueError(f"self_training threshold must be in (0.5, 1], got {self.threshold}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"self_training_ema must be in (0, 1), got {self.ema_decay}")

    def __call__(self, step: StepContext) -> StepContext:
        with torch.no_grad():
            sets = step.label_candidates
            family = parent_set_pixels(step)
            probs = (
                step.probs
                if self.ema_decay is None
                else step.require_ema_probs("self_training_ema")
            )
            within = probs * sets
            best, index = within.max(dim=1)
            confident = family & (best >= self.threshold * within.sum(dim=1))
            if not bool(confident.any()):
                return step
            chosen = torch.zeros_like(sets).scatter_(1, index[:, None], True)
            candidates = torch.where(confident[:, None], chosen, step.candidates)
        return step.replace(candidates=candidates)


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
        normalization: ``"informative"``, the mean over the pixels whose set says something
            (this project's), or ``"all_pixels"``, the sum divided by every pixel of the batch,
            ignored ones included (MiB's and PLOP's training code: ``reduction="none"`` then
            ``.mean()``, MiB ``train.py`` lines 103-107, PLOP ``train.py`` lines 341-352).
    """

    class_weights: str | None = None
    focal_gamma: float = 0.0
    normalization: str = "informative"
    name: ClassVar[str] = "ce"

    def __post_init__(self) -> None:
        if self.class_weights not in (None, "inverse_frequency"):
            raise ValueError(
                f"class_weights: {self.class_weights!r} is not one of [None, 'inverse_frequency']"
            )
        if self.focal_gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0, got {self.focal_gamma}")
        if self.normalization not in ("informative", "all_pixels"):
            raise ValueError(
                f"normalization: {self.normalization!r} is not one of ['informative', 'all_pixels']"
            )

    def __call__(self, step: StepContext) -> torch.Tensor:
        per_image = step.image_factor is not None
        all_pixels = self.normalization == "all_pixels"
        ce = partial_cross_entropy(
            step.logits,
            step.candidates,
            step.class_weights,
            self.focal_gamma,
            reduction="none" if per_image or all_pixels else "mean",
            informative=step.informative,
            probs=step.probs,
        )
        if per_image:
            ce = ce * step.image_factor[:, None, None]
        if all_pixels:
            return ce.sum() / ce.numel()
        if per_image:
            return ce.sum() / step.informative.sum().clamp_min(1)
        return ce


@dataclass(frozen=True)
class SetKD(Component):
    """Set distillation ``-Σ_k q_k log Σ_{c∈T(k)} p_c``, averaged over pixels
    (:func:`~incremental.losses.set_distillation`).

    Attributes:
        weight: the term's factor.
        temperature: teacher softmax temperature.
        conditioning: ``"none"``; ``"label"``: q keeps only the teacher classes whose T(k)
            meets the label's set, renormalised; ``"label_consistent"``: that, and the student
            side of k is T(k) ∩ S where the label's set S is a proper multi-class set, and at a
            pixel labeled with a class the step adds (which the teacher never saw) the teacher
            keeps only that class's hiding places
            (:func:`~incremental.losses.label_consistent_distillation`);
            ``"label_consistent_sets"``: at proper multi-class sets only (the default from
            2026-11-27 until the added-class case was measured);
            ``"label_consistent_singletons"``: at every single-class label too.
        normalization: ``"sum"`` over the teacher's classes (this project's), or
            ``"old_classes"``: divided by their number K, MiB's average over the old classes
            (``UnbiasedKnowledgeDistillationLoss``, MiB ``utils/loss.py`` line 165).
    """

    weight: float = 1.0
    temperature: float = 1.0
    conditioning: str = "none"
    normalization: str = "sum"
    name: ClassVar[str] = "kd"
    needs_teacher: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(
                f"conditioning: {self.conditioning!r} is not one of {list(CONDITIONINGS)}"
            )
        if self.normalization not in ("sum", "old_classes"):
            raise ValueError(
                f"normalization: {self.normalization!r} is not one of ['sum', 'old_classes']"
            )

    def _singletons(self, step: StepContext) -> bool | torch.Tensor:
        """The single-class labels at which the teacher is conditioned."""
        if self.conditioning == "label_consistent_singletons":
            return True
        if self.conditioning == "label_consistent" and step.added_classes is not None:
            return step.added_classes
        return False

    def __call__(self, step: StepContext) -> torch.Tensor:
        teacher = step.require_teacher("SetKD")
        if self.conditioning.startswith("label_consistent"):
            loss = label_consistent_distillation(
                step.logits,
                teacher,
                step.teacher_sets,
                step.label_candidates,
                self.temperature,
                probs=step.probs,
                singletons=self._singletons(step),
            )
        else:
            loss = set_distillation(
                step.logits,
                teacher,
                step.teacher_sets,
                self.temperature,
                step.label_candidates if self.conditioning == "label" else None,
                probs=step.probs,
            )
        if self.normalization == "old_classes":
            loss = loss / step.teacher_sets.shape[0]
        return self.weight * loss


@dataclass(frozen=True)
class LocalPOD(Component):
    """Local POD feature distillation (:func:`~incremental.losses.local_pod_loss`).

    ``Σ_l w_l · mean_b ||POD(student_l) - POD(teacher_l)||₂ / L`` over the feature layers,
    times ``sqrt(C / C_new)`` with ``schedule``. PLOP's form (``plop``): ``layers="plop"`` (each
    ResNet stage before its last activation, the decoder output and the logits before
    upsampling), ``normalize=False``, ``weight=0.01`` for the features and ``logits_weight=0.0005``
    for the logits (the student's logits summed over each T(k), so that its new classes add to
    the background's, as PLOP's ``extra_channels: sum``), ``schedule=True`` (PLOP ``train.py``
    lines 716-972). The normalised variant (``plop-normalised``): stage outputs and the decoder
    output, each pool L2-normalised, no logits term, no schedule.

    Attributes:
        weight: w_l of the feature layers.
        logits_weight: w_l of the logits layer (``layers="plop"``).
        normalize: L2-normalise each pool.
        schedule: multiply by ``sqrt(C / C_new)``, C the student's classes, C_new the step's.
        layers: ``"stages"`` or ``"plop"`` (:data:`~incremental.models.FEATURE_LAYERS`).
    """

    weight: float = 0.01
    logits_weight: float = 0.0005
    normalize: bool = False
    schedule: bool = True
    layers: str = "plop"
    name: ClassVar[str] = "pod"
    needs_teacher: ClassVar[bool] = True
    needs_features: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.layers not in ("stages", "plop"):
            raise ValueError(f"layers: {self.layers!r} is not one of ['stages', 'plop']")

    def __call__(self, step: StepContext) -> torch.Tensor:
        student, teacher = step.student_features, step.teacher_features
        if student is None or teacher is None:
            raise ValueError("LocalPOD needs the student's and the teacher's feature maps")
        weights = [self.weight] * len(student)
        if self.layers == "plop":  # the last maps are logits: the student's summed over T(k)
            sets = step.teacher_sets.to(student[-1].dtype)
            student = [*student[:-1], torch.einsum("kc,bchw->bkhw", sets, student[-1])]
            weights[-1] = self.logits_weight
        loss = local_pod_loss(student, teacher, normalize=self.normalize, layer_weights=weights)
        if self.schedule:
            num_old, num_classes = step.teacher_sets.shape
            loss = loss * math.sqrt(num_classes / max(num_classes - num_old, 1))
        return loss


@dataclass(frozen=True)
class FamilyContrast(Component):
    """Pixel-to-prototype contrast on the student's decoder output within each family T(k)
    of more than one member (:func:`~incremental.losses.family_contrast`): anchors are the
    pixels whose candidate set, after the transforms, is a single member (a labeled sneaker,
    an unlabeled footwear refined to {footwear_other}).

    Attributes:
        weight: the term's factor.
        temperature: the softmax temperature over cosine similarities.
        prototypes: prototypes per member (spherical k-means of its anchors; 1: the mean).
    """

    weight: float = 0.1
    temperature: float = 0.1
    prototypes: int = 1
    name: ClassVar[str] = "contrast"
    needs_features: ClassVar[bool] = True
    #: the decoder output is the last map of the "stages" layers (a strategy reads one set of
    #: layers: this term does not combine with PLOP's ``LocalPOD(layers="plop")``).
    layers: ClassVar[str] = "stages"

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError(f"contrast weight must be > 0, got {self.weight}")
        if self.temperature <= 0:
            raise ValueError(f"contrast_temperature must be > 0, got {self.temperature}")
        count = self.prototypes
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"contrast_prototypes must be an integer >= 1, got {count!r}")

    def __call__(self, step: StepContext) -> torch.Tensor:
        if step.student_features is None:
            raise ValueError("FamilyContrast needs the student's feature maps")
        loss = family_contrast(
            step.student_features[-1],
            step.candidates,
            step.teacher_sets,
            self.temperature,
            self.prototypes,
        )
        return self.weight * loss
