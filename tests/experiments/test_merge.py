"""experiments.merge: experiments of the same settings merge into one summary, paired by seed;
anything else is refused with the key, run or file named."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from experiments.config import ConfigError
from experiments.merge import main, merge_results, write_merged
from experiments.run import main as run_main
from tests.experiments.test_run import TINY

SETTINGS = {
    "name": "e",
    "profile": "quick",
    "old_model_seed": None,
    "train": {"epochs": 6, "lr": 0.005, "progress_bar": False},
    "strategy_train": {"joint": {"epochs": 20, "progress_bar": False}},
}


def experiment(folder, seeds, hious, strategies=("candidate-sets", "plop"), **changes):
    """A hand-made experiment folder: config.yaml and results.csv (one scenario)."""
    folder.mkdir(parents=True)
    config = {**SETTINGS, "seeds": list(seeds), "strategies": list(strategies), **changes}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [
        {"scenario": "s", "strategy": strategy, "seed": seed, "replay": False, "miou_all": 0.6,
         "miou_old": 0.7, "miou_new": h, "hiou": h, "iou/bag": h, "train_seconds": 10 + seed}
        for strategy, per_seed in zip(strategies, hious, strict=True)
        for seed, h in zip(seeds, per_seed, strict=True)
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    return folder


def test_seeds_run_apart_merge_into_one_paired_summary(tmp_path):
    a = experiment(tmp_path / "seed0", [0], [[0.50], [0.45]])
    b = experiment(tmp_path / "seed12", [1, 2], [[0.60, 0.40], [0.54, 0.36]], jobs=2)
    merged = write_merged(tmp_path / "merged", [a, b])
    assert len(merged) == 6 and sorted(set(merged["seed"])) == [0, 1, 2]
    summary = (tmp_path / "merged" / "summary.md").read_text()
    # Paired over the three seeds together: +5, +6, +4 points.
    assert "| candidate-sets | plop | 3 | +5.0 ± 1.0 (ahead) |" in summary
    assert str(a) in summary and str(b) in summary
    sources = yaml.safe_load((tmp_path / "merged" / "sources.yaml").read_text())
    assert sources["seeds"] == [0, 1, 2] and sources["merged"] == [str(a), str(b)]
    assert sources["settings"]["train"] == {"epochs": 6, "lr": 0.005}
    assert len(pd.read_csv(tmp_path / "merged" / "results.csv")) == 6
    assert (tmp_path / "merged" / "comparison.png").stat().st_size > 1000


def test_display_settings_may_differ(tmp_path):
    a = experiment(tmp_path / "a", [0], [[0.5], [0.4]])
    b = experiment(
        tmp_path / "b", [1], [[0.5], [0.4]],
        train={**SETTINGS["train"], "progress_bar": True, "progress_refresh_rate": 20},
    )  # fmt: skip
    assert len(merge_results([a, b])[1]) == 4


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"train": {**SETTINGS["train"], "epochs": 20}}, "train.epochs"),
        ({"old_model_seed": 0}, "old_model_seed"),
        ({"profile": "full"}, "profile"),
        ({"strategy_train": {"joint": {"epochs": 30}}}, "strategy_train.joint.epochs"),
    ],
)
def test_other_settings_are_refused_naming_the_key_and_folders(tmp_path, changes, key):
    a = experiment(tmp_path / "a", [0], [[0.5], [0.4]])
    b = experiment(tmp_path / "b", [1], [[0.5], [0.4]], **changes)
    with pytest.raises(ConfigError, match=rf"{key} \(.* in {a}, .* in {b}\)"):
        merge_results([a, b])


def test_a_run_in_two_folders_is_kept_once_if_equal_else_refused(tmp_path):
    a = experiment(tmp_path / "a", [0, 1], [[0.5, 0.6], [0.4, 0.5]])
    same = experiment(tmp_path / "same", [1], [[0.6], [0.5]])
    _, merged, notes = merge_results([a, same])
    assert len(merged) == 4
    assert notes == [
        f"s candidate-sets seed 1: in {a} and {same}, same scores; kept once",
        f"s plop seed 1: in {a} and {same}, same scores; kept once",
    ]
    other = experiment(tmp_path / "other", [1], [[0.6], [0.55]])
    with pytest.raises(ConfigError, match=rf"s plop seed 1 is in {a} and in {other}"):
        merge_results([a, other])


def test_bad_folders_and_outputs_are_named(tmp_path, capsys):
    a = experiment(tmp_path / "a", [0], [[0.5], [0.4]])
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "m"), str(a), str(tmp_path / "empty")]) == 2
    assert f"{tmp_path / 'empty'} holds no config.yaml" in capsys.readouterr().err
    assert main([str(tmp_path / "m"), str(a), str(tmp_path / "missing")]) == 2
    assert f"{tmp_path / 'missing'} is not a folder" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="is one of the folders merged"):
        write_merged(a, [a])
    assert main([str(tmp_path / "m"), str(a)]) == 0
    # A second merge into the same folder needs --overwrite; the first is then kept aside.
    before = (tmp_path / "m" / "sources.yaml").read_text()
    assert main([str(tmp_path / "m"), str(a)]) == 2
    assert "already holds an experiment" in capsys.readouterr().err
    assert main([str(tmp_path / "m"), str(a), "--overwrite"]) == 0
    assert (tmp_path / "m" / "previous" / "sources.yaml").read_text() == before


def test_real_experiments_merged_equal_the_experiment_of_all_seeds(tmp_path):
    """Seeds 0 and 1 run as two experiments and merged score what one experiment of both
    seeds scores (training is deterministic on one machine)."""
    config = {**TINY, "scenarios": ["fashion-split"], "strategies": ["candidate-sets", "mib"],
              "cache_dir": str(tmp_path / "cache")}  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    for seeds in ("0", "1", "0,1"):
        assert run_main([str(path), "--seeds", seeds, "--output", str(tmp_path / seeds)]) == 0
    merged = write_merged(tmp_path / "merged", [tmp_path / "0", tmp_path / "1"])
    together = pd.read_csv(tmp_path / "0,1" / "results.csv")
    keys = ["scenario", "strategy", "seed", "replay"]
    scores = ["hiou", "miou_old", "miou_new", "split_bacc", "iou/sneaker"]
    pd.testing.assert_frame_equal(
        merged.sort_values(keys)[keys + scores].reset_index(drop=True),
        together.sort_values(keys)[keys + scores].reset_index(drop=True),
    )
    summary = (tmp_path / "merged" / "summary.md").read_text()
    assert "| candidate-sets | mib | 2 |" in summary
