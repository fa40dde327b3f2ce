"""Merge several experiments into one summary: ``python -m experiments.merge OUT EXP [EXP ...]``.

For seeds (or scenarios, or strategies) run as separate experiments: one job per seed on a
cluster, one slice of the full profile per session, the GPU machine's pack next to this
machine's runs. Each EXP is an experiment folder (``config.yaml`` and ``results.csv``, as
``experiments.run`` writes them). The merged folder gets ``results.csv``, ``summary.md`` (with
the paired differences and the oracle check over all the merged seeds), ``comparison.png``
and ``sources.yaml`` (the folders merged, the settings they share, and each folder's grid).

Only experiments of the same settings merge: every config key but the grid (scenarios,
strategies, seeds) and the flags that do not change a result must be equal, with the same type
(``limit_train_batches`` 1 is one batch, 1.0 all of them), else the error names the key, both
values and both folders; a strategy variant or inline scenario two folders name must be defined
alike. A strategy's own settings (``strategy_train.<name>``, ``strategy_overrides.<base>``)
count only in folders holding runs of it: those must agree on them, and a folder that did not
run it may have any (they changed none of its results). A run (scenario, strategy, replay,
seed) found twice is kept once when its scores are equal (a deterministic rerun; compared
exactly, on the score columns both rows have) and is an error otherwise. Runs of one (scenario,
seed) from two folders must have started from the same old model (results.csv's ``old_model_*``
columns): the summary pairs them by seed. A folder locked by a live experiment is refused; one
with fewer runs than its grid names is merged, and the summary says so.

A strategy rerun with settings of its own (the oracle trained longer) merges with ``--rerun
FOLDER`` (one or several, e.g. one per seed): its runs replace that strategy's runs in the
folders merged, and its settings may differ from theirs only in the rerun strategies' own
entries (``strategy_train.<name>``; ``strategy_overrides.<base>`` where every strategy built
on that base is rerun). Every run of a rerun strategy must be replaced, so that no strategy is
reported with two settings; ``sources.yaml`` records the reruns and the settings merged.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from experiments.config import ConfigError, _load_yaml
from experiments.config_diff import comparable_settings, describe_differences, differing_keys
from experiments.outputs import (
    STRATEGIES,
    live_lock,
    prepare_output,
    read_strategies,
    record_before_replay_defaults,
    strategy_differences,
    write_results,
)
from experiments.report import (
    KEY_COLUMNS,
    _label,
    plot_comparison,
    results_frame,
    trained_on,
    write_summary,
)
from incremental.io import write_text

#: Top-level keys that may differ between merged experiments: the grid, where things are
#: written, and the runner's flags.
GRID_AND_FLAGS = frozenset({
    "name", "scenarios", "strategies", "seeds", "output", "cache_dir", "wandb", "wandb_project",
    "wandb_artifacts", "resume", "overwrite", "jobs", "threads", "retrain_old",
    "profile",  # a label: the profile's settings are resolved into the config compared
})  # fmt: skip
#: The merge's record of its folders and shared settings (one of ``OUTPUTS``).
SOURCES = "sources.yaml"
#: The keys of an experiment's grid, which ``sources.yaml`` records for each folder merged
#: (``grids``) so that a merge's settings can be compared with what its profile computes today.
GRID_KEYS = ("name", "profile", "scenarios", "strategies", "seeds", "old_model_seed")
#: Per-strategy settings (``<key>.<strategy>``) a rerun of that strategy may change.
RERUN_SETTINGS = ("strategy_train", "strategy_overrides")


def load_experiment(folder: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """(resolved config, results) of one experiment folder.

    Raises:
        ConfigError: the folder, its config.yaml or its results.csv is missing or unreadable.
    """
    if not folder.is_dir():
        raise ConfigError(f"merge: {folder} is not a folder")
    for name in ("config.yaml", "results.csv"):
        if not (folder / name).is_file():
            raise ConfigError(f"merge: {folder} holds no {name} (not an experiment's output)")
    holder = live_lock(folder)
    if holder:
        raise ConfigError(
            f"merge: {folder} is in use by {holder} (an experiment running there); merge it "
            f"when it has ended, or delete {folder / '.lock'} if none runs"
        )
    config = OmegaConf.to_container(_load_yaml(folder / "config.yaml", "config"), resolve=True)
    try:
        results = pd.read_csv(folder / "results.csv")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ConfigError(f"merge: cannot read {folder / 'results.csv'}: {error}") from error
    missing = [c for c in KEY_COLUMNS if c not in results]
    if missing:
        raise ConfigError(f"merge: {folder / 'results.csv'} has no column(s) {missing}")
    if results[KEY_COLUMNS].isna().any().any():
        raise ConfigError(f"merge: {folder / 'results.csv'} has a row without {KEY_COLUMNS}")
    # One type per key column whatever pandas inferred (a seed read as 1.0 is run 1).
    replay = results["replay"].map(lambda v: str(v).strip().lower())
    if not replay.isin(["true", "false"]).all():
        raise ConfigError(f"merge: {folder / 'results.csv'}: replay must be True or False")
    results = results.assign(seed=results["seed"].astype(int), replay=replay.eq("true"))
    return config, results


def shared_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that must agree: all but the grid, the flags and the display settings."""
    return comparable_settings(config, GRID_AND_FLAGS)


