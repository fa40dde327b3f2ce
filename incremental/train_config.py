"""Loop settings of one training run, checked when made (a bad value is an error naming the
key before anything trains)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    """Loop settings of one training run.

    Attributes:
        epochs: maximum epochs (early stopping may end sooner).
        epoch_size: training samples per epoch (default: the sources' total).
        batch_size, eval_batch_size: loader batch sizes.
        lr, weight_decay, optimizer: ``"adamw"`` or ``"sgd"``; the learning rate decays
            polynomially to 0.
        num_workers: data loader processes.
        accelerator, devices, strategy, num_nodes: Lightning's; ``accelerator="auto"`` (the
            default) is the GPU when there is one, the CPU otherwise (``"gpu"``/``"cuda"``
            where there is none is an error); ``strategy="ddp"`` for several processes.
        precision: Lightning precision; ``"32-true"`` unless asked (mixed precision is opt-in).
            ``"auto"``: ``"bf16-mixed"`` for a CPU run on a CPU with native bfloat16 (AMX or
            AVX512-BF16), ``"32-true"`` otherwise (``incremental.devices.resolve_precision``;
            results record which ran).
        channels_last: keep the networks' weights, and so their activations, in the
            channels-last memory layout (PyTorch's recommendation for convolutional networks;
            on this project's 2-core CPU a small-unet training step took 0.65-0.7x the time);
            it changes only floating-point rounding.
        early_stopping_patience: validation epochs without improvement before stopping; None
            disables early stopping.
        deterministic: ``torch.use_deterministic_algorithms``. ``"warn"`` (the default) uses
            the deterministic kernels wherever they exist and warns where a CUDA op has none
            (``True`` would stop there); on the CPU every op is deterministic either way.
        progress_bar: Lightning's progress bar.
        progress_refresh_rate: redraw it every N batches (a log file of redraws grows less).
        log_images: validation images logged each epoch with ground truth and prediction
            masks, to the loggers that take them (W&B); 0: none.
        on_non_finite: ``"raise"`` or ``"skip"`` a batch whose loss is not finite.
        max_skipped_share: with ``"skip"``, the share of an epoch's batches that may be
            skipped; a run that skips more stops with an error (a diverging run is no result).
        crop_size: random training crop (None: whole images).
        max_image_side: training images whose longer side exceeds it are shrunk to it first
            (aspect kept), so that one huge image cannot blow up a batch; None: never.
        augment: ``"none"``, ``"flip"``, ``"full"`` or ``"paper"`` (MiB's and PLOP's random
            resized crop to ``crop_size`` and flip) training augmentation.
        eval_crop: evaluate on the central ``eval_crop`` square after resizing the shorter side
            to it (the papers' protocol, 512); None: whole images.
        limit_train_batches, limit_val_batches: Lightning's, for smoke runs.
        trainer: any other ``lightning.Trainer`` argument (``accumulate_grad_batches``,
            ``gradient_clip_val``, ``max_steps``, ``log_every_n_steps``...), checked against
            its signature.
    """

    epochs: int = 4
    epoch_size: int | None = None
    batch_size: int = 16
    eval_batch_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    num_workers: int = 0
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    channels_last: bool = True
    early_stopping_patience: int | None = None
    deterministic: Any = "warn"
    progress_bar: bool = True
    progress_refresh_rate: int = 1
    log_images: int = 4
    on_non_finite: str = "raise"
    max_skipped_share: float = 0.05
    crop_size: int | None = None
    max_image_side: int | None = 1024
    augment: str = "full"
    eval_crop: int | None = None
    limit_train_batches: Any = 1.0
    limit_val_batches: Any = 1.0
    trainer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Every value in its range and every choice known; errors name the key and value."""
        from incremental.data.transforms import AUGMENTATIONS
        from incremental.module import NON_FINITE_POLICIES, OPTIMIZERS

        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise ValueError(f"{key}: {getattr(self, key)!r} {what}")

        def at_least(key: str, low: float, optional: bool = False) -> None:
            value = getattr(self, key)
            if optional and value is None:
                return
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            need(number and value >= low, key, f"must be a number >= {low}")

        for key in ("epochs", "batch_size", "num_nodes", "progress_refresh_rate"):
            at_least(key, 1)
        for key in ("epoch_size", "eval_batch_size", "crop_size", "eval_crop", "max_image_side"):
            at_least(key, 1, optional=True)
        at_least("early_stopping_patience", 1, optional=True)
        for key in ("weight_decay", "num_workers", "log_images"):
            at_least(key, 0)
        need(isinstance(self.lr, (int, float)) and self.lr > 0, "lr", "must be > 0")
        need(self.optimizer in OPTIMIZERS, "optimizer", f"is not one of {list(OPTIMIZERS)}")
        need(self.augment in AUGMENTATIONS, "augment", f"is not one of {list(AUGMENTATIONS)}")
        need(
            self.on_non_finite in NON_FINITE_POLICIES,
            "on_non_finite",
            f"is not one of {list(NON_FINITE_POLICIES)}",
        )
        need(0.0 <= self.max_skipped_share < 1.0, "max_skipped_share", "must be in [0, 1)")
        need(self.augment != "paper" or self.crop_size is not None, "augment",
             "needs crop_size (the papers' is 512)")  # fmt: skip
        if str(self.accelerator) in ("gpu", "cuda"):
            import torch

            need(torch.cuda.is_available(), "accelerator", "asked for, but this machine has no "
                 "CUDA device; use 'auto' (the GPU when there is one) or 'cpu'")  # fmt: skip
