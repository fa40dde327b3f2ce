"""The LightningModule: a frozen teacher, a student with the expanded head, a strategy.

Torchgeo-style: the module holds the networks, the step, the metrics and the optimiser. What a
strategy does is the strategy's (:class:`~incremental.strategies.Strategy`): the step builds a
:class:`~incremental.strategies.StepContext` and sums the strategy's loss terms. Freezing and
threshold fitting are callbacks the strategy brings (:meth:`configure_callbacks`); the forwards
(and the shared body of a frozen student) are :class:`~incremental.models.PairedForward`'s. The
same module trains the old model (step 0): no teacher, an identity transition, cross-entropy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics.classification import MulticlassConfusionMatrix

from incremental.callbacks import LogLossTerms
from incremental.constants import IGNORE_INDEX
from incremental.labels import LabelLookup, StepLabels
from incremental.metrics import segmentation_scores
from incremental.models.paired_forward import Forwards, PairedForward, shared_head
from incremental.strategies import StepContext, Strategy, StrategyState

#: What ``on_non_finite`` accepts: stop with an error, or skip the batch and count it.
NON_FINITE_POLICIES = ("raise", "skip")
OPTIMIZERS = ("adamw", "sgd")


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite."""


@dataclass(frozen=True)
class Optimization:
    """Optimiser settings: ``"adamw"`` or ``"sgd"`` (momentum 0.9, Nesterov: the papers'),
    learning rate decayed polynomially to 0 per step (power 0.9, as MiB and PLOP)."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: {self.optimizer!r} is not one of {list(OPTIMIZERS)}")


class IncrementalSegmenter(L.LightningModule):
    """Teacher + student + strategy.

    Args:
        student: the network being trained, ``labels.num_classes`` outputs.
        labels: the step's label space (candidate sets, T, what is scored as new).
        strategy: the loss composition (default: cross-entropy on the candidate sets).
        teacher: the old model (None for step 0 or strategies that never use it).
        optimization: optimiser settings.
        class_weights: optional (C,) weights for the cross-entropy.
        on_non_finite: ``"raise"`` stops with an error naming step, batch and term;
            ``"skip"`` skips the batch and counts it (``train/skipped_batches``).
        max_skipped_share: with ``"skip"``, an epoch that skips a larger share of its batches
            stops the run with an error (it diverged).
    """

    def __init__(
        self,
        student: nn.Module,
        labels: StepLabels,
        strategy: Strategy | None = None,
        teacher: nn.Module | None = None,
        optimization: Optimization | None = None,
        class_weights: torch.Tensor | None = None,
        on_non_finite: str = "raise",
        max_skipped_share: float = 0.05,
    ) -> None:
        super().__init__()
        self.strategy = strategy or Strategy("plain")
        if self.strategy.uses_teacher and teacher is None:
            raise ValueError(f"strategy {self.strategy.name!r} uses a teacher, but none was given")
        if on_non_finite not in NON_FINITE_POLICIES:
            raise ValueError(
                f"on_non_finite: {on_non_finite!r} is not one of {list(NON_FINITE_POLICIES)}"
            )
        self.student, self.teacher = student, teacher
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        self.labels = labels
        self.classes = labels.classes
        self.optimization = optimization or Optimization()
        self.on_non_finite, self.max_skipped_share = on_non_finite, max_skipped_share
        self._epoch_batches = self._epoch_skipped = 0
        self.lookup = LabelLookup(labels)
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.strategy_state = StrategyState(self.strategy.initial_state(labels))
        self.register_buffer("skipped_batches", torch.zeros((), dtype=torch.long))
        # No argument validation: it scans every batch's values (torch.unique), 2-3 s of a
        # 40 s quick-profile run; targets come from the label lookup, in range by construction.
        self.val_confusion, self.test_confusion = (
            MulticlassConfusionMatrix(
                len(self.classes), ignore_index=IGNORE_INDEX, validate_args=False
            )
            for _ in range(2)
        )
        share = None
        if self.strategy.freeze and self.strategy.uses_teacher and not self.strategy.needs_features:
            share = shared_head(
                student, teacher, len(self.classes), labels.transition.num_old_classes
            )
        self.forwards = PairedForward(
            student,
            teacher if self.strategy.uses_teacher else None,
            features=self.strategy.feature_layers,
            shared=share,
        )
        self.test_scores: dict[str, float] = {}
        # A moving average of the student's weights and batch-norm statistics, when a piece
        # reads one (a mean teacher for self-training); it starts as the student and follows it
        # after every optimiser step (torch's AveragedModel, checkpointed with the module).
        self.ema = None
        if self.strategy.ema_decay is not None:
            self.ema = AveragedModel(
                student,
                multi_avg_fn=get_ema_multi_avg_fn(self.strategy.ema_decay),
                use_buffers=True,
            ).requires_grad_(False)

    # ------------------------------------------------------------------ set-up
    def configure_callbacks(self) -> list[L.Callback]:
        return [*self.strategy.callbacks(), LogLossTerms()]

    def train(self, mode: bool = True) -> IncrementalSegmenter:
        """The teacher stays in eval mode: its batch-norm statistics must never move."""
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        if self.ema is not None:  # its statistics are averaged, never updated by its forwards
            self.ema.eval()
        return self

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.optimization
        params = [p for p in self.student.parameters() if p.requires_grad]
        if o.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=o.lr, momentum=0.9, nesterov=True, weight_decay=o.weight_decay
            )
        else:
            optimizer = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: max(1.0 - step / total, 0.0) ** 0.9
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ------------------------------------------------------------------ training
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Student logits (B, C, H, W) for images (B, 3, H, W)."""
        return self.student(images)

    def step_context(
        self, batch: dict[str, torch.Tensor], forwards: Forwards | None = None
    ) -> StepContext:
        """The batch's candidate sets and forwards (computed here unless given), as the
        strategy's pieces read them."""
        candidates, informative = self.lookup(batch["mask"], batch["dataset"])
        if forwards is None:
            forwards = self.forwards(batch["image"])
        return StepContext(
            logits=forwards.logits,
            candidates=candidates,
            informative=informative,
            teacher_sets=self.lookup.teacher_sets,
            representatives=self.lookup.representatives,
            # None where the step adds no class: no singleton to condition (a split's step).
            added_classes=self.lookup.added_classes if self.labels.transition.new_classes else None,
            teacher_logits=forwards.teacher_logits,
            student_features=forwards.student_features,
            teacher_features=forwards.teacher_features,
            ema_logits=self._ema_logits(batch["image"]),
            class_weights=self.class_weights,
            state=self.strategy_state.as_dict(),
        )

    def _ema_logits(self, images: torch.Tensor) -> torch.Tensor | None:
        """The averaged student's logits (B, C, H, W) for images (B, 3, H, W), without grad;
        None when no piece reads them."""
        if self.ema is None:
            return None
        with torch.no_grad():
            return self.ema(images)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """The moving average follows the student after each optimiser step."""
        if self.ema is not None:
            self.ema.update_parameters(self.student)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict | None:
        """The strategy's loss on the batch; its terms go to the logs (:class:`LogLossTerms`)."""
        terms = self.strategy.loss_terms(self.step_context(batch))
        loss = sum(terms.values())
        self._epoch_batches += 1
        if not bool(torch.isfinite(loss)):
            return self._non_finite(terms, batch_idx)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return {"loss": loss, "terms": {k: v.detach() for k, v in terms.items()}}

    def _non_finite(self, terms: dict[str, torch.Tensor], batch_idx: int) -> None:
        if self.on_non_finite == "skip":  # Lightning skips the optimiser step on None
            self.skipped_batches += 1
            self._epoch_skipped += 1
            self.log("train/skipped_batches", self.skipped_batches.float())
            return None
        bad = [k for k, v in terms.items() if not bool(torch.isfinite(v))]
        raise NonFiniteLossError(
            f"non-finite loss at global step {self.global_step}, epoch {self.current_epoch}, "
            f"batch {batch_idx}: term(s) {bad} = { {k: float(v) for k, v in terms.items()} }"
        )

    def on_train_epoch_start(self) -> None:
        self._epoch_batches = self._epoch_skipped = 0

    def on_train_epoch_end(self) -> None:
        if not self._epoch_batches:
            return
        share = self._epoch_skipped / self._epoch_batches
        if share > self.max_skipped_share:
            raise NonFiniteLossError(
                f"epoch {self.current_epoch}: {self._epoch_skipped} of {self._epoch_batches} "
                f"batches skipped for a non-finite loss ({share:.0%} > max_skipped_share "
                f"{self.max_skipped_share:.0%}): the run diverged and is no result; lower the "
                "learning rate, or raise train.max_skipped_share if a few bad batches are expected"
            )

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.val_confusion.update(self(batch["image"]).argmax(dim=1), batch["mask"])

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.test_confusion.update(self(batch["image"]).argmax(dim=1), batch["mask"])

    def _scores(self, confusion: MulticlassConfusionMatrix) -> dict[str, float]:
        scores = segmentation_scores(
            confusion.compute(),
            self.classes,
            self.labels.new_classes,
            self.labels.parents,
            self.labels.transition.splits,
        )
        confusion.reset()
        return scores

    def on_validation_epoch_end(self) -> None:
        scores = self._scores(self.val_confusion)
        for key, value in scores.items():  # overall, per-class and split scores
            if not math.isnan(value):
                self.log(f"val/{key}", value, prog_bar=key == "miou_all", sync_dist=False)

    def on_test_epoch_end(self) -> None:
        self.test_scores = self._scores(self.test_confusion)
        for key, value in self.test_scores.items():
            if not math.isnan(value):
                self.log(f"test/{key}", value)