def grid_definitions(config: dict[str, Any]) -> dict[str, Any]:
    """Named strategy variants and inline scenarios by name (``strategy/<name>``,
    ``scenario/<name>``): a name two experiments share must mean the same thing in both."""
    found = {}
    for kind, key in (("strategy", "strategies"), ("scenario", "scenarios")):
        for entry in config.get(key) or []:
            if isinstance(entry, dict) and "name" in entry:
                found[f"{kind}/{entry['name']}"] = entry
    return found


def run_settings(config: dict[str, Any], strategies: set[str]) -> dict[str, Any]:
    """The settings the runs of ``strategies`` (results.csv's names) in an experiment of
    ``config`` depend on: :func:`shared_settings`, with the per-strategy entries
    (``strategy_train``, ``strategy_overrides``) of those strategies only. An entry for a
    strategy it did not run changed none of its results. What :func:`merge_results` returns for
    one folder, and what to compare a saved experiment with today's profile by."""
    settings = shared_settings(config)
    entries = _strategy_entries(settings, strategies, grid_definitions(config))
    return _with_entries(_common_settings(settings), entries)


def settings_of_runs(
    settings: dict[str, Any], config: dict[str, Any], strategies: set[str]
) -> dict[str, Any]:
    """The part of a merge's ``settings`` (``sources.yaml``'s) that the runs of ``strategies``
    in the experiment of ``config`` depend on, laid out as :func:`run_settings` lays them out:
    the common settings and those strategies' own entries. How a committed merge is compared
    with today's profile, one merged experiment (``sources.yaml``'s ``grids``) at a time."""
    keys = _strategy_entries(shared_settings(config), strategies, grid_definitions(config))
    values = {(key, entry): (settings.get(key) or {}).get(entry) for key, entry in keys}
    return _with_entries(_common_settings(settings), values)


