"""Your own data: the example config end to end on generated folders (train from the given old
model, predict, export), and the folder scenario's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from experiments.config import CONFIG_DIR
from experiments.make_example_data import make_example_data
from experiments.run import main as run_main
from incremental.__main__ import main as cli_main
from incremental.data import build_scenario
from incremental.models import load_model_file

TINY_SIZES = {"old_train": 8, "new_train": 8, "val": 4, "test": 4, "old_val": 4}
FAST = [
    "--wandb", "disabled",
    "--jobs", "1",
    "--set", "train.epochs=1",
    "--set", "train.batch_size=4",
    "--set", "train.limit_train_batches=2",
    "--set", "train.progress_bar=false",
]  # fmt: skip


@pytest.fixture(scope="module")
def example_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("example-data")
    return make_example_data(root, sizes=TINY_SIZES, old_model="untrained", image_size=32)


def test_example_config_end_to_end(tmp_path, example_data, capsys):
    out = tmp_path / "run"
    config = CONFIG_DIR / "own-data.yaml"
    args = [
        str(config),
        "--output",
        str(out),
        "--set",
        f"scenario_overrides.folders.root={example_data}",
    ]
    assert run_main(args + FAST) == 0, capsys.readouterr().err
    frame = pd.read_csv(out / "results.csv")
    assert list(frame["strategy"]) == ["finetune", "candidate-sets", "candidate-sets"]
    assert "iou/bag" in frame
    # The step started from the given model: its network and classes, plus the new class.
    given = load_model_file(example_data / "old_model.pt")
    model_path = out / "models" / "my-new-class" / "candidate-sets-seed0.pt"
    trained = load_model_file(model_path)
    assert trained.spec == given.spec
    assert trained.classes == [*given.classes, "bag"]
    # Use the result: predict the test images, export to ONNX.
    masks = tmp_path / "masks"
    images = example_data / "test" / "images"
    assert cli_main(["predict", "--model", str(model_path), "--images", str(images),
                     "--out", str(masks)]) == 0  # fmt: skip
    assert len(list(masks.glob("*.png"))) == TINY_SIZES["test"]
    assert json.loads((masks / "classes.json").read_text())["classes"][-1] == "bag"
    onnx_path = tmp_path / "model.onnx"
    assert cli_main(["export", "--model", str(model_path), "--out", str(onnx_path)]) == 0
    assert onnx_path.stat().st_size > 0


def _scenario(example_data: Path, **changes) -> dict:
    config = {
        "kind": "folders",
        "name": "mine",
        "root": str(example_data),
        "old_model": {"path": "old_model.pt"},
        "transition": {"add": ["bag"]},
        "old_train": "old_train/dataset.yaml",
        "new_train": ["new_train/dataset.yaml"],
        "val": "val/dataset.yaml",
    }
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


def test_scenario_from_folders(example_data):
    scenario = build_scenario(_scenario(example_data))
    assert scenario.transition.student_classes[-1] == "bag"
    assert scenario.teacher is not None and scenario.teacher.classes[0] == "background"
    assert scenario.test is scenario.val and scenario.info["test"] == "val"
    assert len(scenario.new_train) == 1 and len(scenario.new_train[0]) == TINY_SIZES["new_train"]


def test_without_old_model_the_old_model_is_trained_here(example_data, tmp_path):
    config = _scenario(example_data, old_model=None, old_val="old_val/dataset.yaml")
    with pytest.raises(ValueError, match="transition.old_classes is missing"):
        build_scenario(config)
    classes = load_model_file(example_data / "old_model.pt").classes
    config["transition"] = {"old_classes": classes, "add": ["bag"]}
    scenario = build_scenario(config)
    assert scenario.teacher is None and len(scenario.old_val) == TINY_SIZES["old_val"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"old_vall": "x.yaml"}, r"unknown key\(s\) \['old_vall'\]"),
        ({"val": None}, "missing key 'val'"),
        ({"transition": {"add": ["bag"], "old_classes": ["background", "coat"]}},
         r"old_classes \['background', 'coat'\] differ from the classes"),
        ({"transition": {"add": ["bag"], "hidden_under": "sky"}}, "sky"),
        (
            {"old_model": None, "transition": {"old_classes": ["background"], "add": ["bag"]}},
            "needs 'old_val'",
        ),
        ({"new_train": "nowhere/dataset.yaml"}, "nowhere"),
    ],
)  # fmt: skip
def test_bad_folder_scenario(example_data, changes, message):
    with pytest.raises(ValueError, match=message):
        build_scenario(_scenario(example_data, **changes))


def test_inline_scenario_paths_are_relative_to_the_experiment_file(tmp_path):
    from experiments.config import load_config

    experiment = tmp_path / "exp" / "mine.yaml"
    experiment.parent.mkdir()
    inline = {"name": "s", "kind": "folders", "root": "data"}
    experiment.write_text(yaml.safe_dump({"scenarios": [inline]}))
    config = load_config(experiment)
    assert Path(config.scenarios[0].root) == experiment.parent.resolve() / "data"
