"""The committed results (``results/``, the rows behind README's tables) are experiments that
``experiments.merge`` reads, run with the settings the profile they name computes today: a
change to the full profile that would make them stale (and refuse to merge with a later seed's
slice) fails here. A committed merge (``sources.yaml``, its folders not committed) is compared
through the grids and settings it records."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from experiments.config import load_config
from experiments.config_diff import differing_keys
from experiments.grid import strategy_runs
from experiments.merge import (
    GRID_KEYS,
    SOURCES,
    load_experiment,
    merge_results,
    ran_record,
    record_of_runs,
    run_settings,
    settings_of_runs,
)
from experiments.outputs import (
    STRATEGIES,
    record_before_replay_defaults,
    strategies_record,
    strategy_differences,
)

RESULTS = Path(__file__).parents[2] / "results"
FOLDERS = sorted(p.parent for p in RESULTS.glob("*/*/config.yaml"))
MERGES = sorted(p.parent for p in RESULTS.glob(f"*/*/{SOURCES}"))
#: Folders with a strategies record (experiments from before it was written have none).
RECORDED = sorted(p.parent for p in RESULTS.glob(f"*/*/{STRATEGIES}"))
#: Strategy reruns (``experiments.merge --rerun``): each replaces its strategies' runs in the
#: other folders of its group, whose settings for those strategies are then older than today's.
RERUNS = [RESULTS / "full-profile" / "jd40"]
#: Folders from before the record whose ``candidate-sets+replay`` runs trained without replay
#: defaults (there were none before 2026-12-07), where today's profile trains that label with
#: them: README's five-seed tables say which rows these are.
FORMER_REPLAY = [RESULTS / "full-profile" / f"seed{s}" for s in
                 ("0", "1", "1-siblings", "2-rest", "2-splits", "3", "4")]  # fmt: skip


STUDIES = Path(__file__).parents[2] / "experiments" / "configs" / "studies"


def study_config(name: str) -> Path | None:
    """The shipped study config named ``name`` (its ``name:`` key), if any."""
    found = [p for p in sorted(STUDIES.glob("*.yaml")) if load_config(p).name == name]
    assert len(found) <= 1, f"studies named {name!r} twice: {found}"
    return found[0] if found else None


def todays_config(saved: dict) -> dict:
    """The resolved config today's profile (and the study of that name, for a study's rows)
    computes for a saved experiment's grid."""
    grid = {k: saved[k] for k in GRID_KEYS if k != "name"}
    return OmegaConf.to_container(load_config(study_config(saved["name"]), grid), resolve=True)


def rerun_strategies(folder: Path) -> set[str]:
    """The strategies (results.csv's names) the reruns of ``folder``'s group replace (none for
    a rerun itself)."""
    if folder in RERUNS:
        return set()
    reruns = [r for r in RERUNS if r.parent == folder.parent]
    return {s for r in reruns for s in load_experiment(r)[1]["strategy"]}


def test_there_are_committed_results():
    assert FOLDERS, f"no experiment folders under {RESULTS}"
    assert set(RERUNS) <= set(FOLDERS), "a rerun named here is not committed"


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_results_match_todays_profile(folder):
    """The settings its runs depend on are today's, but for those of strategies a rerun
    replaces (their runs are merged from the rerun)."""
    saved, results = load_experiment(folder)
    ran = set(results["strategy"]) - rerun_strategies(folder)
    assert differing_keys(run_settings(saved, ran), run_settings(todays_config(saved), ran)) == []
    expected = len(saved["scenarios"]) * len(saved["strategies"]) * len(saved["seeds"])
    assert len(results) == expected
    assert len(merge_results([folder])[1]) == expected