def merge_results(
    folders: Sequence[Path], reruns: Sequence[Path] = ()
) -> tuple[dict[str, Any], pd.DataFrame, list[str]]:
    """(shared settings, merged results, notes) of several experiment folders, with the runs
    of ``reruns`` (each a strategy rerun with other settings of its own) replacing theirs.

    Raises:
        ConfigError: no folder; settings that differ (naming the key, both values and both
            folders); a strategy variant or inline scenario defined differently; a run in two
            folders with different scores (naming the run and both); a (scenario, seed) whose
            runs in two folders started from different old models (they would not pair); no
            finished run at all; a rerun that changes other settings than its strategies' own,
            leaves a run of its strategy unreplaced, or replaces a run another rerun replaced.
    """
    if not folders:
        raise ConfigError("merge: name at least one experiment folder")
    common: dict[str, Any] | None = None  # the first folder's, which the others must match
    entries: dict[tuple[str, str], tuple[Path, Any]] = {}  # per-strategy settings, first seen
    definitions: dict[str, tuple[Path, Any]] = {}  # filled by the first folder naming each
    frames, notes = [], []
    seen: dict[tuple, tuple[Path, pd.Series]] = {}
    teachers: dict[tuple, tuple[Path, tuple]] = {}  # (scenario, seed) -> the old model's scores
    # (name, replay) -> (the first folder recording it, its label there, its record)
    trained: dict[tuple[str, bool], tuple[Path, str, dict]] = {}
    for folder in folders:
        config, results = load_experiment(folder)
        settings = shared_settings(config)
        if common is None:
            common = _common_settings(settings)
        _check_settings(common, _common_settings(settings), folders[0], folder)
        _check_definitions(definitions, config, folder)
        ran = set(results["strategy"])
        for (key, entry), value in _strategy_entries(settings, ran, _named(definitions)).items():
            first_folder, first_value = entries.setdefault((key, entry), (folder, value))
            if _entry_differs((key, entry), first_value, value):
                a, b = _entry_tree(key, entry, first_value), _entry_tree(key, entry, value)
                raise ConfigError(
                    f"merge: {folder} ran {_strategies_of(key, entry)} with other settings than "
                    f"{first_folder}: "
                    f"{describe_differences(a, b, differing_keys(a, b), first_folder, folder)}; "
                    "runs of one strategy merge only with the same settings"
                )
        # After the settings: a difference there is named more plainly than by the record.
        _check_trained_alike(trained, trained_record(folder, config, results), folder)
        expected = (
            len(config.get("scenarios") or [])
            * len(config.get("strategies") or [])
            * len(config.get("seeds") or [])
        )
        if len(results) < expected:
            notes.append(f"{folder}: {len(results)} of the {expected} runs its grid names")
        keep = []
        for index, row in results.iterrows():
            key = _run_key(row)
            _check_same_teacher(teachers, row, folder)
            if key not in seen:
                seen[key] = (folder, row)
                keep.append(index)
                continue
            first_folder, first_row = seen[key]
            where = f"twice in {folder}" if first_folder == folder else (
                f"in {first_folder} and in {folder}"
            )  # fmt: skip
            if not _same_scores(first_row, row):
                raise ConfigError(
                    f"merge: the run {_describe(key)} is {where} with different scores; merge "
                    "one of them"
                )
            notes.append(f"{_describe(key)}: {where}, same scores; kept once")
        frames.append(results.loc[keep])
    if not any(len(frame) for frame in frames):
        raise ConfigError(
            f"merge: no finished run in {', '.join(str(f) for f in folders)} (results.csv empty)"
        )
    merged = pd.concat([f for f in frames if len(f)], ignore_index=True)
    if reruns:
        values, merged = _replace_reruns(
            common, entries, merged, reruns, folders[0], definitions, teachers, notes
        )
    else:
        values = {k: value for k, (_, value) in entries.items()}
    return _with_entries(common, values), results_frame(merged.to_dict("records")), notes


def ran_record(folder: Path, results: pd.DataFrame) -> dict[str, dict[str, Any]] | None:
    """The strategies record (``strategies.yaml``) of the strategies ``folder``'s results
    hold runs of, label -> settings; None for a folder from before the record was written."""
    record = read_strategies(folder)
    return None if record is None else record_of_runs(record, results)


def record_of_runs(record: dict[str, dict[str, Any]], results: pd.DataFrame) -> dict[str, Any]:
    """The entries of a strategies record whose strategy ``results`` holds runs of, matched by
    the name and replay each entry records (results.csv's ``strategy`` and ``replay``), not by
    label: ``joint`` replays under its plain name, and a base's ``strategy_overrides`` may turn
    replay on or off whatever the name says."""
    ran = set(zip(results["strategy"], results["replay"].astype(bool), strict=True))
    return {k: v for k, v in record.items() if (v.get("name"), bool(v.get("replay"))) in ran}


