"""Merge several experiments into one summary: ``python -m experiments.merge OUT EXP [EXP ...]``.

For seeds (or scenarios, or strategies) run as separate experiments: one job per seed on a
cluster, one slice of the full profile per session, the GPU machine's pack next to this
machine's runs. Each EXP is an experiment folder (``config.yaml`` and ``results.csv``, as
``experiments.run`` writes them). The merged folder gets ``results.csv``, ``summary.md`` (with
the paired differences and the oracle check over all the merged seeds), ``comparison.png``
and ``sources.yaml`` (the folders merged and the settings they share).

Only experiments of the same settings merge: every config key but the grid (scenarios,
strategies, seeds) and the flags that do not change a result must be equal, with the same type
(``limit_train_batches`` 1 is one batch, 1.0 all of them), else the error names the key, both
values and both folders; a strategy variant or inline scenario two folders name must be defined
alike. A run (scenario, strategy, replay, seed) found twice is kept once when its scores are
equal (a deterministic rerun; compared exactly, on the score columns both rows have) and is an
error otherwise. Runs of one (scenario, seed) from two folders must have started from the same
old model (results.csv's ``old_model_*`` columns): the summary pairs them by seed. A folder
locked by a live experiment is refused; one with fewer runs than its grid names is
merged, and the summary says so.
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
from experiments.outputs import live_lock, prepare_output, write_results
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
    "wandb_artifacts", "resume", "overwrite", "jobs", "retrain_old",
    "profile",  # a label: the profile's settings are resolved into the config compared
})  # fmt: skip
#: The merge's record of its folders and shared settings (one of ``OUTPUTS``).
SOURCES = "sources.yaml"


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


def merge_results(folders: Sequence[Path]) -> tuple[dict[str, Any], pd.DataFrame, list[str]]:
    """(shared settings, merged results, notes) of several experiment folders.

    Raises:
        ConfigError: no folder; settings that differ (naming the key, both values and both
            folders); a strategy variant or inline scenario defined differently; a run in two
            folders with different scores (naming the run and both); a (scenario, seed) whose
            runs in two folders started from different old models (they would not pair); no
            finished run at all.
    """
    if not folders:
        raise ConfigError("merge: name at least one experiment folder")
    settings: dict[str, Any] | None = None  # the first folder's, which the others must match
    definitions: dict[str, tuple[Path, Any]] = {}  # filled by the first folder naming each
    frames, notes = [], []
    seen: dict[tuple, tuple[Path, pd.Series]] = {}
    teachers: dict[tuple, tuple[Path, tuple]] = {}  # (scenario, seed) -> the old model's scores
    for folder in folders:
        config, results = load_experiment(folder)
        if settings is None:
            settings = shared_settings(config)
        _check_settings(settings, shared_settings(config), folders[0], folder)
        for name, entry in grid_definitions(config).items():
            first_folder, first_entry = definitions.setdefault(name, (folder, entry))
            if differing_keys(first_entry, entry):
                raise ConfigError(
                    f"merge: {name} is {first_entry!r} in {first_folder} and {entry!r} in "
                    f"{folder}; rename one of them"
                )
        expected = (
            len(config.get("scenarios") or [])
            * len(config.get("strategies") or [])
            * len(config.get("seeds") or [])
        )
        if len(results) < expected:
            notes.append(f"{folder}: {len(results)} of the {expected} runs its grid names")
        keep = []
        for index, row in results.iterrows():
            key = tuple(row[c] for c in KEY_COLUMNS)
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
    return settings, results_frame(merged.to_dict("records")), notes


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


def write_merged(out: Path, folders: Sequence[Path], overwrite: bool = False) -> pd.DataFrame:
    """Merge ``folders`` into ``out``: results.csv, summary.md, comparison.png, sources.yaml.
    A folder that holds an experiment is refused unless ``overwrite`` (the previous one is then
    kept in ``out/previous``, as ``experiments.run --overwrite`` does)."""
    target = out.resolve()
    for folder in folders:
        source = folder.resolve()
        if source.is_relative_to(target) or target.is_relative_to(source):
            raise ConfigError(
                f"merge: the output {out} and the folder merged {folder} are one inside the "
                "other (writing there could move or replace what is merged); write elsewhere"
            )
    settings, merged, notes = merge_results(folders)
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
        OmegaConf.to_yaml({"merged": [str(f) for f in folders], **grid, "settings": settings}),
        "the merge's sources",
    )
    header = [
        f"Merged from {len(folders)} experiment(s) ({', '.join(str(f) for f in folders)}; "
        f"{SOURCES} lists them with their shared settings): {len(merged)} runs, "
        f"seeds {grid['seeds']}; trained on {trained_on(merged)}.",
        "",
        *[f"- {note}" for note in notes],
        *([""] if notes else []),
    ]
    write_summary(merged, out / "summary.md", f"Merged experiment {out.name}", header)
    plot_comparison(merged, out / "comparison.png")
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.merge",
        description="Merge experiments run with the same settings (other seeds, scenarios or "
        "strategies) into one results.csv and summary.md, paired by seed.",
    )
    parser.add_argument("output", type=Path, help="folder for the merged results")
    parser.add_argument("experiments", type=Path, nargs="+", help="experiment folders to merge")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT's results")
    args = parser.parse_args(argv)
    try:
        merged = write_merged(args.output, args.experiments, args.overwrite)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(merged)} runs merged: {args.output / 'results.csv'}  "
          f"summary: {args.output / 'summary.md'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
