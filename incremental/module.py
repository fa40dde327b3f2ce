"""The LightningModule: a frozen teacher, a student with the expanded head, a strategy.

The teacher (the old model) runs under ``torch.inference_mode`` in eval mode and is never
updated; it is a submodule so checkpoints carry it and a run can resume. When the student's
network is frozen up to its classifier (``freeze="old_network"``), teacher and student compute
the same features: they are computed once and fed to both heads. The strategy decides which
loss terms apply (:mod:`incremental.strategies`). The same module trains the old model
(step 0): no teacher, an identity transition, plain candidate sets.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from incremental.constants import IGNORE_INDEX
from incremental.labels import (
    CandidateSetTable,
    Transition,
    lookup_candidates,
    lookup_informative,
)
from incremental.losses import (
    EntropyHistogram,
    entropy_thresholds,
    local_pod_loss,
    partial_cross_entropy,
    pseudo_label_candidates,
    refine_candidates,
    set_distillation,
    unlabeled_pixels,
)
from incremental.metrics import segmentation_scores
from incremental.models import find_classifier, segment_with_features
from incremental.strategies import StrategyConfig


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite."""


# ---------------------------------------------------------------------- shared features
def head_name(model: nn.Module, num_classes: int) -> str:
    """The qualified name of the submodule that turns ``model``'s features into its logits.

    smp's ``segmentation_head`` when it holds the classifier (it may upsample after the
    classifier: DeepLabV3), otherwise the classifier itself (:func:`find_classifier`).
    """
    name, _ = find_classifier(model, num_classes)
    if name.startswith("segmentation_head."):
        return "segmentation_head"
    return name


def _state_outside(model: nn.Module, head: str) -> dict[str, torch.Tensor]:
    prefix = f"{head}."
    return {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}


def same_body(student: nn.Module, teacher: nn.Module, head: str) -> bool:
    """Whether ``student`` and ``teacher`` are the same network outside their ``head``:
    same class, same parameter and buffer names, equal values."""
    if type(student) is not type(teacher):
        return False
    ours, theirs = _state_outside(student, head), _state_outside(teacher, head)
    return ours.keys() == theirs.keys() and all(
        v.shape == theirs[k].shape and torch.equal(v, theirs[k].to(v.device))
        for k, v in ours.items()
    )


