"""Loggers of one run: Lightning's CSV logs always, W&B unless disabled (offline by default:
never waits on the network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig


def make_loggers(
    config: DictConfig, run_dir: Path, name: str, tags: list[str], run_config: dict[str, Any]
) -> list:
    """CSV logger under ``run_dir/logs``, and a W&B run grouped by the experiment's name."""
    from lightning.pytorch.loggers import CSVLogger

    loggers: list = [CSVLogger(run_dir, name="logs")]
    if config.wandb != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(
            WandbLogger(
                project=config.wandb_project,
                name=name,
                group=config.name,
                tags=tags,
                save_dir=str(run_dir),
                mode=config.wandb,
                config=run_config,
            )
        )
    return loggers


def finish(loggers: list) -> None:
    """Close W&B runs so the next run starts its own."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            logger.experiment.finish()
