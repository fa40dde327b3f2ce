"""benchmarks/gpu_full_profile.sh on the CPU with a tiny grid: both phases run, a second call
resumes them, a phase that has no time left is not started, and what finished is packed
(results, no checkpoints)."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

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


def _run(tmp_path: Path, out: str, budget: int) -> subprocess.CompletedProcess:
    """The script from ``tmp_path`` with a relative OUT_DIR (taken from the caller's folder)."""
    env = {
        **os.environ,
        "BUDGET": str(budget),
        "JOBS": "1",
        "DEVICE_TESTS": "0",
        "WORK": str(tmp_path / "work"),
        "EXTRA": TINY,
    }
    return subprocess.run(
        ["bash", str(SCRIPT), out],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _rows(pack_path: Path, phase: str) -> pd.DataFrame:
    with tarfile.open(pack_path) as pack:
        return pd.read_csv(pack.extractfile(f"./{phase}/results.csv"))


@pytest.mark.slow
def test_phases_run_resume_and_are_packed(tmp_path):
    done = _run(tmp_path, "first", budget=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "first"
    phases = (out / "phases.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in phases] == ["base", "siblings"]
    assert all(": exit 0 after" in line for line in phases), phases
    assert "skipped (DEVICE_TESTS=0)" in (out / "device_tests.log").read_text()
    with tarfile.open(out / "full-profile.tgz") as pack:
        names = pack.getnames()
    for phase in ("base", "siblings"):
        rows = _rows(out / "full-profile.tgz", phase)
        assert list(rows.strategy) == ["finetune"] and list(rows.seed) == [0]
        assert f"./{phase}/summary.md" in names
    assert any(name.endswith("metrics.csv") for name in names)
    assert not any(name.endswith((".ckpt", ".pt")) for name in names), names

    # Again on the same WORK: both phases resume, keep the finished run, train nothing.
    done = _run(tmp_path, "second", budget=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for phase in ("base", "siblings"):
        assert "finished before: kept" in (tmp_path / "second" / f"{phase}.log").read_text()
        before, after = (
            _rows(out / "full-profile.tgz", phase),
            _rows(tmp_path / "second" / "full-profile.tgz", phase),
        )
        assert after.hiou.tolist() == before.hiou.tolist()

    # No time left: nothing starts, each phase says so, exit 2, the pack is still written.
    done = _run(tmp_path, "third", budget=0)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (tmp_path / "third" / "phases.txt").read_text().splitlines() == [
        "base: not started (under 30 s of the budget left)",
        "siblings: not started (under 30 s of the budget left)",
    ]
    assert len(_rows(tmp_path / "third" / "full-profile.tgz", "base")) == 1


def test_the_phases_split_the_full_profile():
    """The script's two scenario lists are the full profile's scenarios, each once."""
    profile = yaml.safe_load((ROOT / "experiments/configs/profile/full.yaml").read_text())
    done = subprocess.run(
        ["bash", str(SCRIPT), "--scenarios"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lists = dict(line.split(": ") for line in done.stdout.splitlines())
    base, siblings = lists["base"].split(","), lists["siblings"].split(",")
    assert base and siblings and sorted(base + siblings) == sorted(profile["scenarios"])
    assert all("-siblings" in name for name in siblings), siblings
    assert not any("-siblings" in name for name in base), base