def forward_to_head(
    model: nn.Module, head: str, images: torch.Tensor
) -> tuple[torch.Tensor, tuple[Any, ...] | None]:
    """``model(images)`` and the positional inputs its submodule ``head`` received.

    Args:
        images: (B, 3, H, W).

    Returns:
        logits (B, C, H, W), and the head's inputs (for smp models the decoder output,
        (B, D, H, W)); None instead of the inputs when the model's output is not the head's
        own output (the model transforms it after the head), so that the inputs would not
        give the model's logits through another head.
    """
    seen: dict[str, Any] = {}

    def capture(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        seen["args"], seen["output"] = args, output

    handle = model.get_submodule(head).register_forward_hook(capture)
    try:
        logits = model(images)
    finally:
        handle.remove()
    # An identity check, not a value check: the head's output object must be what the model
    # returned, with nothing applied in between.
    return logits, (seen["args"] if seen.get("output") is logits else None)


class Forwards(NamedTuple):
    """What one training step's forwards give.

    Attributes:
        logits: student logits (B, C, H, W), with grad.
        teacher_logits: teacher logits (B, K, H, W), inference tensors; None without teacher.
        student_features, teacher_features: feature maps for POD, or None.
    """

    logits: torch.Tensor
    teacher_logits: torch.Tensor | None = None
    student_features: list[torch.Tensor] | None = None
    teacher_features: list[torch.Tensor] | None = None


class IncrementalSegmenter(L.LightningModule):
    """Teacher + student + strategy.

    Args:
        student: the network being trained, ``len(transition.student_classes)`` outputs.
        transition: the step (identity for step 0).
        table: candidate sets of the training datasets.
        strategy: loss terms and options.
        teacher: the old model (None for step 0 or strategies that never use it).
        lr, weight_decay: optimizer settings; the learning rate decays polynomially to 0
            (power 0.9, per step, as in MiB and PLOP).
        class_weights: optional (C,) weights for the cross-entropy.
        on_non_finite: ``"raise"`` stops with an error naming step, batch and term;
            ``"skip"`` skips the batch and counts it (``train/skipped_batches``).
        optimizer: ``"adamw"``, or ``"sgd"`` (momentum 0.9, Nesterov; the papers' choice).
        report_new_classes: the classes scored as "new" (default: those the transition
            creates; multi-step benchmarks report every class added after step 0).
    """

    def __init__(
        self,
        student: nn.Module,
        transition: Transition,
        table: CandidateSetTable,
        strategy: StrategyConfig | None = None,
        teacher: nn.Module | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        class_weights: torch.Tensor | None = None,
        on_non_finite: str = "raise",
        optimizer: str = "adamw",
        report_new_classes: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__()
        self.strategy = strategy or StrategyConfig(distillation="none", refine=False)
        if self.strategy.uses_teacher and teacher is None:
            raise ValueError("the strategy uses a teacher, but none was given")
        if on_non_finite not in ("raise", "skip"):
            raise ValueError(f"on_non_finite must be 'raise' or 'skip', got {on_non_finite!r}")
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        self.transition = transition
        self.table = table
        self.classes = transition.student_classes
        self.lr, self.weight_decay = lr, weight_decay
        self.on_non_finite = on_non_finite
        if optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
        self.optimizer_name = optimizer
        num_classes = len(self.classes)
        self.register_buffer("candidate_sets", table.sets_by_class.clone(), persistent=False)
        self.register_buffer("informative_values", table.informative.clone(), persistent=False)
        self.register_buffer(
            "teacher_sets", transition.teacher_matrix(self.strategy.split_aware), persistent=False
        )
        representatives = [
            self.classes.index(transition.representative(k)) for k in transition.old_classes
        ]
        self.register_buffer("representatives", torch.tensor(representatives), persistent=False)
        self.register_buffer("class_weights", class_weights, persistent=False)
        # PLOP thresholds: fitted once before training, checkpointed for resumes.
        self.register_buffer("pseudo_thresholds", torch.full((transition.num_old_classes,), -1.0))
        self.register_buffer("skipped_batches", torch.zeros((), dtype=torch.long))
        self.val_confusion = MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
        self.test_confusion = MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX)
        self._new_classes = transition.created_classes
        self._report_new_classes = tuple(report_new_classes or self._new_classes)
        self._parents = transition.parent_classes()
        if self.strategy.freeze == "old_network":
            self._freeze_old_network()
        self._shared_head = self._find_shared_head()
        self.test_scores: dict[str, float] = {}

    # ------------------------------------------------------------------ set-up
    def _freeze_old_network(self) -> None:
        """Train only the created classes' classifier rows (the 'freeze' strategy)."""
        self.student.requires_grad_(False)
        _, classifier = find_classifier(self.student, len(self.classes))
        classifier.requires_grad_(True)
        created = torch.tensor([c in set(self._new_classes) for c in self.classes])
        keep = created.float()

        def mask_rows(grad: torch.Tensor) -> torch.Tensor:
            shape = (-1,) + (1,) * (grad.dim() - 1)
            return grad * keep.to(grad.device).view(shape)

        classifier.weight.register_hook(mask_rows)
        if classifier.bias is not None:
            classifier.bias.register_hook(mask_rows)
        self._frozen_classifier = classifier

    def _find_shared_head(self) -> str | None:
        """The head whose input the teacher can take from the student's forward, or None.

        Only a frozen student body stays equal to the teacher's through training (weights,
        and BatchNorm statistics since :meth:`train` keeps it in eval mode); a trainable one
        parts from it at the first step. Feature distillation (POD) compares the two bodies'
        features and keeps two forwards.
        """
        s = self.strategy
        if not s.uses_teacher or s.freeze != "old_network" or s.pod_weight > 0:
            return None
        head = head_name(self.student, len(self.classes))
        if head != head_name(self.teacher, self.transition.num_old_classes):
            return None
        return head if same_body(self.student, self.teacher, head) else None

    def train(self, mode: bool = True) -> IncrementalSegmenter:
        """Keep the teacher (and a frozen student body) in eval mode: their BatchNorm
        statistics must not drift."""
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        if self.strategy.freeze == "old_network":
            self.student.eval()
            self._frozen_classifier.train(mode)
        return self

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.student.parameters() if p.requires_grad]
        # Decoupled weight decay would shrink frozen rows whose gradient is masked to zero.
        decay = 0.0 if self.strategy.freeze == "old_network" else self.weight_decay
        if self.optimizer_name == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=self.lr, momentum=0.9, nesterov=True, weight_decay=decay
            )
        else:
            optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: max(1.0 - step / total, 0.0) ** 0.9
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_train_start(self) -> None:
        if self.strategy.pseudo_labels and bool((self.pseudo_thresholds < 0).all()):
            self.pseudo_thresholds.copy_(self._fit_pseudo_thresholds())

    @torch.no_grad()
    def _fit_pseudo_thresholds(self) -> torch.Tensor:
        """PLOP: median normalised teacher entropy per predicted class over the unlabeled
        pixels of one pass through the training data."""
        histogram = EntropyHistogram(self.transition.num_old_classes)
        for batch in self.trainer.train_dataloader:
            batch = self.transfer_batch_to_device(batch, self.device, 0)
            unlabeled = unlabeled_pixels(self._candidates(batch))
            histogram.update(self.teacher(batch["image"]), unlabeled)
        # Under DDP each process saw its share of the data: sum the counts, so that every
        # process fits the thresholds of the whole pass (the 1-process ones).
        counts = self.trainer.strategy.reduce(histogram.counts.to(self.device), reduce_op="sum")
        histogram.counts = counts.to(histogram.counts.device)
        return entropy_thresholds(histogram.medians(), self.strategy.pseudo_base_threshold).to(
            self.device
        )

    # ------------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Student logits (B, C, H, W) for images (B, 3, H, W)."""
        return self.student(images)

    def _candidates(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return lookup_candidates(self.candidate_sets, batch["mask"], batch["dataset"])

    def _forwards(self, images: torch.Tensor) -> Forwards:
        """Student and teacher outputs for images (B, 3, H, W) (see :class:`Forwards`).

        The teacher runs under ``torch.inference_mode``: it records no graph and its outputs
        are inference tensors. The losses only read them (softmax, argmax, ``detach``), which
        makes normal tensors, and never modify them in place nor save them for backward, so no
        clone is needed; ``test_training_step_every_strategy`` runs every loss on them.
        """
        s = self.strategy
        if self._shared_head is not None:
            return Forwards(*self._forwards_shared(images))
        teacher_logits = teacher_features = student_features = None
        if s.uses_teacher:
            with torch.inference_mode():
                if s.pod_weight > 0:
                    teacher_logits, teacher_features = segment_with_features(self.teacher, images)
                else:
                    teacher_logits = self.teacher(images)
        if s.pod_weight > 0:
            logits, student_features = segment_with_features(self.student, images)
        else:
            logits = self.student(images)
        return Forwards(logits, teacher_logits, student_features, teacher_features)

    def _forwards_shared(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Student logits (B, C, H, W) and teacher logits (B, K, H, W) from one forward of the
        shared body: the teacher's head reads the input of the student's.

        Equal to two separate forwards (``tests/test_train_speed.py``) because the bodies are
        equal (:meth:`_find_shared_head`).
        """
        logits, head_inputs = forward_to_head(self.student, self._shared_head, images)
        if head_inputs is None:
            warnings.warn(
                f"{type(self.student).__name__} transforms the output of its "
                f"{self._shared_head!r}: the teacher runs its own forward from now on",
                stacklevel=2,
            )
            self._shared_head = None
            with torch.inference_mode():
                return logits, self.teacher(images)
        with torch.inference_mode():
            return logits, self.teacher.get_submodule(self._shared_head)(*head_inputs)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        s = self.strategy
        images = batch["image"]
        candidates = self._candidates(batch)
        informative = lookup_informative(self.informative_values, batch["mask"], batch["dataset"])
        logits, teacher_logits, student_features, teacher_features = self._forwards(images)

        image_factor = None
        label_candidates = candidates  # label-conditioned distillation reads the label's sets
        if s.refine:
            refined = refine_candidates(
                candidates,
                teacher_logits,
                self.teacher_sets,
                s.refine_threshold,
                s.refine_criterion,
            )
            candidates = torch.where(informative[:, None], refined, candidates)
        if s.pseudo_labels:
            candidates, image_factor = pseudo_label_candidates(
                candidates, teacher_logits, self.pseudo_thresholds, self.representatives
            )
            informative = ~candidates.all(dim=1)

        with torch.no_grad():
            probs = logits.softmax(dim=1)
        terms: dict[str, torch.Tensor] = {}
        ce = partial_cross_entropy(
            logits,
            candidates,
            self.class_weights,
            s.focal_gamma,
            reduction="none" if image_factor is not None else "mean",
            informative=informative,
            probs=probs,
        )
        if image_factor is not None:  # PLOP scales each image's loss by its accepted share
            ce = (ce * image_factor[:, None, None]).sum() / informative.sum().clamp_min(1)
        terms["ce"] = ce
        if s.distillation != "none" and teacher_logits is not None:
            terms["kd"] = s.kd_weight * set_distillation(
                logits,
                teacher_logits,
                self.teacher_sets,
                s.temperature,
                label_candidates if s.distillation == "label_conditioned" else None,
                probs=probs,
            )
        if student_features is not None:
            terms["pod"] = s.pod_weight * local_pod_loss(student_features, teacher_features)
        loss = sum(terms.values())
        if not bool(torch.isfinite(loss)):
            bad = [k for k, v in terms.items() if not bool(torch.isfinite(v))]
            if self.on_non_finite == "skip":
                self.skipped_batches += 1
                self.log("train/skipped_batches", self.skipped_batches.float())
                return None
            raise NonFiniteLossError(
                f"non-finite loss at global step {self.global_step}, epoch {self.current_epoch}, "
                f"batch {batch_idx}: term(s) {bad} = "
                f"{ {k: float(v) for k, v in terms.items()} }"
            )
        batch_size = images.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        if self._writes_logs_now():
            for name, value in terms.items():
                self.log(f"train/{name}", value, batch_size=batch_size)
        return loss

    def _writes_logs_now(self) -> bool:
        """Whether the loggers receive this training step's values (every
        ``log_every_n_steps`` steps, as Lightning decides). Each ``self.log`` call costs about
        0.5 ms on the CPU, 5 % of a tiny model's step: the loss terms are logged only when
        they are written (``benchmarks/train_speed.py``)."""
        try:
            every = self.trainer.log_every_n_steps
        except RuntimeError:  # not attached to a Trainer (a step called directly)
            return True
        return every > 0 and (self.global_step + 1) % every == 0

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.val_confusion.update(self(batch["image"]).argmax(dim=1), batch["mask"])

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.test_confusion.update(self(batch["image"]).argmax(dim=1), batch["mask"])

    def _scores(self, confusion: MulticlassConfusionMatrix) -> dict[str, float]:
        scores = segmentation_scores(
            confusion.compute(), self.classes, self._report_new_classes, self._parents
        )
        confusion.reset()
        return scores

    def on_validation_epoch_end(self) -> None:
        scores = self._scores(self.val_confusion)
        for key in ("miou_all", "miou_old", "miou_new", "hiou"):
            if not math.isnan(scores[key]):
                self.log(f"val/{key}", scores[key], prog_bar=key == "miou_all", sync_dist=False)

    def on_test_epoch_end(self) -> None:
        self.test_scores = self._scores(self.test_confusion)
        for key, value in self.test_scores.items():
            if not math.isnan(value):
                self.log(f"test/{key}", value)
