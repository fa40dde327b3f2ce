"""summary.md's comparisons: paired differences by seed and the oracle check, on hand-made rows."""

from __future__ import annotations

import pandas as pd
import pytest

from experiments.report import oracle_flags, paired_differences, write_summary


def rows(strategy: str, replay: bool, hious: list[float], bag: list[float]) -> list[dict]:
    return [
        {"scenario": "s", "strategy": strategy, "replay": replay, "seed": seed, "hiou": h,
         "miou_new": h, "miou_old": 0.7, "miou_all": 0.6, "iou/bag": b}
        for seed, (h, b) in enumerate(zip(hious, bag, strict=True))
    ]  # fmt: skip


def test_paired_differences_are_per_seed_with_a_verdict():
    frame = pd.DataFrame(
        rows("candidate-sets", False, [0.50, 0.60, 0.40], [0.5, 0.5, 0.5])
        + rows("plop", False, [0.45, 0.54, 0.36], [0.5, 0.5, 0.5])  # ours +5, +6, +4 points
        + rows("mib", False, [0.40, 0.70, 0.30], [0.5, 0.5, 0.5])  # +10, -10, +10: noise
    )
    paired = paired_differences(frame, ["hiou"]).set_index("vs")
    assert paired.loc["plop", "Δ hiou"] == "+5.0 ± 1.0 (ahead)"
    assert paired.loc["plop", "seeds"] == 3
    # Unpaired means would call this a 0-point tie; by seed it is +3.3 ± 11.5, no verdict.
    assert paired.loc["mib", "Δ hiou"] == "+3.3 ± 11.5"


def test_one_seed_gives_a_difference_without_spread():
    frame = pd.DataFrame(
        rows("candidate-sets", False, [0.50], [0.5]) + rows("plop", False, [0.45], [0.5])
    )
    assert paired_differences(frame, ["hiou"])["Δ hiou"].tolist() == ["+5.0"]


@pytest.mark.parametrize(
    ("oracle_bag", "ours_bag", "flagged"),
    [
        ([0.60], [0.605], False),  # one seed, half a point: noise
        ([0.60], [0.62], True),  # one seed, two points
        ([0.60, 0.70], [0.70, 0.70], False),  # within the oracle's spread (7.1 points)
        ([0.60, 0.62], [0.66, 0.66], True),  # 5 points over a 1.4-point spread
    ],
)
def test_oracle_flag_needs_spread_and_a_point(oracle_bag, ours_bag, flagged):
    n = len(oracle_bag)
    frame = pd.DataFrame(
        rows("joint", True, [0.6] * n, oracle_bag)
        + rows("candidate-sets", False, [0.5] * n, ours_bag)
    )
    flags = oracle_flags(frame)
    assert bool(flags) == flagged
    if flagged:
        assert flags[0].startswith("oracle under-trained: s bag: candidate-sets")


def test_oracle_flag_checks_the_best_oracle_of_each_class():
    """With both oracles, a class is checked against the one with the higher mean there: 66
    beats plain joint's 60 but not the distilled oracle's 66.5; 70 beats both, and the flag
    names the distilled one."""
    oracles = rows("joint", True, [0.6] * 2, [0.60, 0.60]) + rows(
        "joint-distilled", True, [0.6] * 2, [0.665, 0.665]
    )
    beaten_plain = pd.DataFrame(oracles + rows("candidate-sets", False, [0.5] * 2, [0.66] * 2))
    assert oracle_flags(beaten_plain) == []
    assert oracle_flags(beaten_plain, oracles=("joint",))  # against plain joint alone
    beaten_both = pd.DataFrame(oracles + rows("candidate-sets", False, [0.5] * 2, [0.70] * 2))
    assert oracle_flags(beaten_both) == [
        "oracle under-trained: s bag: candidate-sets 70.0 > joint-distilled 66.5 ± 0.0"
    ]
    # A class no oracle scored (not in its test scenes) is not checked, whatever the others.
    unscored = pd.DataFrame(
        rows("joint", True, [0.6], [float("nan")]) + rows("candidate-sets", False, [0.5], [0.7])
    )
    assert oracle_flags(unscored) == []


def test_summary_has_no_nan_with_one_seed(tmp_path):
    frame = pd.DataFrame(
        rows("candidate-sets", False, [0.50], [0.5]) + rows("joint", True, [0.6], [0.6])
    )
    text = write_summary(frame, tmp_path / "summary.md", "t")
    assert "nan" not in text and "No class beats the oracle" in text
