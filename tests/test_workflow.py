"""Step 0 and step 1 end to end on tiny data (one short epoch each)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from incremental.labels import CandidateSetTable
from incremental.models import load_model_file, save_model_file
from incremental.strategies import create_strategy
from incremental.workflow import TrainConfig, class_weights, train_old_model, train_step

FAST = TrainConfig(epochs=1, batch_size=4, progress_bar=False, augment="flip")


def test_old_model_then_step(tmp_path, split_scenario):
    spec = {"name": "tiny-unet"}
    old = train_old_model(split_scenario, spec, FAST, 0, tmp_path / "old")
    assert set(split_scenario.transition.old_classes) == {
        k.removeprefix("iou/") for k in old.scores if k.startswith("iou/")
    }
    step = train_step(
        split_scenario, old.model, spec, create_strategy("plop"), FAST, 0, tmp_path / "plop"
    )
    for key in ("miou_all", "miou_old", "miou_new", "hiou", "miou_parent", "iou/sneaker"):
        assert key in step.scores and not math.isnan(step.scores[key]), key
    assert step.best_checkpoint and step.best_checkpoint.endswith("best.ckpt")
    path = save_model_file(
        tmp_path / "m.pt", step.model, spec, split_scenario.transition.student_classes
    )
    loaded = load_model_file(path).build()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x), step.model.eval()(x))


def test_class_weights_say_when_they_weigh_nothing(new_class_scenario, caplog):
    """New images alone (no replay) label only the new class as one class: the weights are all
    1.0, and the log says so instead of pretending to balance."""
    sources = [new_class_scenario.new_train]
    table = CandidateSetTable([s.declaration for s in sources], new_class_scenario.transition)
    with caplog.at_level("WARNING", logger="incremental.data.class_weights"):
        weights = class_weights(sources, table)
    assert torch.equal(weights, torch.ones_like(weights))
    assert "weighs nothing" in caplog.text and "'bag'" in caplog.text


def test_class_weights_favour_rare_classes(new_class_scenario, caplog):
    sources = [new_class_scenario.new_train, new_class_scenario.old_train]
    table = CandidateSetTable([s.declaration for s in sources], new_class_scenario.transition)
    with caplog.at_level("WARNING", logger="incremental.data.class_weights"):
        weights = class_weights(sources, table)
    assert "weighs nothing" not in caplog.text
    classes = new_class_scenario.transition.student_classes
    assert weights.shape == (len(classes),)
    # Old images declare bags absent: their background is a singleton and weighs little.
    assert weights[classes.index("background")] < 1.0
    counts = {c: 0 for c in classes}
    for row, source in enumerate(sources):
        for i in range(len(source)):
            for value, n in zip(*np.unique(source.load(i)[1], return_counts=True), strict=True):
                members = table.candidate_set(table.dataset_names[row], int(value))
                if len(members) == 1:
                    counts[next(iter(members))] += n
    seen = {c: n for c, n in counts.items() if n}
    # The lower median for an even count, as torch.median.
    median = float(np.sort(list(seen.values()))[(len(seen) - 1) // 2])
    for c, n in seen.items():
        assert math.isclose(weights[classes.index(c)], median / n, rel_tol=1e-5), c


def test_loss_terms_reach_the_logs_at_logging_steps(tmp_path, new_class_scenario):
    # Terms are logged only at the steps Lightning writes (every 10): 12 steps -> step 9.
    import pandas as pd

    config = TrainConfig(epochs=1, epoch_size=48, batch_size=4, progress_bar=False)
    teacher = train_old_model(new_class_scenario, {"name": "tiny-unet"}, FAST, 0, tmp_path / "o")
    train_step(new_class_scenario, teacher.model, {"name": "tiny-unet"},
               create_strategy("candidate-sets"), config, 0, tmp_path / "s")  # fmt: skip
    (metrics,) = (tmp_path / "s" / "logs").rglob("metrics.csv")
    logged = pd.read_csv(metrics).dropna(subset=["train/ce"])
    assert list(logged["step"]) == [9]
    assert logged["train/kd"].notna().all() and logged["train/loss"].notna().all()


def test_replay_adds_old_images_instead_of_taking_the_new_ones_place(new_class_scenario):
    """With replay (and for the oracle), each epoch has as many new samples as without replay,
    plus the old ones at their share."""
    from incremental.workflow import epoch_size, step_data

    config = TrainConfig(epoch_size=40)
    plain = create_strategy("candidate-sets")
    replay = create_strategy("candidate-sets+replay")
    oracle = create_strategy("joint")
    for strategy in (replay, oracle):
        data = step_data(new_class_scenario, strategy)
        size = epoch_size(data, strategy, config)
        assert data.shares is not None and len(data.shares) == 2
        new_samples = round(data.shares[0] / sum(data.shares) * size)
        assert new_samples == epoch_size(step_data(new_class_scenario, plain), plain, config)
    assert epoch_size(step_data(new_class_scenario, plain), plain, TrainConfig()) == len(
        new_class_scenario.new_train
    )


def test_the_oracle_without_replay_sees_the_new_images_alone_fully_labeled(split_scenario):
    """``joint-distilled`` with ``replay: false`` (``studies/evidence.yaml``): the new images,
    with every class labeled, and no old image; the distillation stays, so it differs from
    candidate sets without replay only in the labels."""
    from incremental.workflow import step_data

    strategy = create_strategy("joint-distilled", {"replay": False})
    data = step_data(split_scenario, strategy)
    assert data.sources == [split_scenario.new_train_full] and data.shares is None
    assert data.num_new == 1 and strategy.uses_teacher
    # Full labels: the remainder (never labeled on the partial new images) is a class there.
    child, remainder = "sneaker", "footwear_other"
    table = CandidateSetTable([s.declaration for s in data.sources], split_scenario.transition)
    declared = table.declared[0].nonzero().flatten().tolist()
    sets = [table.candidate_set(table.dataset_names[0], value) for value in declared]
    singletons = {next(iter(members)) for members in sets if len(members) == 1}
    assert {child, remainder} <= singletons
    with_replay = step_data(split_scenario, create_strategy("joint-distilled"))
    assert with_replay.sources == [split_scenario.new_train_full, split_scenario.old_train_full]


def _is_channels_last(model: torch.nn.Module) -> list[bool]:
    return [
        p.is_contiguous(memory_format=torch.channels_last)
        for p in model.parameters()
        if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1
    ]


def test_channels_last_trains_the_same_model_up_to_rounding(tmp_path, new_class_scenario):
    """``channels_last`` (the default) lays the weights out channels-last while training and
    scoring; files are written contiguous, and the scores match the contiguous run's."""
    spec = {"name": "tiny-unet"}
    runs = {}
    for layout in (True, False):
        config = TrainConfig(**{**FAST.__dict__, "channels_last": layout})
        runs[layout] = train_old_model(new_class_scenario, spec, config, 0, tmp_path / str(layout))
        flags = _is_channels_last(runs[layout].model)
        assert flags and all(flags) == layout and any(flags) == layout
    path = save_model_file(
        tmp_path / "m.pt", runs[True].model, spec, new_class_scenario.transition.old_classes
    )
    state = torch.load(path, weights_only=False)["state_dict"]
    assert all(t.is_contiguous() for t in state.values())
    assert runs[True].scores["miou_all"] == pytest.approx(runs[False].scores["miou_all"], abs=0.01)
