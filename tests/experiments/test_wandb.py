"""W&B, offline, read back from the run files: what a dashboard needs to compare strategies."""

from __future__ import annotations

import yaml

from experiments.run import main
from incremental.devices import resolve_precision
from tests.experiments.wandb_records import run_summary

FAST = {"epochs": 2, "batch_size": 4, "progress_bar": False, "limit_train_batches": 2}


def test_offline_runs_hold_what_a_dashboard_groups_by(tmp_path):
    config = {
        "name": "wb",
        "scenarios": ["fashion-split"],
        "strategies": ["candidate-sets"],
        "wandb": "offline",
        "jobs": 1,
        "cache_dir": str(tmp_path / "cache"),
        "train_old": {**FAST, "epochs": 1, "log_images": 0},
        "train": {**FAST, "log_images": 2, "precision": "auto"},
        "scenario_overrides": {"fashion": {
            "sizes": {"old_train": 16, "new_train": 8, "val": 4, "test": 4, "old_val": 4},
            "image_size": 32, "items_per_scene": [1, 2]}},
    }  # fmt: skip
    path = tmp_path / "wb.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert main([str(path), "--output", str(out)]) == 0
    (step_file,) = (out / "runs" / "fashion-split" / "candidate-sets").rglob("run-*.wandb")
    (old_file,) = (out / "runs" / "fashion-split" / "old-model").rglob("run-*.wandb")
    (summary_file,) = (out / "wandb").rglob("run-*.wandb")

    step = run_summary(step_file)
    assert step["group"] == "wb" and step["job_type"] == "step"
    for key in ("strategy_name", "seed", "replay", "scenario", "model", "profile", "old_model"):
        assert key in step["config"], key
    assert step["config"]["strategy_name"] == "candidate-sets" and step["config"]["seed"] == 0
    assert step["config"]["strategy"]["terms"][0]["type"] == "PartialCE"
    # What `auto` resolved to on this machine, not "auto" (the old model: its own setting).
    assert step["config"]["train"]["precision"] == resolve_precision("auto", "auto") != "auto"
    assert run_summary(old_file)["config"]["train"]["precision"] == "32-true"
    # Per-class validation IoU (a class absent from these 4 tiny scenes and never predicted is
    # NaN, and not logged) and the parent-level scores.
    assert {"val/iou/background", "val/iou/footwear_other", "val/miou_parent"} <= step["history"]
    assert "val/images/_type" in step["history"]  # prediction and ground-truth masks
    # The summary keeps the selected (best) epoch's validation mIoU, and that model's test.
    assert set(step["summary"]["val/miou_all"]) == {"max"}
    assert "test/miou_all" in step["summary"] and "test/miou_parent" in step["summary"]
    assert run_summary(old_file)["job_type"] == "old-model"

    summary = run_summary(summary_file)
    assert summary["job_type"] == "summary" and summary["group"] == "wb"
    assert {"results/_type", "comparison/_type"} <= summary["history"]
    assert any(f.endswith("summary.md") for f in summary["files"])
    assert "wb-models" in summary["artifacts"]  # (the table is an artifact too)