def trained_record(
    folder: Path, config: dict[str, Any], results: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """What each strategy ``folder``'s results hold runs of trained as: its strategies record
    (:func:`ran_record`), or for a folder from before the record what its config builds with
    today's code without replay defaults, which the code had none of then. Empty where today's
    code cannot build that config (a setting since removed): such a folder is not checked."""
    record = ran_record(folder, results)
    if record is not None:
        return record
    try:
        record = record_before_replay_defaults(
            config.get("strategies") or [], config.get("strategy_overrides") or {}
        )
    except ValueError:
        return {}
    return record_of_runs(record, results)


def _check_trained_alike(
    trained: dict[tuple[str, bool], tuple[Path, str, dict]],
    record: dict[str, dict] | None,
    folder: Path,
) -> None:
    """Runs of one strategy merge only if every folder trained it alike
    (:func:`trained_record`): equal config settings with a code default changed in between
    would otherwise put two strategies under one name. A strategy is the run results.csv
    names (its recorded name and replay), whatever label each config gave it
    (``candidate-sets+replay``, or ``candidate-sets`` with ``replay: true``). ``trained`` is
    filled here."""
    for label, settings in record.items():
        key = (str(settings.get("name")), bool(settings.get("replay")))
        first_folder, first_label, first = trained.setdefault(key, (folder, label, settings))
        changed = strategy_differences({label: first}, {label: settings}, first_folder, folder)
        if changed:
            named = label if first_label == label else f"{first_label} ({label} in {folder})"
            raise ConfigError(
                f"merge: {named} trained differently in {first_folder} and {folder} (their "
                f"{STRATEGIES}; a folder without one ran before 2026-12-07, when replay had no "
                f"defaults of its own): {changed[0]}; runs of one strategy merge only when "
                "trained alike"
            )


def _common_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with the per-strategy keys (``RERUN_SETTINGS``) blanked, compared apart
    (kept in place so that the merged settings keep their order)."""
    return {k: None if k in RERUN_SETTINGS else v for k, v in settings.items()}


def _named(definitions: dict[str, tuple[Path, Any]]) -> dict[str, Any]:
    """``merge_results``' definitions (name -> (the first folder naming it, entry)) without
    their folders, as :func:`grid_definitions` gives them."""
    return {name: entry for name, (_, entry) in definitions.items()}


def _base(name: str, definitions: dict[str, Any]) -> str:
    """The registered strategy a run's strategy name is built on (a variant's, its own);
    ``definitions`` as :func:`grid_definitions` gives them."""
    entry = definitions.get(f"strategy/{name}")
    return str(entry["strategy"] if entry else name).partition("+")[0]


def _strategy_entries(
    settings: dict[str, Any], strategies: set[str], definitions: dict[str, Any]
) -> dict[tuple[str, str], Any]:
    """The per-strategy settings that act on runs of ``strategies`` (results.csv's names):
    ``(key, entry) -> value`` (None where absent) for ``strategy_train.<name>`` and
    ``strategy_overrides.<base>``. An entry for a strategy a folder did not run changed none of
    its results, so it is not compared."""
    found: dict[tuple[str, str], Any] = {}
    for name in sorted(strategies):
        for key, entry in (
            ("strategy_train", name),
            ("strategy_overrides", _base(name, definitions)),
        ):
            # An empty entry is no entry, as the runner reads it (display settings stripped).
            found[(key, entry)] = (settings.get(key) or {}).get(entry) or None
    return found


def _entry_tree(key: str, entry: str, value: Any) -> dict[str, Any]:
    """One per-strategy setting as a config tree (absent where None), for an error."""
    return {key: {} if value is None else {entry: value}}


def _entry_differs(entry_key: tuple[str, str], a: Any, b: Any) -> bool:
    """Whether two values of one per-strategy setting differ, compared under their key as
    ``differing_keys`` reads a config (under ``strategy_overrides`` a block of nulls is none)."""
    return bool(differing_keys(_entry_tree(*entry_key, a), _entry_tree(*entry_key, b)))


def _strategies_of(key: str, entry: str) -> str:
    return f"the strategies built on {entry!r}" if key == "strategy_overrides" else repr(entry)


def _with_entries(common: dict[str, Any], values: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """The merged settings: ``common`` and the per-strategy settings of the strategies run."""
    settings = {**common}
    settings.update({k: {} for k in RERUN_SETTINGS})
    for (key, entry), value in sorted(values.items()):
        if value is not None:
            settings[key][entry] = value
    return settings


def _check_definitions(
    definitions: dict[str, tuple[Path, Any]], config: dict[str, Any], folder: Path
) -> None:
    """A strategy variant or inline scenario ``folder`` names must be defined as in the first
    folder naming it (``definitions``, filled here), and a strategy name may not be a variant
    in one folder and the registered strategy in another."""
    plain = {str(e).partition("+")[0] for e in config.get("strategies") or [] if isinstance(e, str)}
    for name, entry in grid_definitions(config).items():
        if name.startswith("strategy/") and f"plain-{name}" in definitions:
            first_folder = definitions[f"plain-{name}"][0]
            raise ConfigError(
                f"merge: {name} is the registered strategy in {first_folder} and the variant "
                f"{entry!r} in {folder}; rename the variant"
            )
        first_folder, first_entry = definitions.setdefault(name, (folder, entry))
        if differing_keys(first_entry, entry):
            raise ConfigError(
                f"merge: {name} is {first_entry!r} in {first_folder} and {entry!r} in "
                f"{folder}; rename one of them"
            )
    for name in sorted(plain):
        variant = definitions.get(f"strategy/{name}")
        if variant is not None:
            raise ConfigError(
                f"merge: strategy/{name} is the variant {variant[1]!r} in {variant[0]} and the "
                f"registered strategy in {folder}; rename the variant"
            )
        definitions.setdefault(f"plain-strategy/{name}", (folder, name))


def _replace_reruns(
    common: dict[str, Any],
    entries: dict[tuple[str, str], tuple[Path, Any]],
    merged: pd.DataFrame,
    reruns: Sequence[Path],
    first: Path,
    definitions: dict[str, tuple[Path, Any]],
    teachers: dict[tuple, tuple[Path, tuple]],
    notes: list[str],
) -> tuple[dict[tuple[str, str], Any], pd.DataFrame]:
    """(per-strategy settings, results) with the reruns' runs in place of their strategies'.

    A strategy may be rerun across several folders (one per seed) with equal settings of its
    own; together they must replace every run of it. ``strategy_train.<name>`` may change
    for a rerun strategy; ``strategy_overrides.<base>`` only where every strategy built on that
    base (variants too) is rerun; every other setting must be ``common``. ``entries`` are the
    folders' per-strategy settings (``(key, entry) -> (the first folder that ran it, value)``);
    the result holds their values with the reruns'.
    ``definitions``, ``teachers`` and ``notes`` are ``merge_results``'.
    """
    values = {k: value for k, (_, value) in entries.items()}
    ran_in = {k: folder for k, (folder, _) in entries.items()}  # the first folder that ran it
    loaded = []
    trained: dict[tuple[str, bool], tuple[Path, str, dict]] = {}  # across the reruns alone
    for rerun in reruns:
        config, results = load_experiment(rerun)
        if results.empty:
            raise ConfigError(f"merge: the rerun {rerun} has no finished run (results.csv empty)")
        _check_definitions(definitions, config, rerun)
        # Reruns of one strategy (one per seed) together replace its runs: they must have
        # trained it alike, as merged folders must.
        _check_trained_alike(trained, trained_record(rerun, config, results), rerun)
        loaded.append((rerun, shared_settings(config), results))
    held = list(dict.fromkeys(merged["strategy"]))
    rerun_strategies = {s for _, _, results in loaded for s in results["strategy"]}
    for rerun, _, results in loaded:
        foreign = sorted(set(results["strategy"]) - set(held))
        if foreign:
            raise ConfigError(
                f"merge: the rerun {rerun} holds runs of {foreign}, which the folders merged do "
                "not: a rerun replaces runs; merge that folder as an experiment instead"
            )
    built_on: dict[str, set[str]] = {}
    for name in [*held, *rerun_strategies]:
        built_on.setdefault(_base(name, _named(definitions)), set()).add(name)
    # The bases whose overrides a rerun may change: every strategy built on them is rerun.
    own_bases = {b for b, names in built_on.items() if names <= rerun_strategies}
    chosen: dict[tuple[str, str], tuple[Path, Any]] = {}  # (key, entry) -> (rerun, value)
    keys: dict[tuple, Path] = {}  # run -> the rerun that holds it
    for rerun, rerun_settings, results in loaded:
        strategies = set(results["strategy"])
        changed = differing_keys(common, _common_settings(rerun_settings))
        own = _strategy_entries(rerun_settings, strategies, _named(definitions))
        # Overrides of a base not wholly rerun: the other strategies on it keep them.
        kept = {
            k: value for k, value in own.items()
            if k[0] == "strategy_overrides" and k[1] not in own_bases
        }  # fmt: skip
        before = {k: values.get(k) for k in kept}
        a, b, source = common, _common_settings(rerun_settings), first
        if not changed:  # then an override the folders' runs of that base were run with
            a, b = _with_entries({}, before), _with_entries({}, kept)
            changed = differing_keys(a, b)
            source = next((ran_in[k] for k in kept if _entry_differs(k, before[k], kept[k])), first)
        if changed:
            raise ConfigError(
                f"merge: the rerun {rerun} was run with other settings than {source} beyond "
                f"those its strategies {sorted(strategies)} may change: "
                f"{describe_differences(a, b, changed, source, rerun)}; a rerun may change only "
                "strategy_train.<its strategy> and strategy_overrides.<base> where every "
                "strategy built on that base is rerun"
            )
        for entry_key, value in own.items():
            if entry_key in kept:
                continue
            other, first_value = chosen.setdefault(entry_key, (rerun, value))
            if _entry_differs(entry_key, first_value, value):
                key, entry = entry_key
                raise ConfigError(
                    f"merge: {key}.{entry} is {first_value!r} in the rerun {other} and "
                    f"{value!r} in the rerun {rerun}; its reruns must share its settings"
                )
        for _, row in results.iterrows():
            key = _run_key(row)
            _check_same_teacher(teachers, row, rerun)
            if key in keys:
                where = "twice in" if keys[key] == rerun else f"in {keys[key]} and in"
                raise ConfigError(f"merge: the run {_describe(key)} is {where} the rerun {rerun}")
            keys[key] = rerun
    replaced = merged["strategy"].isin(rerun_strategies)
    missing = [
        _describe(_run_key(row)) for _, row in merged[replaced].iterrows()
        if _run_key(row) not in keys
    ]  # fmt: skip
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ConfigError(
            f"merge: the reruns ({', '.join(str(r) for r, _, _ in loaded)}) have no "
            f"{', '.join(missing[:3])}{more}, which the folders merged hold: that strategy "
            "would be reported with two settings; rerun those runs too, or leave them out"
        )
    combined = {**values, **{k: value for k, (_, value) in chosen.items()}}
    changed = differing_keys(_with_entries({}, values), _with_entries({}, combined))
    notes.append(
        f"reruns {', '.join(str(r) for r, _, _ in loaded)}: {len(keys)} run(s) of "
        f"{', '.join(sorted(rerun_strategies))} replace {int(replaced.sum())} run(s) of the "
        f"folders merged (settings changed: {', '.join(changed) or 'none'})"
    )
    merged = pd.concat(
        [merged[~replaced], *(results for _, _, results in loaded)], ignore_index=True
    )
    # The strategies in their first order (a rerun's rows would otherwise come last).
    order = merged["strategy"].map({s: i for i, s in enumerate(held)})
    merged = merged.iloc[order.argsort(kind="stable")].reset_index(drop=True)
    return combined, merged


def _check_settings(a: dict[str, Any], b: dict[str, Any], first: Path, folder: Path) -> None:
    changed = differing_keys(a, b)
    if changed:
        raise ConfigError(
            f"merge: {folder} was run with other settings than {first}: "
            f"{describe_differences(a, b, changed, first, folder)}; only experiments that "
            "differ in their scenarios, strategies or seeds merge"
        )


#: What identifies the old model a run started from, as results.csv records it.
TEACHER_COLUMNS = ("old_model_seed", "old_model_miou", "old_model_test_miou")


def _check_same_teacher(teachers: dict, row: pd.Series, folder: Path) -> None:
    """Runs of one (scenario, seed) are paired because they share an old model: runs of it
    from two folders (another machine, another cache) must show the same one."""
    teacher = tuple(row.get(c) for c in TEACHER_COLUMNS)
    if all(pd.isna(v) for v in teacher):
        return
    key = (row["scenario"], row["seed"])
    first_folder, first = teachers.setdefault(key, (folder, teacher))
    if first_folder != folder and not all(
        (pd.isna(x) and pd.isna(y)) or x == y for x, y in zip(first, teacher, strict=True)
    ):
        shown = ", ".join(
            f"{c} {x} vs {y}" for c, x, y in zip(TEACHER_COLUMNS, first, teacher, strict=True)
        )
        raise ConfigError(
            f"merge: {row['scenario']} seed {row['seed']}: the runs in {first_folder} and in "
            f"{folder} started from different old models ({shown}), so they do not pair by "
            "seed; merge one of them"
        )


def _run_key(row: pd.Series) -> tuple[Any, ...]:
    """A run's identity: its (scenario, strategy, seed, replay)."""
    return tuple(row[c] for c in KEY_COLUMNS)


def _describe(key: tuple[Any, ...]) -> str:
    scenario, strategy, seed, replay = key
    return f"{scenario} {_label(strategy, replay)} seed {seed}"


def _same_scores(a: pd.Series, b: pd.Series) -> bool:
    """Equal on every score both rows have (IoUs and the summary scores); times may differ."""
    scores = [
        c for c in a.index
        if c in b.index and (c.startswith(("iou/", "miou", "split_", "parent_iou/"))
                             or c in ("hiou", "child_iou", "remainder_iou"))
    ]  # fmt: skip
    return all(
        (pd.isna(a[c]) and pd.isna(b[c])) or (not pd.isna(a[c]) and a[c] == b[c]) for c in scores
    )


def write_merged(
    out: Path, folders: Sequence[Path], overwrite: bool = False, reruns: Sequence[Path] = ()
) -> pd.DataFrame:
    """Merge ``folders`` (and ``reruns``, see :func:`merge_results`) into ``out``: results.csv,
    summary.md, comparison.png, sources.yaml. A folder that holds an experiment is refused
    unless ``overwrite`` (the previous one is then kept in ``out/previous``, as
    ``experiments.run --overwrite`` does)."""
    target = out.resolve()
    for folder in [*folders, *reruns]:
        source = folder.resolve()
        if source.is_relative_to(target) or target.is_relative_to(source):
            raise ConfigError(
                f"merge: the output {out} and the folder merged {folder} are one inside the "
                "other (writing there could move or replace what is merged); write elsewhere"
            )
    settings, merged, notes = merge_results(folders, reruns)
    # Read before anything is written, so that a folder unreadable now leaves ``out`` as it was.
    grids = [_grid_of(folder) for folder in [*folders, *reruns]]
    prepare_output(OmegaConf.create({"resume": False, "overwrite": overwrite}), out)
    write_results(out, merged.to_dict("records"))
    labels = zip(merged["strategy"], merged["replay"], strict=True)
    grid = {
        "scenarios": list(dict.fromkeys(merged["scenario"])),
        "strategies": list(dict.fromkeys(_label(s, r) for s, r in labels)),
        "seeds": sorted({int(s) for s in merged["seed"]}),
    }
    write_text(
        out / SOURCES,
        OmegaConf.to_yaml(
            {
                "merged": [str(f) for f in folders],
                **({"reruns": [str(f) for f in reruns]} if reruns else {}),
                **grid,
                "settings": settings,
                "grids": grids,
            }
        ),
        "the merge's sources",
    )
    header = [
        f"Merged from {len(folders)} experiment(s) ({', '.join(str(f) for f in folders)}"
        + (f"; reruns {', '.join(str(f) for f in reruns)}" if reruns else "")
        + f"; {SOURCES} lists them with their settings): {len(merged)} runs, "
        f"seeds {grid['seeds']}; trained on {trained_on(merged)}.",
        "",
        *[f"- {note}" for note in notes],
        *([""] if notes else []),
    ]
    write_summary(merged, out / "summary.md", f"Merged experiment {out.name}", header)
    plot_comparison(merged, out / "comparison.png")
    return merged


def _grid_of(folder: Path) -> dict[str, Any]:
    """One merged folder's grid (``GRID_KEYS``) and the strategies it ran (results.csv's
    names, ``ran``) with their strategies record (``trained``, :func:`ran_record`): with the
    merge's settings, enough to compare them with today's profile (:func:`settings_of_runs`)
    and today's code once the folders themselves are gone."""
    config, results = load_experiment(folder)
    return {
        "folder": str(folder),
        **{key: config.get(key) for key in GRID_KEYS},
        "ran": sorted(set(results["strategy"])),
        # What each strategy it ran trained as (None: a folder from before the record).
        "trained": ran_record(folder, results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.merge",
        description="Merge experiments run with the same settings (other seeds, scenarios or "
        "strategies) into one results.csv and summary.md, paired by seed.",
    )
    parser.add_argument("output", type=Path, help="folder for the merged results")
    parser.add_argument("experiments", type=Path, nargs="+", help="experiment folders to merge")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT's results")
    parser.add_argument(
        "--rerun", type=Path, action="append", default=[], metavar="FOLDER",
        help="a strategy rerun with settings of its own (strategy_train.<name>, "
        "strategy_overrides.<name>): its runs replace that strategy's runs; repeatable",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        merged = write_merged(args.output, args.experiments, args.overwrite, args.rerun)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(merged)} runs merged: {args.output / 'results.csv'}  "
          f"summary: {args.output / 'summary.md'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
