"""experiments.merge: experiments of the same settings merge into one summary, paired by seed;
anything else is refused with the key, run or file named."""

from __future__ import annotations

import os
import re
import shutil
import socket

import pandas as pd
import pytest
import yaml

from experiments.config import ConfigError
from experiments.grid import strategy_runs
from experiments.merge import (
    GRID_KEYS,
    load_experiment,
    main,
    merge_results,
    record_of_runs,
    run_settings,
    settings_of_runs,
    write_merged,
)
from experiments.outputs import STRATEGIES, strategies_record
from experiments.run import main as run_main
from tests.experiments.test_run import TINY

SETTINGS = {
    "name": "e",
    "profile": "quick",
    "old_model_seed": None,
    "train": {"epochs": 6, "lr": 0.005, "progress_bar": False},
    "strategy_train": {"joint": {"epochs": 20, "progress_bar": False}},
}


def experiment(folder, seeds, hious, strategies=("candidate-sets", "plop"), teacher=0.7, **changes):
    """A hand-made experiment folder: config.yaml and results.csv (one scenario; ``teacher``:
    the old model's mIoU its runs record)."""
    folder.mkdir(parents=True)
    names = [s if isinstance(s, str) else s["name"] for s in strategies]
    config = {**SETTINGS, "scenarios": ["s"], "seeds": list(seeds), "strategies": list(strategies),
              **changes}  # fmt: skip
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [
        {"scenario": "s", "strategy": strategy, "seed": seed, "replay": False, "miou_all": 0.6,
         "miou_old": 0.7, "miou_new": h, "hiou": h, "iou/bag": h, "old_model_seed": seed,
         "old_model_miou": teacher, "train_seconds": 10 + seed, "device": "cpu",
         "precision": "32-true"}
        for strategy, per_seed in zip(names, hious, strict=True)
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
    assert str(a) in summary and str(b) in summary and "trained on cpu at 32-true" in summary
    sources = yaml.safe_load((tmp_path / "merged" / "sources.yaml").read_text())
    assert sources["seeds"] == [0, 1, 2] and sources["merged"] == [str(a), str(b)]
    assert sources["settings"]["train"] == {"epochs": 6, "lr": 0.005}
    assert len(pd.read_csv(tmp_path / "merged" / "results.csv")) == 6
    assert (tmp_path / "merged" / "comparison.png").stat().st_size > 1000


def test_display_settings_and_the_profile_label_may_differ(tmp_path):
    a = experiment(tmp_path / "a", [0], [[0.5], [0.4]])
    b = experiment(
        tmp_path / "b", [1], [[0.5], [0.4]], profile="experiments/configs/profile/quick.yaml",
        train={**SETTINGS["train"], "progress_bar": True, "progress_refresh_rate": 20,
               "log_images": 0},
        strategy_train={"joint": {"epochs": 20, "progress_bar": True}},
    )  # fmt: skip
    assert len(merge_results([a, b])[1]) == 4


@pytest.mark.parametrize(
    ("changes", "shown"),
    [
        ({"train": {**SETTINGS["train"], "epochs": 20}}, "train.epochs (6 in A, 20 in B)"),
        ({"old_model_seed": 0}, "old_model_seed (None in A, 0 in B)"),
        # 1 batch is not 1.0 (all of them), though 1 == 1.0 in Python.
        ({"train": {**SETTINGS["train"], "lr": 0.005, "limit_train_batches": 1}},
         "train.limit_train_batches ('<absent>' in A, 1 in B)"),
        ({"train": {**SETTINGS["train"], "epochs": 6.0}}, "train.epochs (6 in A, 6.0 in B)"),
    ],
)  # fmt: skip
def test_other_settings_are_refused_naming_key_values_and_folders(tmp_path, changes, shown):
    a = experiment(tmp_path / "a", [0], [[0.5], [0.4]])
    b = experiment(tmp_path / "b", [1], [[0.5], [0.4]], **changes)
    expected = shown.replace(" in A", f" in {a}").replace(" in B", f" in {b}")
    with pytest.raises(ConfigError, match=re.escape(expected)):
        merge_results([a, b])


def test_a_strategy_s_own_settings_count_where_its_runs_are(tmp_path):
    """``strategy_train.<s>`` and ``strategy_overrides.<base of s>`` act on runs of ``s``
    only: two folders holding runs of ``s`` must agree on them; a folder that did not run ``s``
    may have any (an older profile's, a study's), and the merged settings are the runner's."""
    both = ("candidate-sets", "joint")
    a = experiment(tmp_path / "a", [0], [[0.5], [0.4]], strategies=both)
    b = experiment(tmp_path / "b", [1], [[0.5], [0.4]], strategies=both,
                   strategy_train={"joint": {"epochs": 30}})  # fmt: skip
    with pytest.raises(ConfigError, match=re.escape(
        f"merge: {b} ran 'joint' with other settings than {a}: strategy_train.joint.epochs "
        f"(20 in {a}, 30 in {b}); runs of one strategy merge only with the same settings"
    )):  # fmt: skip
        merge_results([a, b])
    # Without joint's runs, b's entry for it acts on nothing: the merge keeps a's.
    study = experiment(
        tmp_path / "study",
        [1],
        [[0.5]],
        strategies=("candidate-sets",),
        strategy_train={"joint": {"epochs": 30}, "candidate-sets": {"lr": 0.001}},
    )
    with pytest.raises(ConfigError, match=re.escape(
        f"ran 'candidate-sets' with other settings than {a}: strategy_train.candidate-sets "
        f"('<absent>' in {a}, {{'lr': 0.001}} in {study})"
    )):  # fmt: skip
        merge_results([a, study])
    study = experiment(tmp_path / "study2", [1], [[0.5]], strategies=("candidate-sets",),
                       strategy_train={"joint": {"epochs": 30}})  # fmt: skip
    settings, merged, _ = merge_results([a, study])
    assert len(merged) == 3 and settings["strategy_train"] == {"joint": {"epochs": 20}}
    settings, _, _ = merge_results([study, a])
    assert settings["strategy_train"] == {"joint": {"epochs": 20}}
    # A base's overrides act on its variants too.
    overridden = experiment(
        tmp_path / "v",
        [1],
        [[0.5]],
        strategies=(variant("cs-x"),),
        strategy_overrides={"candidate-sets": {"kd_weight": 2}},
    )
    with pytest.raises(ConfigError, match=re.escape(
        "ran the strategies built on 'candidate-sets' with other settings than"
    )):  # fmt: skip
        merge_results([a, overridden])


def test_a_variant_defined_differently_is_refused(tmp_path):
    def variant(rate):
        return {"name": "v", "strategy": "candidate-sets", "settings": {"refine_threshold": rate}}

    a = experiment(tmp_path / "a", [0], [[0.5], [0.4]], strategies=["plop", variant(0.7)])
    same = experiment(tmp_path / "same", [1], [[0.5], [0.4]], strategies=["plop", variant(0.7)])
    assert len(merge_results([a, same])[1]) == 4
    b = experiment(tmp_path / "b", [1], [[0.5], [0.4]], strategies=["plop", variant(0.9)])
    shown = rf"strategy/v is .*0\.7.* in {re.escape(str(a))} and .*0\.9.* in {re.escape(str(b))};"
    with pytest.raises(ConfigError, match=shown):
        merge_results([a, b])


def test_runs_of_a_seed_from_another_old_model_do_not_pair(tmp_path):
    a = experiment(tmp_path / "a", [0], [[0.5]], strategies=["candidate-sets"], teacher=0.70)
    b = experiment(tmp_path / "b", [0], [[0.4]], strategies=["plop"], teacher=0.73)
    with pytest.raises(ConfigError, match=re.escape(
        f"s seed 0: the runs in {a} and in {b} started from different old models "
        "(old_model_seed 0 vs 0, old_model_miou 0.7 vs 0.73"
    )):  # fmt: skip
        merge_results([a, b])
    c = experiment(tmp_path / "c", [0], [[0.4]], strategies=["plop"], teacher=0.70)
    assert len(merge_results([a, c])[1]) == 2


def test_a_run_in_two_folders_is_kept_once_if_equal_else_refused(tmp_path):
    a = experiment(tmp_path / "a", [0, 1], [[0.5, 0.6], [0.4, 0.5]])
    same = experiment(tmp_path / "same", [1], [[0.6], [0.5]])
    _, merged, notes = merge_results([a, same])
    assert len(merged) == 4
    assert notes == [
        f"s candidate-sets seed 1: in {a} and in {same}, same scores; kept once",
        f"s plop seed 1: in {a} and in {same}, same scores; kept once",
    ]
    other = experiment(tmp_path / "other", [1], [[0.6], [0.55]])
    with pytest.raises(ConfigError, match=re.escape(f"s plop seed 1 is in {a} and in {other}")):
        merge_results([a, other])
    # The note reaches the summary; a run twice in one file is named so.
    write_merged(tmp_path / "m", [a, same])
    assert (
        f"- s plop seed 1: in {a} and in {same}, same scores; kept once"
        in (tmp_path / "m" / "summary.md").read_text()
    )
    twice = experiment(tmp_path / "twice", [1, 1], [[0.6, 0.6], [0.5, 0.5]])
    assert (
        merge_results([twice])[2][0]
        == f"s candidate-sets seed 1: twice in {twice}, same scores; kept once"
    )


def test_seeds_read_as_floats_are_the_same_runs(tmp_path):
    a = experiment(tmp_path / "a", [0, 1], [[0.5, 0.6], [0.4, 0.5]])
    b = experiment(tmp_path / "b", [1], [[0.6], [0.5]])
    frame = pd.read_csv(b / "results.csv")
    frame.assign(seed=frame["seed"].astype(float)).to_csv(b / "results.csv", index=False)
    _, merged, notes = merge_results([a, b])
    assert len(merged) == 4 and merged["seed"].tolist() == [0, 1, 0, 1]
    assert notes[0] == f"s candidate-sets seed 1: in {a} and in {b}, same scores; kept once"


def test_bad_folders_and_outputs_are_named(tmp_path, capsys):
    a = experiment(tmp_path / "a", [0], [[0.5], [0.4]])
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "m"), str(a), str(tmp_path / "empty")]) == 2
    assert f"{tmp_path / 'empty'} holds no config.yaml" in capsys.readouterr().err
    assert main([str(tmp_path / "m"), str(a), str(tmp_path / "missing")]) == 2
    assert f"{tmp_path / 'missing'} is not a folder" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="one inside the other"):
        write_merged(a, [a])
    # A source inside the output (its previous/, which --overwrite replaces) is refused.
    inside = experiment(tmp_path / "m" / "previous", [1], [[0.5], [0.4]])
    with pytest.raises(ConfigError, match=re.escape(f"folder merged {inside} are one inside")):
        write_merged(tmp_path / "m", [a, inside], overwrite=True)
    assert (inside / "results.csv").exists()
    shutil.rmtree(tmp_path / "m")
    assert main([str(tmp_path / "m"), str(a)]) == 0
    # A second merge into the same folder needs --overwrite; the first is then kept aside.
    before = (tmp_path / "m" / "sources.yaml").read_text()
    assert main([str(tmp_path / "m"), str(a)]) == 2
    assert "already holds an experiment" in capsys.readouterr().err
    assert main([str(tmp_path / "m"), str(a), "--overwrite"]) == 0
    assert (tmp_path / "m" / "previous" / "sources.yaml").read_text() == before


