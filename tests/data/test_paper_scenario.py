"""A paper benchmark's step 1 as a scenario, on a fake VOC tree with the real layout."""

from __future__ import annotations

import pytest

from incremental.data import build_scenario, build_scenarios
from incremental.labels import CandidateSetTable
from tests.scripts import load_test_data

make_paper_trees = load_test_data("make_paper_trees")


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return make_paper_trees.make_voc_tree(tmp_path_factory.mktemp("voc"))


def test_voc_15_5_scenario(voc_root):
    sc = build_scenario(
        {
            "kind": "paper",
            "name": "voc-15-5",
            "dataset": "voc",
            "root": str(voc_root),
            "task": "15-5",
            "val_fraction": 0.5,
        }
    )
    assert sc.transition.num_old_classes == 16 and sc.transition.new_classes[0] == "pottedplant"
    train_stems = {sc.new_train.base.stems[i] for i in sc.new_train.indices}
    train_stems |= {sc.old_train.base.stems[i] for i in sc.old_train.indices}
    val_stems = {sc.val.base.stems[i] for i in sc.val.indices}
    assert val_stems and not val_stems & train_stems  # held out, never trained on
    assert {sc.test.base.stems[i] for i in sc.test.indices} <= set(make_paper_trees.VOC_VAL)
    CandidateSetTable([sc.new_train.declaration, sc.old_train.declaration], sc.transition)
    for i in range(len(sc.val)):
        assert sc.val.load(i)[1].max() in set(range(21)) | {255}


def test_multi_step_task_is_not_one_scenario(voc_root):
    with pytest.raises(ValueError, match="has 5 steps"):
        build_scenario(
            {
                "kind": "paper",
                "name": "v",
                "dataset": "voc",
                "root": str(voc_root),
                "task": "15-1",
                "val_fraction": 0.5,
            }
        )


def test_unknown_key(voc_root):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['tsk'\]"):
        build_scenario({"kind": "paper", "name": "v", "dataset": "voc", "tsk": "15-5"})


def test_voc_15_1_has_one_scenario_per_step(voc_root):
    from incremental.data import build_scenarios

    steps = build_scenarios(
        {
            "kind": "paper",
            "name": "voc-15-1",
            "dataset": "voc",
            "root": str(voc_root),
            "task": "15-1",
            "val_fraction": 0.5,
        }
    )
    assert [s.name for s in steps] == [f"voc-15-1@step{t}" for t in range(1, 6)]
    assert [s.transition.new_classes for s in steps][-1] == ("tvmonitor",)
    assert steps[-1].transition.num_old_classes == 20
    # Later steps report every class added after step 0 as "new", as the papers do.
    assert steps[-1].report_new_classes == ("pottedplant", "sheep", "sofa", "train", "tvmonitor")
    # From step 2 on, replayed step-0 images read 0 as unlabeled (later classes may hide there).
    table = CandidateSetTable(
        [steps[1].old_train.declaration], steps[1].transition, check_teachable=False
    )
    assert "pottedplant" in table.candidate_set(steps[1].old_train.declaration.name, 0)


def test_every_shipped_paper_config_builds_on_the_fake_trees(tmp_path, monkeypatch):
    """Every protocol has a config; each builds its steps on trees with the real layout, uses
    the papers' augmentation and evaluation crop, and its oracle has fully labeled data."""
    from experiments.config import CONFIG_DIR, load_config, scenario_configs

    monkeypatch.setenv("VOC_ROOT", str(make_paper_trees.make_voc_tree(tmp_path / "data")))
    monkeypatch.setenv("ADE_ROOT", str(make_paper_trees.make_ade_tree(tmp_path / "data")))
    configs = sorted((CONFIG_DIR / "paper").glob("*.yaml"))
    tasks = {"voc": ["19-1", "15-5", "15-1", "10-1"], "ade": ["100-50", "100-10", "50-50"]}
    expected = {f"{d}-{t}{m}" for d, ts in tasks.items() for t in ts for m in ("", "-disjoint")}
    assert {p.stem for p in configs} == expected
    built = []
    for path in configs:
        config = load_config(path)
        assert config.train.augment == config.train_old.augment == "paper", path
        assert config.train.eval_crop == config.train_old.eval_crop == 512, path
        ((name, scenario_cfg),) = scenario_configs(config).items()
        scenario_cfg["val_fraction"] = 0.5  # the fake trees hold a few images
        try:
            steps = build_scenarios(scenario_cfg)
        except ValueError as error:  # the fake trees lack the images of some steps
            assert "show a class of step" in str(error) or "holds out no" in str(error), path
            built.append(False)
            continue
        built.append(True)
        assert steps[0].new_train_full is not None and steps[0].old_train_full is not None
    assert sum(built) >= 4  # the trees are tiny: not every task has all its steps
