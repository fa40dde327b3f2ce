"""benchmarks/split_operating_point.py: the bias moves only the child/remainder boundary, and the
scores are results.csv's split scores of the shifted predictions."""

from __future__ import annotations

import pytest
import torch

from incremental.labels import Split
from tests.scripts import load_benchmark

CLASSES = ["background", "footwear_other", "sneaker"]
SPLIT = Split.of("footwear", ["sneaker"])


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("split_operating_point")


def scene() -> tuple[torch.Tensor, torch.Tensor]:
    """One 1x4 scene: background, a remainder pixel, two sneakers (one ignored), where the
    model leans to the remainder on the sneaker by 0.5 and to the remainder by 1 on its own."""
    masks = torch.tensor([[[0, 1, 2, 255]]])
    logits = torch.zeros(1, 3, 1, 4)
    logits[0, 0, 0, 0] = 5.0  # background, sure
    logits[0, 1, 0, 1], logits[0, 2, 0, 1] = 1.0, 0.0  # remainder pixel
    logits[0, 1, 0, 2], logits[0, 2, 0, 2] = 0.5, 0.0  # sneaker pixel, called remainder
    return logits, masks


def test_no_bias_scores_the_model_as_it_predicts(bench):
    logits, masks = scene()
    scores = bench.biased_scores(logits, masks, 2, 0.0, CLASSES, SPLIT)
    # Both footwear pixels called footwear_other: no split (0.5), the sneaker never found.
    assert scores["split_bacc"] == pytest.approx(0.5)
    assert scores["child_iou"] == 0.0
    assert scores["remainder_iou"] == pytest.approx(0.5)


def test_a_bias_moves_the_boundary_between_child_and_remainder_only(bench):
    logits, masks = scene()
    split_right = bench.biased_scores(logits, masks, 2, 0.75, CLASSES, SPLIT)
    assert split_right["split_bacc"] == pytest.approx(1.0)  # 0.5 < 0.75 < 1
    assert split_right["child_iou"] == split_right["remainder_iou"] == pytest.approx(1.0)
    all_child = bench.biased_scores(logits, masks, 2, 2.0, CLASSES, SPLIT)
    assert all_child["remainder_iou"] == 0.0 and all_child["child_iou"] == pytest.approx(0.5)
    assert torch.equal(logits, scene()[0])  # the model's logits are left as they were


@pytest.mark.parametrize("script", ["split_operating_point", "split_features"])
def test_a_missing_or_foreign_model_file_is_named_before_any_scene_is_drawn(
    tmp_path, monkeypatch, capsys, script
):
    module = load_benchmark(script)
    drawn = []
    monkeypatch.setattr(module, "split_scenario", lambda *a, **k: drawn.append(a))
    foreign = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1)}, foreign)
    for path, reason in ((tmp_path / "none.pt", "model file not found"),
                         (foreign, "not an incremental model file")):  # fmt: skip
        monkeypatch.setattr("sys.argv", [script, "fashion-split", str(path)])
        with pytest.raises(SystemExit) as stop:
            module.main()
        assert stop.value.code == 2
        error = capsys.readouterr().err
        assert str(path) in error and reason in error and "Traceback" not in error
    assert drawn == []


def test_biases_that_are_not_numbers_are_named(bench, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["split_operating_point", "fashion-split", "m.pt",
                                     "--biases", "0,high"])  # fmt: skip
    with pytest.raises(SystemExit):
        bench.main()
    assert "--biases '0,high'" in capsys.readouterr().err