def test_running_and_empty_experiments_are_refused(tmp_path):
    a = experiment(tmp_path / "a", [0], [[0.5], [0.4]])
    (a / ".lock").write_text(f"{os.getpid()} {socket.gethostname()}")  # this live process
    with pytest.raises(ConfigError, match=re.escape(f"{a} is in use by process {os.getpid()}")):
        merge_results([a])
    (a / ".lock").write_text(f"999999999 {socket.gethostname()}")  # a process that has ended
    assert len(merge_results([a])[1]) == 2
    empty = experiment(tmp_path / "empty", [0], [[0.5], [0.4]])
    header = (empty / "results.csv").read_text().splitlines()[0]
    (empty / "results.csv").write_text(header + "\n")  # started, nothing finished
    with pytest.raises(ConfigError, match=re.escape(f"no finished run in {empty}")):
        merge_results([empty])
    _, _, notes = merge_results([a, empty])
    assert notes == [f"{empty}: 0 of the 2 runs its grid names"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.yaml").write_text("train: [unclosed\n")
    (tmp_path / "bad" / "results.csv").write_text("scenario\n")
    with pytest.raises(
        ConfigError, match=re.escape(f"{tmp_path / 'bad' / 'config.yaml'}: cannot read YAML")
    ):
        merge_results([tmp_path / "bad"])


def test_real_experiments_merged_equal_the_experiment_of_all_seeds(tmp_path):
    """Seeds 0 and 1 run as two experiments and merged score what one experiment of both
    seeds scores (training is deterministic on one machine). The three share a cache, so the
    third reuses the first two's old models: this checks the steps and the merge, and that the
    merge accepts what the runner writes."""
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


def test_a_strategy_rerun_with_its_own_settings_replaces_its_runs(tmp_path):
    """``--rerun``: the oracle trained longer (one folder per seed) replaces the oracle's runs;
    the other strategies' stay, in their order."""
    base = experiment(tmp_path / "base", [0, 1], [[0.5, 0.6], [0.4, 0.5], [0.7, 0.8]],
                      strategies=("candidate-sets", "joint", "plop"),
                      strategy_train={})  # fmt: skip
    longer = {"joint": {"epochs": 40, "progress_bar": False}}
    seed0, seed1 = (
        experiment(tmp_path / f"rerun{seed}", [seed], [[0.75 + seed / 10]],
                   strategies=("joint",), strategy_train=longer)
        for seed in (0, 1)
    )  # fmt: skip
    settings, merged, notes = merge_results([base], [seed0, seed1])
    assert len(merged) == 6
    assert list(dict.fromkeys(merged["strategy"])) == ["candidate-sets", "joint", "plop"]
    joint = merged[merged["strategy"] == "joint"].sort_values("seed")
    assert joint["hiou"].tolist() == [0.75, 0.85]
    assert merged[merged["strategy"] == "plop"]["hiou"].tolist() == [0.7, 0.8]
    assert settings["strategy_train"] == {"joint": {"epochs": 40}}
    assert notes[-1] == (
        f"reruns {seed0}, {seed1}: 2 run(s) of joint replace 2 run(s) of the folders merged "
        "(settings changed: strategy_train.joint)"
    )
    # Through the command line: sources.yaml records the reruns and the settings they brought.
    argv = [str(tmp_path / "out"), str(base), "--rerun", str(seed0), "--rerun", str(seed1)]
    assert main(argv) == 0
    sources = yaml.safe_load((tmp_path / "out" / "sources.yaml").read_text())
    assert sources["reruns"] == [str(seed0), str(seed1)]
    assert sources["settings"]["strategy_train"]["joint"] == {"epochs": 40}
    assert f"reruns {seed0}, {seed1}" in (tmp_path / "out" / "summary.md").read_text()


def variant(name, strategy="candidate-sets", **settings):
    return {"name": name, "strategy": strategy, "settings": settings}


def test_a_rerun_may_change_a_base_s_overrides_only_with_every_strategy_built_on_it(tmp_path):
    """``strategy_overrides.candidate-sets`` applies to its variants too: changing it in a
    rerun replaces them all, or is refused."""
    both = ("candidate-sets", variant("cs-x", refine_threshold=0.9))
    base = experiment(tmp_path / "base", [0], [[0.5], [0.4]], strategies=both)
    changed = {"strategy_overrides": {"candidate-sets": {"kd_weight": 2}}}
    alone = experiment(tmp_path / "alone", [0], [[0.6]], strategies=("candidate-sets",),
                       **changed)  # fmt: skip
    with pytest.raises(ConfigError, match=re.escape(
        "strategy_overrides.candidate-sets ('<absent>' in"
    )):  # fmt: skip
        merge_results([base], [alone])
    together = experiment(tmp_path / "together", [0], [[0.6], [0.45]], strategies=both, **changed)
    settings, merged, _ = merge_results([base], [together])
    assert settings["strategy_overrides"] == {"candidate-sets": {"kd_weight": 2}}
    assert sorted(merged["hiou"]) == [0.45, 0.6]


@pytest.mark.parametrize(
    ("changes", "seeds", "strategies", "error"),
    [
        # A setting of everyone's changes: not a rerun of one strategy.
        ({"train": {**SETTINGS["train"], "epochs": 20}}, [0, 1], ("joint",),
         "beyond those its strategies ['joint'] may change: train.epochs (6 in"),
        # Seed 1 of joint would stay at the old settings.
        ({"strategy_train": {"joint": {"epochs": 40}}}, [0], ("joint",),
         "have no s joint seed 1, which the folders merged hold"),
        # A strategy the folders do not hold: nothing to replace (a typo, another folder).
        ({}, [0, 1], ("plop",), "holds runs of ['plop'], which the folders merged do not"),
    ],
)  # fmt: skip
def test_a_rerun_that_would_mix_settings_is_refused(tmp_path, changes, seeds, strategies, error):
    base = experiment(tmp_path / "base", [0, 1], [[0.5, 0.6], [0.7, 0.8]],
                      strategies=("candidate-sets", "joint"))  # fmt: skip
    rerun = experiment(tmp_path / "rerun", seeds, [[0.75] * len(seeds)], strategies=strategies,
                       **changes)  # fmt: skip
    with pytest.raises(ConfigError, match=re.escape(error)):
        merge_results([base], [rerun])


def test_a_rerun_s_settings_for_strategies_it_did_not_run_are_not_its_own(tmp_path):
    """A rerun of joint with another entry for plop (which it did not run) changes nothing of
    plop: the merged settings keep the folders' entries for the strategies they ran."""
    base = experiment(
        tmp_path / "base",
        [0, 1],
        [[0.5, 0.6], [0.7, 0.8]],
        strategies=("plop", "joint"),
        strategy_train={"plop": {"epochs": 8}},
    )
    rerun = experiment(
        tmp_path / "rerun",
        [0, 1],
        [[0.75, 0.85]],
        strategies=("joint",),
        strategy_train={"plop": {"epochs": 9}, "joint": {"epochs": 40}},
    )
    settings, merged, notes = merge_results([base], [rerun])
    assert settings["strategy_train"] == {"plop": {"epochs": 8}, "joint": {"epochs": 40}}
    assert merged[merged["strategy"] == "joint"]["hiou"].tolist() == [0.75, 0.85]
    assert notes[-1].endswith("(settings changed: strategy_train.joint)")


def test_reruns_of_one_strategy_must_agree_and_pair_with_the_old_models(tmp_path):
    base = experiment(tmp_path / "base", [0, 1], [[0.5, 0.6], [0.7, 0.8]],
                      strategies=("plop", "joint"))  # fmt: skip
    a = experiment(tmp_path / "a", [0], [[0.75]], strategies=("joint",),
                   strategy_train={"joint": {"epochs": 40}})  # fmt: skip
    b = experiment(tmp_path / "b", [1], [[0.76]], strategies=("joint",),
                   strategy_train={"joint": {"epochs": 50}})  # fmt: skip
    with pytest.raises(ConfigError, match=re.escape(
        f"strategy_train.joint is {{'epochs': 40}} in the rerun {a} and {{'epochs': 50}} in the "
        f"rerun {b}"
    )):  # fmt: skip
        merge_results([base], [a, b])
    again = experiment(tmp_path / "again", [0, 1], [[0.7, 0.8]], strategies=("joint",),
                       strategy_train={"joint": {"epochs": 40}})  # fmt: skip
    with pytest.raises(ConfigError, match=re.escape(f"s joint seed 0 is in {a} and in the rerun")):
        merge_results([base], [a, again])
    other = experiment(tmp_path / "other", [0, 1], [[0.7, 0.8]], strategies=("joint",),
                       teacher=0.73, strategy_train={"joint": {"epochs": 40}})  # fmt: skip
    with pytest.raises(ConfigError, match="started from different old models"):
        merge_results([base], [other])


def test_a_rerun_refused_for_a_base_s_overrides_names_the_folder_that_ran_it(tmp_path):
    a = experiment(tmp_path / "a", [0], [[0.5]], strategies=("plop",))
    b = experiment(tmp_path / "b", [0, 1], [[0.5, 0.6], [0.4, 0.3]],
                   strategies=("candidate-sets", variant("cs-x")),
                   strategy_overrides={"candidate-sets": {"kd_weight": 2}})  # fmt: skip
    rerun = experiment(tmp_path / "r", [0, 1], [[0.7, 0.8]], strategies=("candidate-sets",),
                       strategy_overrides={"candidate-sets": {"kd_weight": 3}})  # fmt: skip
    with pytest.raises(ConfigError, match=re.escape(
        f"the rerun {rerun} was run with other settings than {b} beyond those its strategies "
        f"['candidate-sets'] may change: strategy_overrides.candidate-sets.kd_weight (2 in {b}, "
        f"3 in {rerun})"
    )):  # fmt: skip
        merge_results([a, b], [rerun])


def test_a_name_that_is_a_variant_in_one_folder_and_registered_in_another_is_refused(tmp_path):
    """Two strategies under one name would pair as one (in either folder order)."""
    plain = experiment(tmp_path / "plain", [0], [[0.5]], strategies=("plop",))
    other = experiment(tmp_path / "variant", [1], [[0.5]],
                       strategies=({"name": "plop", "strategy": "candidate-sets"},))  # fmt: skip
    for folders in ([plain, other], [other, plain]):
        with pytest.raises(ConfigError, match="rename the variant"):
            merge_results(folders)


def test_an_empty_or_display_only_entry_is_no_entry(tmp_path):
    """The runner reads ``strategy_train.<s>: {}`` (or only display settings) as no entry."""
    a = experiment(tmp_path / "a", [0], [[0.5]], strategies=("joint",),
                   strategy_train={"joint": {"progress_bar": True}})  # fmt: skip
    b = experiment(tmp_path / "b", [1], [[0.6]], strategies=("joint",), strategy_train={})
    settings, merged, _ = merge_results([a, b])
    assert len(merged) == 2 and settings["strategy_train"] == {}


def test_run_settings_hold_only_the_own_settings_of_the_strategies_run(tmp_path):
    """What a saved experiment is compared with today's profile by: the shared settings and
    the per-strategy entries of the strategies named (a variant's through its base)."""
    config = {
        **SETTINGS,
        "scenarios": ["s"],
        "seeds": [0],
        "strategies": ["joint", variant("cs-x")],
        "strategy_train": {"joint": {"epochs": 20}, "mib": {"epochs": 9}},
        "strategy_overrides": {"candidate-sets": {"kd_weight": 2}, "plop": {"pod_weight": 1}},
    }
    settings = run_settings(config, {"joint", "cs-x"})
    assert settings["strategy_train"] == {"joint": {"epochs": 20}}
    assert settings["strategy_overrides"] == {"candidate-sets": {"kd_weight": 2}}
    # Display settings (the progress bar) are no settings; the grid is not compared.
    assert settings["train"] == {"epochs": 6, "lr": 0.005} and "strategies" not in settings
    assert run_settings(config, {"cs-x"})["strategy_train"] == {}
    # One folder's merge gives the same settings.
    folder = experiment(tmp_path / "a", [0], [[0.5], [0.4]], strategies=config["strategies"],
                        strategy_train=config["strategy_train"],
                        strategy_overrides=config["strategy_overrides"])  # fmt: skip
    assert merge_results([folder])[0] == run_settings(load_experiment(folder)[0], {"joint", "cs-x"})


def test_sources_record_each_folder_s_grid_to_compare_the_merge_with_today(tmp_path):
    """``sources.yaml``'s ``grids``: each folder's grid and the strategies it ran, so that the
    merged settings can be compared with what the profile computes today once the folders
    are gone (``settings_of_runs``, as ``tests/experiments/test_committed_results`` does)."""
    own = {"candidate-sets": {"kd_weight": 2}}
    a = experiment(tmp_path / "a", [0], [[0.5], [0.4]], strategies=("joint", variant("cs-x")),
                   strategy_overrides=own)  # fmt: skip
    b = experiment(tmp_path / "b", [1], [[0.6]], strategies=("plop",), strategy_overrides=own)
    write_merged(tmp_path / "m", [a, b])
    sources = yaml.safe_load((tmp_path / "m" / "sources.yaml").read_text())
    grids = sources["grids"]
    assert [g["folder"] for g in grids] == [str(a), str(b)]
    assert grids[0]["ran"] == ["cs-x", "joint"] and grids[1]["ran"] == ["plop"]
    assert grids[0]["strategies"] == ["joint", variant("cs-x")] and grids[1]["seeds"] == [1]
    assert set(GRID_KEYS) <= set(grids[0])
    for grid, folder in zip(grids, (a, b), strict=True):
        config = load_experiment(folder)[0]
        ran = set(grid["ran"])
        assert settings_of_runs(sources["settings"], config, ran) == run_settings(config, ran)
    # A strategy's own entry that today's config no longer has is a difference.
    today = {**load_experiment(a)[0], "strategy_overrides": {}}
    ran = set(grids[0]["ran"])
    assert settings_of_runs(sources["settings"], today, ran) != run_settings(today, ran)
    # The variant's base carries the overrides; a folder that did not run it does not.
    assert (
        settings_of_runs(sources["settings"], load_experiment(b)[0], {"plop"})["strategy_overrides"]
        == {}
    )


def test_a_strategy_recorded_as_trained_differently_is_refused(tmp_path):
    """``strategies.yaml`` (what each strategy trained as, code defaults included): runs of a
    label two folders recorded differently do not merge (a code default changed between
    them); a folder from before the record merges, and ``grids`` keeps each folder's record
    of the strategies it ran."""
    record = strategies_record(strategy_runs(["candidate-sets", "plop", "mib"], {}))
    a = experiment(tmp_path / "a", [0], [[0.5], [0.4]])
    b = experiment(tmp_path / "b", [1], [[0.6], [0.5]])
    old = experiment(tmp_path / "old", [2], [[0.6], [0.5]])  # no record
    for folder in (a, b):
        (folder / STRATEGIES).write_text(yaml.safe_dump(record, sort_keys=False))
    write_merged(tmp_path / "m", [a, b, old])
    grids = yaml.safe_load((tmp_path / "m" / "sources.yaml").read_text())["grids"]
    assert list(grids[0]["trained"]) == ["candidate-sets", "plop"]  # mib did not run there
    assert grids[0]["trained"]["plop"] == record["plop"] and grids[2]["trained"] is None
    changed = yaml.safe_load((b / STRATEGIES).read_text())
    changed["plop"]["terms"][1]["new_option"] = None  # an option added later, off: no difference
    (b / STRATEGIES).write_text(yaml.safe_dump(changed))
    merge_results([a, b])
    changed["plop"]["terms"][1]["weight"] = 0.02
    changed["mib"]["init"] = "random"  # a strategy b did not run: no difference
    (b / STRATEGIES).write_text(yaml.safe_dump(changed))
    with pytest.raises(ConfigError, match=r"plop trained differently in .*a and .*b .*"
                       r"terms\.1\.weight \(0\.01 in .*, 0\.02 in "):  # fmt: skip
        merge_results([a, old, b])
    (b / STRATEGIES).write_text("- not a mapping")
    with pytest.raises(ConfigError, match="strategies.yaml: expected a mapping"):
        merge_results([a, b])


def test_replay_from_before_its_defaults_does_not_merge_with_replay_after_them(tmp_path):
    """A folder from before ``strategies.yaml`` ran candidate sets' replay without replay
    defaults (there were none before 2026-12-07): its runs do not merge with a recorded
    folder's runs under today's defaults, and do with a folder that pinned the former ones."""

    def replayed(folder, seed, overrides=None):
        folder = experiment(folder, [seed], [[0.5]], strategies=["candidate-sets+replay"],
                            strategy_overrides=overrides or {})  # fmt: skip
        results = pd.read_csv(folder / "results.csv")
        results["strategy"], results["replay"] = "candidate-sets", True
        results.to_csv(folder / "results.csv", index=False)
        return folder

    old = replayed(tmp_path / "old", 0)  # no record
    new = replayed(tmp_path / "new", 1)
    (new / STRATEGIES).write_text(
        yaml.safe_dump(strategies_record(strategy_runs(["candidate-sets+replay"], {})))
    )
    refused = (r"candidate-sets\+replay trained differently in .*old and .*new .*before "
               r"2026-12-07.*: candidate-sets\+replay: terms .*FamilyContrast")  # fmt: skip
    with pytest.raises(ConfigError, match=refused):
        merge_results([old, new])
    former = {"candidate-sets": {"contrast": None, "self_training": None}}
    pinned = replayed(tmp_path / "pinned", 2, former)
    (pinned / STRATEGIES).write_text(
        yaml.safe_dump(strategies_record(strategy_runs(["candidate-sets+replay"], former)))
    )
    assert len(merge_results([old, pinned])[1]) == 2


def replay_folder(folder, seed, entry="candidate-sets+replay", overrides=None, record=False,
                  **changes):  # fmt: skip
    """An experiment folder of one replayed candidate-sets run (results.csv's name and replay),
    named ``entry`` in its config, with its strategies record when ``record``."""
    overrides = overrides or {}
    folder = experiment(folder, [seed], [[0.5]], strategies=[entry],
                        strategy_overrides=overrides, **changes)  # fmt: skip
    results = pd.read_csv(folder / "results.csv")
    results["strategy"], results["replay"] = "candidate-sets", True
    results.to_csv(folder / "results.csv", index=False)
    if record:
        runs = strategy_runs([entry], overrides)
        (folder / STRATEGIES).write_text(yaml.safe_dump(strategies_record(runs)))
    return folder


def test_one_run_under_two_labels_is_checked_as_one(tmp_path):
    """``candidate-sets`` with ``replay: true`` and ``candidate-sets+replay`` are the same runs
    in results.csv: their records are compared, so replay from before its defaults does not
    merge with replay after them under another label either."""
    on = {"candidate-sets": {"replay": True}}
    old = replay_folder(tmp_path / "old", 0, overrides=on)  # before the record: no defaults
    new = replay_folder(tmp_path / "new", 1, "candidate-sets", on, record=True)
    with pytest.raises(ConfigError, match=r"candidate-sets\+replay \(candidate-sets in .*new\) "
                       r"trained differently in .*old and .*new"):  # fmt: skip
        merge_results([old, new])
    same = replay_folder(tmp_path / "same", 2, overrides=on, record=True)
    assert len(merge_results([new, same])[1]) == 2


def test_reruns_of_one_strategy_must_have_trained_it_alike(tmp_path):
    """Reruns of a strategy (one per seed) together replace its runs: one from before replay's
    defaults and one after them are refused, as the same folders merged as experiments are."""
    base = replay_folder(tmp_path / "base", 0, record=True)
    shutil.copytree(base, tmp_path / "base1")
    base1 = tmp_path / "base1"
    results = pd.read_csv(base1 / "results.csv").assign(seed=1, old_model_seed=1)
    results.to_csv(base1 / "results.csv", index=False)
    config = yaml.safe_load((base1 / "config.yaml").read_text())
    (base1 / "config.yaml").write_text(yaml.safe_dump({**config, "seeds": [1]}))
    longer = {"joint": SETTINGS["strategy_train"]["joint"],
              "candidate-sets": {"epochs": 40, "progress_bar": False}}  # fmt: skip
    before = replay_folder(tmp_path / "r0", 0, strategy_train=longer)
    after = replay_folder(tmp_path / "r1", 1, strategy_train=longer, record=True)
    with pytest.raises(ConfigError, match=r"candidate-sets\+replay trained differently in "
                       r".*r0 and .*r1"):  # fmt: skip
        merge_results([base, base1], [before, after])
    again = replay_folder(tmp_path / "r0-again", 0, strategy_train=longer, record=True)
    assert len(merge_results([base, base1], [again, after])[1]) == 2


def test_a_record_is_matched_to_runs_by_name_and_replay():
    """``joint`` replays under its plain name, and a base's overrides may turn replay on: the
    record's entries are matched to results.csv's runs by what they recorded, not by label."""
    record = strategies_record(strategy_runs(["joint", "candidate-sets", "mib"], {}))
    ran = pd.DataFrame({"strategy": ["joint", "candidate-sets"], "replay": [True, False]})
    assert list(record_of_runs(record, ran)) == ["joint", "candidate-sets"]
    replayed = strategies_record(
        strategy_runs(["candidate-sets"], {"candidate-sets": {"replay": True}})
    )
    assert list(replayed) == ["candidate-sets"] and replayed["candidate-sets"]["replay"]
    replay_runs = pd.DataFrame({"strategy": ["candidate-sets"], "replay": [True]})
    assert record_of_runs(replayed, replay_runs)
    assert not record_of_runs(replayed, ran)
