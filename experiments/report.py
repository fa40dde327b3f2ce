"""Result tables and plots: ``results.csv``, ``summary.md`` and ``comparison.png``.

Besides mean ± std over seeds, the summary compares candidate sets with every other strategy
**paired by seed** (strategies of one seed share the old model and the data), and flags any class
on which a method beats the oracle by more than the oracle's spread over seeds (and at least one
point): an oracle that is beaten is under-trained, not a bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

from incremental.io import write_text

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

KEY_COLUMNS = ["scenario", "strategy", "seed", "replay"]
SCORE_COLUMNS = ["miou_all", "miou_old", "miou_new", "hiou"]
#: Scores of a split (children and remainder): they punish a collapse either way.
SPLIT_COLUMNS = ["child_iou", "remainder_iou", "split_hiou", "split_bacc"]
#: The strategy the others are compared with, seed by seed.
OURS = "candidate-sets"
#: The oracles: full labels, with and without the old model's distillation.
ORACLES = ("joint", "joint-distilled")


def results_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """Rows -> a frame with the key and score columns first, then per-class IoUs."""
    frame = pd.DataFrame(list(rows))
    per_class = sorted(c for c in frame.columns if c.startswith("iou/"))
    split = [c for c in frame.columns if c in SPLIT_COLUMNS or c.startswith("split_")]
    parent = sorted(c for c in frame.columns if c.startswith("parent_iou/") or c == "miou_parent")
    first = KEY_COLUMNS + SCORE_COLUMNS + split + per_class + parent
    rest = [c for c in frame.columns if c not in first]
    return frame[first + rest]


def _label(strategy: str, replay: bool) -> str:
    return f"{strategy}+replay" if replay else strategy


def summary_table(frame: pd.DataFrame, columns: Sequence[str] = SCORE_COLUMNS) -> pd.DataFrame:
    """Mean ± std over seeds (in %) per scenario and strategy (with replay flag)."""
    groups = frame.groupby(["scenario", "strategy", "replay"], sort=False)
    out = {}
    for column in columns:
        if column not in frame:
            continue
        mean = groups[column].mean() * 100
        std = groups[column].std(ddof=1).fillna(0.0) * 100
        counts = groups[column].count()
        out[column] = [
            "–" if n == 0 else f"{m:.1f} ± {s:.1f}" if n > 1 else f"{m:.1f}"
            for m, s, n in zip(mean, std, counts, strict=True)
        ]
    table = pd.DataFrame(out, index=groups.size().index).reset_index()
    table.insert(3, "seeds", groups.size().values)
    return table


def paired_differences(
    frame: pd.DataFrame, metrics: Sequence[str], ours: str = OURS
) -> pd.DataFrame:
    """Candidate sets (without and with replay) minus every other strategy, seed by seed.

    For each scenario, each of our two runs and each other (strategy, replay) sharing seeds
    with it: per metric the mean and std (ddof 1) of the per-seed differences in points, and
    whether ours is **ahead** (mean difference above its std, with at least 2 seeds) or behind.
    """
    rows = []
    for scenario, part in frame.groupby("scenario", sort=False):
        for replay in (False, True):
            mine = part[(part["strategy"] == ours) & (part["replay"] == replay)]
            if mine.empty:
                continue
            mine = mine.set_index("seed")
            others = part[~((part["strategy"] == ours) & (part["replay"] == replay))]
            for (strategy, other_replay), theirs in others.groupby(
                ["strategy", "replay"], sort=False
            ):
                theirs = theirs.set_index("seed")
                seeds = mine.index.intersection(theirs.index)
                if not len(seeds):
                    continue
                row = {
                    "scenario": scenario,
                    "ours": _label(ours, replay),
                    "vs": _label(strategy, other_replay),
                    "seeds": len(seeds),
                }
                for metric in metrics:
                    if metric not in frame or mine[metric].isna().all():
                        continue
                    diff = (mine.loc[seeds, metric] - theirs.loc[seeds, metric]) * 100
                    mean = diff.mean()
                    if len(diff) == 1:  # one seed: a difference, no spread, no verdict
                        row[f"Δ {metric}"] = f"{mean:+.1f}"
                        continue
                    std = diff.std(ddof=1)
                    verdict = ""
                    if abs(mean) > std:
                        verdict = " (ahead)" if mean > 0 else " (behind)"
                    row[f"Δ {metric}"] = f"{mean:+.1f} ± {std:.1f}{verdict}"
                rows.append(row)
    return pd.DataFrame(rows)


#: The least margin (IoU, 0-1) by which a method must beat the oracle on a class to flag it:
#: with one seed the oracle has no spread, and a tenth of a point on 300 test scenes is noise.
ORACLE_MIN_MARGIN = 0.01


def oracle_flags(frame: pd.DataFrame, oracles: Sequence[str] = ORACLES) -> list[str]:
    """Classes on which a strategy's mean IoU beats the oracle's mean by more than the
    oracle's std over seeds, and by at least :data:`ORACLE_MIN_MARGIN` (one point): the oracle
    is under-trained there. With several oracles in a scenario (``joint`` and
    ``joint-distilled``), each class is checked against the one with the highest mean IoU on
    it: a class is flagged only when a method beats every full-label run."""
    flags = []
    for scenario, part in frame.groupby("scenario", sort=False):
        is_oracle = part["strategy"].isin(list(oracles))
        if not is_oracle.any():
            continue
        for column in [c for c in part.columns if c.startswith("iou/") and part[c].notna().any()]:
            by_oracle = part[is_oracle].groupby(["strategy", "replay"], sort=False)[column]
            stats = by_oracle.agg(["mean", "std", "size"]).dropna(subset=["mean"])
            if stats.empty:  # no oracle scored the class (absent from its test scenes)
                continue
            best = stats["mean"].idxmax()
            bound, spread, runs = stats.loc[best, ["mean", "std", "size"]]
            spread = spread if runs > 1 else 0.0
            means = part[~is_oracle].groupby(["strategy", "replay"])[column].mean()
            for (strategy, replay), value in means.items():
                if value > bound + max(spread, ORACLE_MIN_MARGIN):
                    flags.append(
                        f"oracle under-trained: {scenario} {column.removeprefix('iou/')}: "
                        f"{_label(strategy, replay)} {100 * value:.1f} > {best[0]} "
                        f"{100 * bound:.1f} ± {100 * spread:.1f}"
                    )
    return flags


def markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def scenario_columns(part: pd.DataFrame) -> list[str]:
    """The summary's score columns for one scenario: the split scores for a split."""
    columns = list(SCORE_COLUMNS)
    if "split_hiou" in part and part["split_hiou"].notna().any():
        columns += SPLIT_COLUMNS + ["miou_parent"]
    return columns


