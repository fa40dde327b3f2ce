"""Merge several experiments into one summary: ``python -m experiments.merge OUT EXP [EXP ...]``.

For seeds (or scenarios, or strategies) run as separate experiments: one job per seed on a
cluster, one slice of the full profile per session, the GPU machine's pack next to this
machine's runs. Each EXP is an experiment folder (``config.yaml`` and ``results.csv``, as
``experiments.run`` writes them). The merged folder gets ``results.csv``, ``summary.md`` (with
the paired differences and the oracle check over all the merged seeds), ``comparison.png``
and ``sources.yaml`` (the folders merged and the settings they share).

Only experiments of the same settings merge: every config key but the grid (scenarios,
strategies, seeds) and the flags that do not change a result must be equal, else the error
names the key and both folders. A run (scenario, strategy, replay, seed) found in two folders
is kept once when its scores are equal (a deterministic rerun) and is an error otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from experiments.config import ConfigError
from experiments.outputs import prepare_output, write_results
from experiments.report import KEY_COLUMNS, plot_comparison, results_frame, write_summary
from incremental.io import write_text

#: Top-level keys that may differ between merged experiments: the grid, where things are
#: written, and the runner's flags.
GRID_AND_FLAGS = frozenset({
    "name", "scenarios", "strategies", "seeds", "output", "cache_dir", "wandb", "wandb_project",
    "wandb_artifacts", "resume", "overwrite", "jobs", "retrain_old",
})  # fmt: skip
#: Loop settings (in ``train``, ``train_old`` and each ``strategy_train`` entry) that change
#: what is printed, not what is trained.
DISPLAY_SETTINGS = frozenset({"progress_bar", "progress_refresh_rate"})
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
    config = OmegaConf.to_container(OmegaConf.load(folder / "config.yaml"), resolve=True)
    if not isinstance(config, dict):
        raise ConfigError(f"merge: {folder / 'config.yaml'} is not a mapping")
    try:
        results = pd.read_csv(folder / "results.csv")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ConfigError(f"merge: cannot read {folder / 'results.csv'}: {error}") from error
    missing = [c for c in KEY_COLUMNS if c not in results]
    if missing:
        raise ConfigError(f"merge: {folder / 'results.csv'} has no column(s) {missing}")
    return config, results


def shared_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that must agree: all but the grid, the flags and the display settings."""

    def loop(settings: Any) -> Any:
        if not isinstance(settings, dict):
            return settings
        return {k: v for k, v in settings.items() if k not in DISPLAY_SETTINGS}

    shared = {k: v for k, v in config.items() if k not in GRID_AND_FLAGS}
    for key in ("train", "train_old"):
        if key in shared:
            shared[key] = loop(shared[key])
    if isinstance(shared.get("strategy_train"), dict):
        shared["strategy_train"] = {k: loop(v) for k, v in shared["strategy_train"].items()}
    return shared


def differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys at which two plain config trees differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in differing_keys(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def merge_results(folders: Sequence[Path]) -> tuple[dict[str, Any], pd.DataFrame, list[str]]:
    """(shared settings, merged results, notes) of several experiment folders.

    Raises:
        ConfigError: fewer than one folder; settings that differ (naming the key and the two
            folders); a run in two folders with different scores (naming the run and both).
    """
    if not folders:
        raise ConfigError("merge: name at least one experiment folder")
    first_config, _ = load_experiment(folders[0])
    settings = shared_settings(first_config)
    frames, seen, notes = [], {}, []
    for folder in folders:
        config, results = load_experiment(folder)
        changed = differing_keys(settings, shared_settings(config))
        if changed:
            shown = ", ".join(
                f"{key} ({_at(settings, key)!r} in {folders[0]}, "
                f"{_at(shared_settings(config), key)!r} in {folder})"
                for key in changed[:5]
            )
            raise ConfigError(
                f"merge: {folder} was run with other settings than {folders[0]}: {shown}; "
                "only experiments that differ in their scenarios, strategies or seeds merge"
            )
        keep = []
        for index, row in results.iterrows():
            key = tuple(row[c] for c in KEY_COLUMNS)
            if key not in seen:
                seen[key] = (folder, row)
                keep.append(index)
                continue
            first_folder, first_row = seen[key]
            if not _same_scores(first_row, row):
                raise ConfigError(
                    f"merge: the run {_describe(key)} is in {first_folder} and in {folder} with "
                    "different scores; merge one of them, or rename an output"
                )
            notes.append(
                f"{_describe(key)}: in {first_folder} and {folder}, same scores; kept once"
            )
        frames.append(results.loc[keep])
    merged = results_frame(pd.concat(frames, ignore_index=True).to_dict("records"))
    return settings, merged, notes


def _at(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _describe(key: tuple[Any, ...]) -> str:
    scenario, strategy, seed, replay = key
    return f"{scenario} {strategy}{'+replay' if bool(replay) else ''} seed {seed}"


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
    resolved = [folder.resolve() for folder in folders]
    if out.resolve() in resolved:
        raise ConfigError(f"merge: the output {out} is one of the folders merged; write elsewhere")
    settings, merged, notes = merge_results(folders)
    prepare_output(OmegaConf.create({"resume": False, "overwrite": overwrite}), out)
    write_results(out, merged.to_dict("records"))
    labels = zip(merged["strategy"], merged["replay"], strict=True)
    grid = {
        "scenarios": list(dict.fromkeys(merged["scenario"])),
        "strategies": list(dict.fromkeys(f"{s}+replay" if bool(r) else s for s, r in labels)),
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
        f"seeds {grid['seeds']}.",
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
