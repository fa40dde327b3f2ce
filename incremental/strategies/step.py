"""What one training step knows, handed from component to component of a strategy.

The LightningModule fills a :class:`StepContext` from the batch and the forwards; the strategy's
candidate transforms return changed copies of it (narrower sets, pseudo-labels); its loss terms
read it. Tests build one from fixed tensors to pin a preset's loss to a peer's formula.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import torch

from incremental.losses._checks import at_least_fp32


@dataclass
class StepContext:
    """The tensors of one training step.

    Attributes:
        logits: (B, C, H, W) student logits, with grad.
        candidates: (B, C, H, W) bool, the candidate sets the cross-entropy reads (transforms
            narrow them).
        informative: (B, H, W) bool, pixels whose set is not every class.
        teacher_sets: (K, C) bool, T.
        representatives: (K,) long, the student class that keeps each old class's meaning.
        label_candidates: (B, C, H, W) bool, the sets the labels themselves give, before any
            transform (default: ``candidates``).
        added_classes: (C,) bool, the classes the step adds (the teacher never saw them), or
            None: none.
        teacher_logits: (B, K, H, W) teacher logits (inference tensors), or None.
        student_features, teacher_features: feature maps (B, D_l, H_l, W_l) per layer for
            feature distillation, or None.
        ema_logits: (B, C, H, W) logits of the student's exponential moving average (no grad),
            when a piece asks for it (:attr:`Component.ema_decay`), or None.
        class_weights: (C,) cross-entropy class weights, or None.
        image_factor: (B,) per-image loss factor set by a transform (PLOP), or None.
        state: the strategy's state tensors by name (fitted thresholds...).
    """

    logits: torch.Tensor
    candidates: torch.Tensor
    informative: torch.Tensor
    teacher_sets: torch.Tensor
    representatives: torch.Tensor
    label_candidates: torch.Tensor | None = None
    added_classes: torch.Tensor | None = None
    teacher_logits: torch.Tensor | None = None
    student_features: list[torch.Tensor] | None = None
    teacher_features: list[torch.Tensor] | None = None
    ema_logits: torch.Tensor | None = None
    class_weights: torch.Tensor | None = None
    image_factor: torch.Tensor | None = None
    state: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label_candidates is None:
            self.label_candidates = self.candidates

    @cached_property
    def probs(self) -> torch.Tensor:
        """``logits.softmax(1)`` (B, C, H, W) without grad, in at least fp32, computed once and
        shared by the terms (their hand-written backwards take it)."""
        with torch.no_grad():
            return at_least_fp32(self.logits).softmax(dim=1)

    def require_ema_probs(self, who: str) -> torch.Tensor:
        """The moving-average student's softmax (B, C, H, W), fp32 at least, or an error naming
        the component that needs it."""
        if self.ema_logits is None:
            raise ValueError(f"{who} needs the averaged student's logits, and this step has none")
        with torch.no_grad():
            return at_least_fp32(self.ema_logits).softmax(dim=1)

    def replace(self, **changes: object) -> StepContext:
        """A copy with ``changes`` (transforms return one; the shared softmax is recomputed
        only if asked again)."""
        return dataclasses.replace(self, **changes)

    def require_teacher(self, who: str) -> torch.Tensor:
        """The teacher logits, or an error naming the component that needs them."""
        if self.teacher_logits is None:
            raise ValueError(f"{who} needs the teacher's logits, and this step has none")
        return self.teacher_logits
