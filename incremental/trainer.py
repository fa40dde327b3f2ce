"""The Lightning Trainer of one training run: its loop settings, its callbacks and loggers,
and the fit-then-test that every step runs (checkpoints selected on validation mIoU, test
scores from the best checkpoint)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger
from torch import nn
from torch.utils.data import DataLoader

from incremental.callbacks import ChannelsLast, LogValidationImages
from incremental.checkpoint_io import CheckpointTag, FollowMovedFolder, SafeCheckpointIO
from incremental.data.core import SampleDataset, SegmentationSource
from incremental.data.datamodule import IncrementalDataModule, pad_collate
from incremental.data.transforms import eval_transform
from incremental.devices import describe_device, resolve_precision
from incremental.module import IncrementalSegmenter
from incremental.train_config import TrainConfig

MONITOR = "val/miou_all"


@dataclass
class StepResult:
    """A trained model and its scores on the test split (fractions in [0, 1]).

    Attributes:
        device: where it trained (``"cpu"``, ``"cuda (NVIDIA H100 80GB HBM3)"``); empty for a
            model that was not trained here.
        precision: the Lightning precision it trained at (``"auto"`` resolved); empty for a
            model that was not trained here.
        metadata: plain data about the model (its id, where it came from).
    """

    model: nn.Module
    scores: dict[str, float]
    best_checkpoint: str | None
    device: str = ""
    precision: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


#: TrainConfig fields that set Trainer arguments: the ``trainer`` mapping may not set these.
TRAINER_FIELDS = {
    "max_epochs": "epochs",
    "accelerator": "accelerator",
    "devices": "devices",
    "strategy": "strategy",
    "num_nodes": "num_nodes",
    "precision": "precision",
    "deterministic": "deterministic",
    "enable_progress_bar": "progress_bar",
    "limit_train_batches": "limit_train_batches",
    "limit_val_batches": "limit_val_batches",
}
#: Trainer arguments the framework owns (where checkpoints and logs go, its callbacks).
TRAINER_OWNED = ("default_root_dir", "logger", "callbacks", "plugins", "enable_checkpointing")
#: The framework's defaults for other Trainer arguments; the ``trainer`` mapping may override.
TRAINER_DEFAULTS = {
    "enable_model_summary": False,
    "log_every_n_steps": 10,
    "num_sanity_val_steps": 0,
}


def check_trainer_arguments(arguments: dict[str, Any], where: str = "train.trainer") -> None:
    """Every key names an argument of ``lightning.Trainer`` that the config does not set
    elsewhere; errors name the key."""
    import inspect

    accepted = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    for key in arguments:
        if key in TRAINER_FIELDS:
            raise ValueError(f"{where}.{key}: set train.{TRAINER_FIELDS[key]} instead")
        if key in TRAINER_OWNED:
            raise ValueError(f"{where}.{key}: set by the framework, not configurable")
        if key not in accepted:
            raise ValueError(
                f"{where}.{key}: not an argument of lightning.Trainer; accepted: "
                f"{sorted(accepted - set(TRAINER_FIELDS) - set(TRAINER_OWNED))}"
            )


def make_trainer(
    config: TrainConfig,
    out_dir: Path,
    loggers: list[Logger] | None = None,
    checkpoint_tag: str | None = None,
) -> L.Trainer:
    """A Trainer that keeps the best checkpoint on validation mIoU and the last one (tagged
    with ``checkpoint_tag`` when given); any other Trainer argument comes from
    ``config.trainer``."""
    check_trainer_arguments(config.trainer)
    callbacks: list[L.Callback] = [
        ModelCheckpoint(
            dirpath=out_dir / "checkpoints",
            filename="best",
            monitor=MONITOR,
            mode="max",
            save_last=True,
        ),
        FollowMovedFolder(),  # a resume in a moved output folder keeps its best epoch
    ]
    if checkpoint_tag is not None:
        callbacks.append(CheckpointTag(checkpoint_tag))
    if config.early_stopping_patience is not None:
        callbacks.append(
            EarlyStopping(MONITOR, mode="max", patience=config.early_stopping_patience)
        )
    if config.channels_last:
        callbacks.append(ChannelsLast())
    if config.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=config.progress_refresh_rate))
    if config.log_images > 0 and any(type(lg).__name__ == "WandbLogger" for lg in loggers or []):
        callbacks.append(LogValidationImages(config.log_images))
    return L.Trainer(
        default_root_dir=out_dir,
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        num_nodes=config.num_nodes,
        precision=resolve_precision(config.precision, config.accelerator),
        deterministic=config.deterministic,
        logger=loggers if loggers else [CSVLogger(out_dir, name="logs")],
        callbacks=callbacks,
        # Atomic checkpoint writes; weights_only loads (resume, testing the best checkpoint).
        plugins=[SafeCheckpointIO()],
        enable_progress_bar=config.progress_bar,
        limit_train_batches=config.limit_train_batches,
        limit_val_batches=config.limit_val_batches,
        **{**TRAINER_DEFAULTS, **config.trainer},
    )


def fit_and_test(
    module: IncrementalSegmenter,
    datamodule: IncrementalDataModule,
    config: TrainConfig,
    out_dir: Path,
    loggers: list[Logger] | None,
    resume_from: str | None = None,
    checkpoint_tag: str | None = None,
) -> StepResult:
    """Fit (resuming from ``resume_from`` when given), then test the best validation
    checkpoint; returns the student, its test scores, the checkpoint and the device.
    ``checkpoint_tag`` is written into the checkpoints (:class:`CheckpointTag`)."""
    trainer = make_trainer(config, out_dir, loggers, checkpoint_tag)
    with warnings.catch_warnings():
        # Lightning suggests workers on every CPU run; num_workers is the user's choice.
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*is smaller than the logging interval.*")
        # Epoch metrics come from confusion matrices that torchmetrics syncs across processes.
        warnings.filterwarnings("ignore", ".*when logging on epoch level in distributed.*")
        # The frozen teacher is in eval mode on purpose (IncrementalSegmenter.train keeps it).
        warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode at the start of training.*")
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
        skipped = int(module.skipped_batches)  # the whole run's (testing loads the best epoch)
        best = trainer.checkpoint_callback.best_model_path or None
        trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)
    device = describe_device(trainer.strategy.root_device)
    scores = {**module.test_scores, "skipped_batches": skipped}
    return StepResult(module.student, scores, best, device, str(trainer.precision))


def evaluate(
    module: IncrementalSegmenter, source: SegmentationSource, config: TrainConfig
) -> dict[str, float]:
    """The module's test scores on ``source`` (mask value = class index), one process."""
    loader = DataLoader(
        SampleDataset(source, -1, eval_transform(config.eval_crop)),
        batch_size=config.eval_batch_size or config.batch_size,
        collate_fn=pad_collate,
    )
    trainer = L.Trainer(
        accelerator=config.accelerator,
        devices=1,
        precision=resolve_precision(config.precision, config.accelerator),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ChannelsLast()] if config.channels_last else [],
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.test(module, dataloaders=loader, verbose=False)
    return dict(module.test_scores)