def write_summary(frame: pd.DataFrame, path: Path, title: str, notes: Sequence[str] = ()) -> str:
    """Markdown: per scenario the comparison table, the paired differences against candidate
    sets, per-class IoU means; the oracle flags last."""
    parts = [
        f"# {title}",
        "",
        "Scores in % (mean ± std over seeds), checkpoints selected on val, scores on the test",
        "scenes. hIoU = harmonic mean of old and new mIoU. For splits: child_iou = the",
        "children's IoU, remainder_iou = the remainder's, split_hiou = harmonic mean of the",
        "two, split_bacc = balanced accuracy among the split's classes on the pixels of the",
        "parent (50 = no split).",
        "",
        *notes,
    ]
    if "skipped_batches" in frame and (frame["skipped_batches"].fillna(0) > 0).any():
        skipped = frame[frame["skipped_batches"].fillna(0) > 0]
        parts += ["Runs that skipped batches for a non-finite loss (train.on_non_finite=skip):", ""]
        parts += [
            f"- {r.scenario} {_label(r.strategy, r.replay)} seed {r.seed}: "
            f"{int(r.skipped_batches)} batch(es)"
            for r in skipped.itertuples()
        ]
        parts.append("")
    for scenario, part in frame.groupby("scenario", sort=False):
        columns = scenario_columns(part)
        parts += [f"## {scenario}", "", markdown(summary_table(part, columns)), ""]
        paired = paired_differences(part, ["hiou", "miou_new", *columns[len(SCORE_COLUMNS) :]])
        if not paired.empty:
            parts += [
                "Paired by seed, candidate sets minus each other strategy (points; with several",
                "seeds mean ± std of the per-seed differences, ahead/behind where the mean",
                "exceeds the std; with one seed the difference alone):",
                "",
                markdown(paired.drop(columns=["scenario"])),
                "",
            ]
        per_class = [c for c in part.columns if c.startswith("iou/") and part[c].notna().any()]
        if per_class:
            means = part.groupby(["strategy", "replay"], sort=False)[per_class].mean() * 100
            means.columns = [c.removeprefix("iou/") for c in per_class]
            parts += ["Per-class IoU (%):", "", markdown(means.round(1).reset_index()), ""]
    flags = oracle_flags(frame)
    parts += ["## Oracle check", ""]
    parts += (
        [f"- {flag}" for flag in flags]
        if flags
        else ["No class beats the oracle by more than its spread over seeds (and one point)."]
    )
    text = "\n".join(parts) + "\n"
    write_text(path, text, "the summary")
    return text


def trained_on(frame: Any) -> str:
    """``"cpu at bf16-mixed"``: the devices and precisions of the results' rows (a row written
    before results recorded its precision says so; "n/a" when none recorded a device)."""

    def text(value: Any) -> str:
        return value if isinstance(value, str) else ""

    found = set()
    for row in frame.to_dict("records"):
        device, precision = text(row.get("device")), text(row.get("precision"))
        if device:
            found.add(f"{device} at {precision or 'a precision not recorded'}")
    return ", ".join(sorted(found)) or "n/a"


def plot_comparison(frame: pd.DataFrame, path: Path) -> None:
    """Grouped bars: old / new / all mIoU per strategy (error bars: std over seeds), one panel
    per scenario."""
    scenarios = list(dict.fromkeys(frame["scenario"]))
    fig, axes = plt.subplots(1, len(scenarios), figsize=(6 * len(scenarios), 4), squeeze=False)
    for ax, scenario in zip(axes[0], scenarios, strict=True):
        part = frame[frame["scenario"] == scenario].copy()
        part["label"] = part["strategy"] + part["replay"].map({True: "\n+replay", False: ""})
        grouped = part.groupby("label", sort=False)[["miou_old", "miou_new", "miou_all"]]
        means, stds = grouped.mean() * 100, grouped.std(ddof=1).fillna(0.0) * 100
        means.plot.bar(ax=ax, rot=0, width=0.8, yerr=stds, capsize=2)
        ax.set_title(scenario)
        ax.set_ylabel("mIoU (%)")
        ax.set_xlabel("")
        ax.set_ylim(0, 100)
        ax.legend(["old", "new", "all"], loc="upper left", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
