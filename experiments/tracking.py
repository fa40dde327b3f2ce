"""Tracking: Lightning's CSV logs always, W&B unless disabled (offline by default: never waits
on the network).

W&B runs are made for comparing strategies: every run of an experiment is in its group, its
config holds what one groups and filters by (``strategy_name``, ``replay``, ``seed``,
``scenario``, ``model``, ``profile``, the old model's id), its ``job_type`` says what it is
(``old-model``, ``step``, ``summary``), and its summary holds the selected checkpoint's
validation mIoU (the max over epochs) and the test scores of that checkpoint. A last
``summary`` run carries the results table, the comparison plot, summary.md and, unless
``wandb_artifacts: false``, the model files as an artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from incremental.devices import with_resolved_precision

#: W&B's summary of these is the best epoch's (the checkpoint the run keeps), not the last.
SELECTED = {"val/miou_all": "max"}


def make_loggers(
    config: DictConfig,
    run_dir: Path,
    name: str,
    tags: list[str],
    run_config: dict[str, Any],
    job_type: str,
) -> list:
    """CSV logger under ``run_dir/logs``, and a W&B run grouped by the experiment's name.
    ``run_config["train"]``'s ``precision: auto`` is logged as what it resolves to here
    (``bf16-mixed`` or ``32-true``), so that runs group by what they trained at."""
    from lightning.pytorch.loggers import CSVLogger

    loggers: list = [CSVLogger(run_dir, name="logs")]
    if config.wandb != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        logger = WandbLogger(
            project=config.wandb_project,
            name=name,
            group=config.name,
            job_type=job_type,
            tags=tags,
            save_dir=str(run_dir),
            mode=config.wandb,
            config={"profile": config.profile, **run_config, **_resolved_train(run_config)},
        )
        for metric, summary in SELECTED.items():
            logger.experiment.define_metric(metric, summary=summary)
        if config.wandb == "online":
            print(f"  W&B: {logger.experiment.url}", flush=True)
        loggers.append(logger)
    return loggers


def _resolved_train(run_config: dict[str, Any]) -> dict[str, Any]:
    """``{"train": ...}`` with its precision resolved, or nothing when there is no ``train``."""
    train = run_config.get("train")
    return {"train": with_resolved_precision(train)} if train else {}


def finish(loggers: list) -> None:
    """Close W&B runs so the next run starts its own."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            logger.experiment.finish()


def log_summary_run(config: DictConfig, out: Path, frame: Any) -> None:
    """One ``summary`` run for the experiment: results as a table, comparison.png and
    summary.md as files, the model files as an artifact (``wandb_artifacts``)."""
    if config.wandb == "disabled":
        return
    import wandb

    run = wandb.init(
        project=config.wandb_project,
        name=f"{config.name}/summary",
        group=config.name,
        job_type="summary",
        dir=str(out),
        mode=config.wandb,
        config={"profile": config.profile, "experiment": config.name},
    )
    try:
        table = wandb.Table(dataframe=frame.astype(object).where(frame.notna(), None))
        run.log({"results": table})
        if (out / "comparison.png").is_file():
            run.log({"comparison": wandb.Image(str(out / "comparison.png"))})
        for name in ("summary.md", "results.csv", "config.yaml"):
            if (out / name).is_file():
                run.save(str(out / name), base_path=str(out), policy="now")
        if config.wandb_artifacts and (out / "models").is_dir():
            artifact = wandb.Artifact(f"{config.name}-models", type="model")
            artifact.add_dir(str(out / "models"))
            run.log_artifact(artifact)
    finally:
        run.finish()
        # finish() can return before W&B's service has flushed the run file; the offline
        # files must be complete (for ``wandb sync``) when the runner returns.
        wandb.teardown()
