"""benchmarks/gpu_full_profile.sh on the CPU with a tiny grid: both phases run, a phase that
has no time left is not started, and what finished is packed (results, no checkpoints)."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_full_profile.sh"
# One scenario, one strategy, one seed, a few 64x64 scenes, one epoch: the script's plumbing,
# not the profile. `--scenarios` after the script's own wins (argparse keeps the last).
TINY = (
    "--strategies finetune --seeds 0 --scenarios fashion-new-class --set model.name=tiny-unet "
    "--set train.epochs=1 --set train_old.epochs=1 --set train.epoch_size=8 "
    "--set train.batch_size=4 --set train_old.batch_size=4 "
    + " ".join(
        f"--set scenario_overrides.fashion.sizes.{split}={n}"
        for split, n in {"old_train": 8, "new_train": 8, "val": 4, "test": 4, "old_val": 4}.items()
    )
)


def _run(tmp_path: Path, budget: int) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path / f"out-{budget}"
    env = {
        **os.environ,
        "BUDGET": str(budget),
        "JOBS": "1",
        "DEVICE_TESTS": "0",
        "WORK": str(tmp_path / "work"),
        "EXTRA": TINY,
    }
    done = subprocess.run(
        ["bash", str(SCRIPT), str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    return out, done


@pytest.mark.slow
def test_both_phases_run_and_are_packed(tmp_path):
    out, done = _run(tmp_path, budget=600)
    assert done.returncode == 0, done.stdout + done.stderr
    phases = (out / "phases.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in phases] == ["base", "siblings"]
    assert all(": exit 0 after" in line for line in phases), phases
    assert "skipped (DEVICE_TESTS=0)" in (out / "device_tests.log").read_text()
    with tarfile.open(out / "full-profile.tgz") as pack:
        names = pack.getnames()
        for phase in ("base", "siblings"):
            rows = pd.read_csv(pack.extractfile(f"./{phase}/results.csv"))
            assert list(rows.strategy) == ["finetune"] and list(rows.seed) == [0]
            assert f"./{phase}/summary.md" in names
    assert any(name.endswith("metrics.csv") for name in names)
    assert not any(name.endswith((".ckpt", ".pt")) for name in names), names

    # No time left: nothing starts, each phase says so, the pack is still written.
    out, done = _run(tmp_path, budget=0)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "phases.txt").read_text().splitlines() == [
        "base: not started (under 30 s of the budget left)",
        "siblings: not started (under 30 s of the budget left)",
    ]
    with tarfile.open(out / "full-profile.tgz") as pack:  # the earlier call's finished runs
        assert "./base/results.csv" in pack.getnames()
