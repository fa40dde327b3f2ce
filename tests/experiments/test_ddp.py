"""Multi-process training: Lightning DDP on 2 CPU processes (gloo) runs step 1 end to end, its
metrics are synchronised across processes, PLOP's thresholds are fitted on all processes' data,
and it learns like the 1-process run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

SCRIPT = Path(__file__).with_name("ddp_step.py")


def _run(devices: int, out: Path) -> dict[str, float]:
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    process = subprocess.run(
        [sys.executable, str(SCRIPT), str(devices), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads((out / "rank0.json").read_text())


def _single_process_test_scores(state_dict: dict) -> dict[str, float]:
    """The scores of a student evaluated on the whole test set by one process."""
    from incremental.data import build_scenario
    from incremental.data.datamodule import IncrementalDataModule
    from incremental.models import create_model
    from incremental.module import IncrementalSegmenter
    from incremental.strategies import create_strategy
    from incremental.workflow import step_data
    from tests.conftest import tiny_scenario_config

    scenario = build_scenario(tiny_scenario_config("fashion-new-class"))
    strategy = create_strategy("finetune")  # scoring only: no teacher needed
    data = step_data(scenario, strategy)
    sources = data.sources
    student = create_model("tiny-unet", scenario.transition.num_student_classes)
    student.load_state_dict(state_dict)
    module = IncrementalSegmenter(student, data.labels, strategy)
    data = IncrementalDataModule([(s, i) for i, s in enumerate(sources)], scenario.val,
                                 scenario.test, batch_size=4)  # fmt: skip
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    trainer.test(module, datamodule=data, verbose=False)
    return module.test_scores


def _close(a: float, b: float, tol: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    two = _run(2, tmp_path / "two")
    rank1 = json.loads((tmp_path / "two" / "rank1.json").read_text())
    # Synchronised: both processes report the same scores, and they are the whole test set's
    # (each process saw half of it), as one process scoring the same student finds.
    assert two == rank1
    whole = _single_process_test_scores(torch.load(tmp_path / "two" / "student.pt"))
    assert all(_close(two[k], whole[k], 1e-6) for k in whole), (two, whole)
    # Not bit-equal to one process: batch-norm statistics are per process (4 images, not 8)
    # and each process averages its loss over its own pixels. Same schedule, same data.
    one = _run(1, tmp_path / "one")
    assert set(one) == set(two)
    # PLOP's thresholds come from entropy histograms summed over the processes: the same as
    # one process's pass over all the data. (On data this small, half of it often gives the
    # same median bins; tests/test_module.py checks the sum itself.)
    thresholds = [
        torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"][
            "strategy_state.entropy_thresholds"
        ]
        for run in ("one", "two")
    ]
    assert (thresholds[0] >= 0).all()
    torch.testing.assert_close(thresholds[1], thresholds[0])
    assert _close(one["miou_all"], two["miou_all"], 0.05), (one["miou_all"], two["miou_all"])


@pytest.mark.slow
def test_runner_with_ddp_writes_once(tmp_path):
    """Every DDP process replays the experiment; only the main one writes its outputs."""
    import pandas as pd
    import yaml

    fast = {"epochs": 1, "batch_size": 4, "progress_bar": False, "limit_train_batches": 2,
            "accelerator": "cpu", "devices": 2, "strategy": "ddp"}  # fmt: skip
    config = {
        "scenarios": ["fashion-new-class"],
        "strategies": ["finetune", "candidate-sets"],
        "wandb": "disabled",
        "cache_dir": str(tmp_path / "cache"),
        "train_old": fast,
        "train": fast,
        "scenario_overrides": {
            "fashion": {
                "sizes": {"old_train": 12, "new_train": 8, "val": 4, "test": 4, "old_val": 4},
                "image_size": 32,
            }
        },
    }
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    out = tmp_path / "out"
    process = subprocess.run(
        [sys.executable, "-m", "experiments.run", str(path), "--output", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    frame = pd.read_csv(out / "results.csv")
    assert list(frame["strategy"]) == ["finetune", "candidate-sets"]
    assert process.stdout.count("results: ") == 1  # one table, from the main process
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1


def test_multi_device_steps_must_agree(tmp_path, capsys):
    from experiments.run import main

    args = ["--output", str(tmp_path / "o"), "--set", "train.devices=2"]
    assert main(args) == 2
    assert "train_old and train differ in ['devices']" in capsys.readouterr().err
