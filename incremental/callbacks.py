"""Lightning callbacks the LightningModule hands to the Trainer (``configure_callbacks``): the
ones strategies bring (:meth:`Strategy.callbacks`: freezing the old network, fitting PLOP's
entropy thresholds before training) and the logging of the loss terms; and the one the loop
settings bring (:class:`ChannelsLast`, added by :func:`incremental.trainer.make_trainer`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import lightning as L
import torch
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn

from incremental.losses import EntropyHistogram, entropy_thresholds, unlabeled_pixels
from incremental.models import find_classifier


class FreezeOldNetwork(BaseFinetuning):
    """Train only the created classes' classifier rows (the ``freeze`` strategy).

    Before training, every student parameter but the classifier's stops requiring grad, the
    classifier's gradient is masked to the created classes' rows, and the body is put in eval
    mode so that its batch-norm statistics stay the old model's (at every epoch start too:
    Lightning leaves modes as it finds them). Weight decay is turned off: decoupled decay
    would shrink the frozen rows, whose gradient is zero.
    """

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        student: nn.Module = pl_module.student
        classes = pl_module.labels.classes
        created = set(pl_module.labels.transition.created_classes)
        student.requires_grad_(False)
        _, classifier = find_classifier(student, len(classes))
        classifier.requires_grad_(True)
        keep = torch.tensor([c in created for c in classes], dtype=torch.float32)

        def mask_rows(grad: torch.Tensor) -> torch.Tensor:
            shape = (-1,) + (1,) * (grad.dim() - 1)
            return grad * keep.to(grad.device, grad.dtype).view(shape)

        self._handles = [classifier.weight.register_hook(mask_rows)]
        if classifier.bias is not None:
            self._handles.append(classifier.bias.register_hook(mask_rows))
        self._classifier = classifier
        self._keep_frozen_modes(pl_module)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":  # testing a checkpoint needs no freezing (and no second hooks)
            super().setup(trainer, pl_module, stage)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["weight_decay"] = 0.0

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer) -> None:
        self._keep_frozen_modes(pl_module)  # nothing unfreezes; modes are re-asserted

    def _keep_frozen_modes(self, pl_module: L.LightningModule) -> None:
        pl_module.student.eval()
        self._classifier.train(pl_module.training)


Reduce = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def fit_entropy_thresholds(
    teacher: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    candidates: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    num_old_classes: int,
    base_threshold: float,
    reduce_sum: Reduce = lambda counts: counts,
) -> torch.Tensor:
    """PLOP's thresholds: the median normalised teacher entropy per predicted class over the
    unlabeled pixels of one pass through ``batches``, never below ``base_threshold``.

    Args:
        batches: training batches, already on the teacher's device.
        candidates: batch -> its candidate sets (B, C, H, W) bool.
        reduce_sum: sums the (K, bins) histogram counts over processes (identity for one).

    Returns:
        (K,) thresholds.
    """
    histogram = EntropyHistogram(num_old_classes)
    for batch in batches:
        histogram.update(teacher(batch["image"]), unlabeled_pixels(candidates(batch)))
    histogram.counts = reduce_sum(histogram.counts).cpu()
    return entropy_thresholds(histogram.medians(), base_threshold)


class FitEntropyThresholds(L.Callback):
    """Fit PLOP's entropy thresholds into the module's strategy state before training (not
    again when a resumed run brings fitted ones in its checkpoint).

    Args:
        state: the name of the (K,) thresholds tensor in ``pl_module.strategy_state``.
        base_threshold: the thresholds' floor.
    """

    def __init__(self, state: str, base_threshold: float) -> None:
        self.state, self.base_threshold = state, base_threshold

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        thresholds = pl_module.strategy_state[self.state]
        if not bool((thresholds < 0).all()):
            return
        device = pl_module.device
        batches = (
            pl_module.transfer_batch_to_device(b, device, 0) for b in trainer.train_dataloader
        )

        def reduce_sum(counts: torch.Tensor) -> torch.Tensor:
            # Under DDP each process saw its share of the data: every process fits the
            # thresholds of the whole pass (the 1-process ones).
            return trainer.strategy.reduce(counts.to(device), reduce_op="sum")

        fitted = fit_entropy_thresholds(
            pl_module.teacher,
            batches,
            lambda batch: pl_module.lookup(batch["mask"], batch["dataset"])[0],
            thresholds.numel(),
            self.base_threshold,
            reduce_sum,
        )
        thresholds.copy_(fitted.to(thresholds.device))


class ChannelsLast(L.Callback):
    """Put the module's networks in the channels-last memory layout when a stage starts.

    A convolution whose weight is channels-last returns channels-last activations whatever the
    input's layout, so the batches need no conversion. Loading a checkpoint copies values into
    the parameters and keeps their layout; model files are written contiguous.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pl_module.to(memory_format=torch.channels_last)


class LogLossTerms(L.Callback):
    """Log each loss term of a training step (``train/<name>``) at the steps Lightning writes
    logs (every ``log_every_n_steps``): each ``log`` call costs about 0.5 ms on the CPU, 5 % of
    a tiny model's step, so the terms are not logged at the steps whose values Lightning
    would drop (``benchmarks/train_speed.py``). The step returns the detached terms."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not isinstance(outputs, dict) or "terms" not in outputs:
            return
        every = trainer.log_every_n_steps
        # global_step already counts this batch's optimiser step here.
        if every > 0 and (trainer.global_step % every == 0 or trainer.should_stop):
            size = batch["image"].shape[0]
            for name, value in outputs["terms"].items():
                pl_module.log(f"train/{name}", value, batch_size=size)


class LogValidationImages(L.Callback):
    """At each validation, a fixed set of validation images (the first ``count``) with their
    ground truth and the prediction as masks, to the W&B loggers (others take no masks).

    Args:
        count: how many images.
    """

    def __init__(self, count: int) -> None:
        self.count = count

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = [lg for lg in trainer.loggers if type(lg).__name__ == "WandbLogger"]
        if not loggers or not trainer.is_global_zero or trainer.sanity_checking:
            return
        import wandb

        from incremental.constants import IGNORE_INDEX
        from incremental.data.transforms import MEAN, STD

        loader = trainer.val_dataloaders
        batch = next(iter(loader[0] if isinstance(loader, list) else loader))
        images = batch["image"][: self.count].to(pl_module.device)
        with torch.no_grad():
            predicted = pl_module(images).argmax(dim=1).cpu()
        mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
        labels = {i: c for i, c in enumerate(pl_module.classes)}
        labels[len(labels)] = "ignore"
        shown = []
        for image, truth, guess in zip(images.cpu(), batch["mask"], predicted, strict=False):
            pixels = ((image * std + mean).clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
            truth = torch.where(truth == IGNORE_INDEX, len(labels) - 1, truth)
            masks = {
                "ground_truth": {"mask_data": truth.numpy(), "class_labels": labels},
                "prediction": {"mask_data": guess.numpy(), "class_labels": labels},
            }
            shown.append(wandb.Image(pixels, masks=masks))
        for logger in loggers:
            logger.experiment.log({"val/images": shown, "trainer/global_step": trainer.global_step})
