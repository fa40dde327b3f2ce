"""Result tables and plots: ``results.csv``, ``summary.md`` and ``comparison.png``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

KEY_COLUMNS = ["scenario", "strategy", "seed", "replay"]
SCORE_COLUMNS = ["miou_all", "miou_old", "miou_new", "hiou"]


def results_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """Rows -> a frame with the key and score columns first, then per-class IoUs."""
    frame = pd.DataFrame(list(rows))
    per_class = sorted(c for c in frame.columns if c.startswith("iou/"))
    parent = sorted(c for c in frame.columns if c.startswith("parent_iou/") or c == "miou_parent")
    rest = [c for c in frame.columns if c not in KEY_COLUMNS + SCORE_COLUMNS + per_class + parent]
    return frame[KEY_COLUMNS + SCORE_COLUMNS + per_class + parent + rest]


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


def markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def write_summary(frame: pd.DataFrame, path: Path, title: str, notes: Sequence[str] = ()) -> str:
    """Markdown: the comparison table per scenario, then per-class IoU means."""
    parts = [
        f"# {title}",
        "",
        "mIoU in % (mean ± std over seeds), checkpoints selected on val,",
        "",
    ]
    parts.append("scores on the test scenes. hIoU = harmonic mean of old and new mIoU.")
    parts.append("")
    parts += list(notes)
    for scenario, part in frame.groupby("scenario", sort=False):
        has_parent = "miou_parent" in part and part["miou_parent"].notna().any()
        columns = SCORE_COLUMNS + (["miou_parent"] if has_parent else [])
        parts += [f"## {scenario}", "", markdown(summary_table(part, columns)), ""]
        per_class = [c for c in part.columns if c.startswith("iou/") and part[c].notna().any()]
        if per_class:
            means = part.groupby(["strategy", "replay"], sort=False)[per_class].mean() * 100
            means.columns = [c.removeprefix("iou/") for c in per_class]
            parts += ["Per-class IoU (%):", "", markdown(means.round(1).reset_index()), ""]
    text = "\n".join(parts)
    path.write_text(text)
    return text


def plot_comparison(frame: pd.DataFrame, path: Path) -> None:
    """Grouped bars: old / new / all mIoU per strategy, one panel per scenario."""
    scenarios = list(dict.fromkeys(frame["scenario"]))
    fig, axes = plt.subplots(1, len(scenarios), figsize=(6 * len(scenarios), 4), squeeze=False)
    for ax, scenario in zip(axes[0], scenarios, strict=True):
        part = frame[frame["scenario"] == scenario].copy()
        part["label"] = part["strategy"] + part["replay"].map({True: "\n+replay", False: ""})
        means = part.groupby("label", sort=False)[["miou_old", "miou_new", "miou_all"]].mean()
        means.mul(100).plot.bar(ax=ax, rot=0, width=0.8)
        ax.set_title(scenario)
        ax.set_ylabel("mIoU (%)")
        ax.set_xlabel("")
        ax.set_ylim(0, 100)
        ax.legend(["old", "new", "all"], loc="upper left", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
