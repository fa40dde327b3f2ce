"""The committed results (``results/``, the rows behind README's tables) are experiments that
``experiments.merge`` reads, run with the settings the profile they name computes today: a
change to the full profile that would make them stale (and refuse to merge with a later seed's
slice) fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments.config import load_config
from experiments.config_diff import differing_keys
from experiments.merge import load_experiment, merge_results, shared_settings

RESULTS = Path(__file__).parents[2] / "results"
FOLDERS = sorted(p.parent for p in RESULTS.glob("*/*/config.yaml"))


def test_there_are_committed_results():
    assert FOLDERS, f"no experiment folders under {RESULTS}"


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_results_match_todays_profile(folder):
    saved, results = load_experiment(folder)
    grid = {k: saved[k] for k in ("profile", "scenarios", "strategies", "seeds", "old_model_seed")}
    today = OmegaConf.to_container(load_config(None, grid), resolve=True)
    assert differing_keys(shared_settings(saved), shared_settings(today)) == []
    expected = len(saved["scenarios"]) * len(saved["strategies"]) * len(saved["seeds"])
    assert len(results) == expected
    assert len(merge_results([folder])[1]) == expected