@pytest.mark.parametrize("rerun", RERUNS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_a_group_with_its_reruns_merges_into_todays_profile(rerun):
    """README's merge command for the group (its folders, ``--rerun`` the rerun) holds today's
    settings for every strategy it merged."""
    folders = [f for f in FOLDERS if f.parent == rerun.parent and f not in RERUNS]
    settings, merged, _ = merge_results(folders, [rerun])
    today = run_settings(todays_config(load_experiment(folders[0])[0]), set(merged["strategy"]))
    assert differing_keys(settings, today) == []
    assert len(merged) == sum(len(load_experiment(f)[1]) for f in folders)


@pytest.mark.parametrize("merge", MERGES, ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_merges_match_todays_profile(merge):
    """Each folder a committed merge was made of (``sources.yaml``'s ``grids``) ran with the
    settings today's profile (and its study) computes, for the strategies it ran; the merge
    holds the runs of those grids and no other."""
    sources = yaml.safe_load((merge / SOURCES).read_text())
    assert "grids" in sources, (
        f"{merge / SOURCES} records no grids: merge its folders again with today's "
        "experiments.merge to record them"
    )
    for grid in sources["grids"]:
        today = todays_config(grid)
        ran = set(grid["ran"])
        recorded = settings_of_runs(sources["settings"], today, ran)
        assert differing_keys(recorded, run_settings(today, ran)) == [], grid["folder"]
    results = pd.read_csv(merge / "results.csv")
    assert set(results["strategy"]) == {s for g in sources["grids"] for s in g["ran"]}
    assert set(results["seed"]) <= {s for g in sources["grids"] for s in g["seeds"]}
    assert len(results) == len(results.drop_duplicates(["scenario", "strategy", "seed", "replay"]))


def todays_strategies(config: dict) -> dict[str, dict]:
    """What today's code trains each strategy of ``config`` as (``strategies.yaml``'s form)."""
    return strategies_record(
        strategy_runs(config["strategies"], config.get("strategy_overrides") or {})
    )


def assert_trained_as_today(record: dict[str, dict], config: dict, where: str) -> None:
    today = todays_strategies(todays_config(config))
    assert set(record) <= set(today), where
    assert strategy_differences(record, today, where) == [], (
        f"{where}: a strategy it ran trains differently with today's code (a default changed?): "
        "rerun its strategies, or say in README which rows are from the older code"
    )


@pytest.mark.parametrize("folder", RECORDED, ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_strategies_train_as_with_todays_code(folder):
    """A strategy's settings left to the code's defaults are in ``strategies.yaml``, not the
    config: a default changed since the rows were made fails here."""
    saved, results = load_experiment(folder)
    record = ran_record(folder, results)
    replaced = rerun_strategies(folder)
    record = {label: v for label, v in record.items() if label.partition("+")[0] not in replaced}
    assert_trained_as_today(record, saved, str(folder / STRATEGIES))


@pytest.mark.parametrize("merge", MERGES, ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_merges_train_as_with_todays_code(merge):
    """Each merged folder's strategies record (``grids``' ``trained``; None for a folder from
    before the record) against today's code."""
    sources = yaml.safe_load((merge / SOURCES).read_text())
    for grid in sources["grids"]:
        if grid.get("trained") is not None:
            assert_trained_as_today(grid["trained"], grid, f"{merge / SOURCES}: {grid['folder']}")


def _before_record() -> list:
    """(where, saved grid, its results) of every committed experiment without a strategies
    record: the unrecorded folders and the unrecorded grids of the committed merges (whose
    results are merged: None)."""
    found = []
    for folder in FOLDERS:
        if folder not in RECORDED:
            saved, results = load_experiment(folder)
            where = str(folder.relative_to(RESULTS))
            found.append(pytest.param(where, saved, results, id=where))
    for merge in MERGES:
        for grid in yaml.safe_load((merge / SOURCES).read_text())["grids"]:
            if grid.get("trained") is None:
                where = f"{merge.relative_to(RESULTS)}: {grid['folder']}"
                found.append(pytest.param(where, grid, None, id=where))
    return found


@pytest.mark.parametrize(("where", "saved", "results"), _before_record())
def test_experiments_from_before_the_record_train_as_then(where, saved, results):
    """What today's profile (and study) builds for an experiment from before the record equals
    what the code built then, without replay defaults, but for the folders README names as
    trained with the former ones (``FORMER_REPLAY``): a study that ran the former replay pins
    it, so its command still makes its rows."""
    config = todays_config(saved)
    entries, overrides = config["strategies"], config.get("strategy_overrides") or {}
    today = strategies_record(strategy_runs(entries, overrides))
    then = record_before_replay_defaults(entries, overrides)
    if results is not None:  # the strategies the folder ran (a merged grid ran all of its)
        today = record_of_runs(today, results)
    changed = strategy_differences(then, today, where)
    former = any(where == str(f.relative_to(RESULTS)) for f in FORMER_REPLAY)
    assert bool(changed) == former, (
        f"{where}: {changed[:1] or 'trains as then'}; pin the former replay in its study "
        "(strategy_overrides: {candidate-sets: {contrast: null, self_training: null}}) or "
        "list it in FORMER_REPLAY and say so in README"
    )
