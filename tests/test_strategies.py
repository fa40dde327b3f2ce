"""Strategies as compositions: presets pinned to their pieces, explicit settings win, and a
strategy added in a new file trains without an edit anywhere else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from incremental.labels import LabelReading
from incremental.strategies import (
    FamilyContrast,
    LocalPOD,
    ParentSetsDistilledOnly,
    PartialCE,
    PseudoLabel,
    Refine,
    SelfTrainWithinSets,
    SetKD,
    StepContext,
    Strategy,
    create_strategy,
    list_strategies,
    register_strategy,
    replay_defaults,
    strategy_settings,
)


@pytest.mark.parametrize("name", list_strategies())
def test_every_preset_builds(name):
    strategy = create_strategy(name)
    assert isinstance(strategy, Strategy) and strategy.name == name
    assert strategy.describe()["name"] == name


PINNED = {
    "finetune": ((), (PartialCE(),), "random", LabelReading("background", "representative")),
    "finetune-ignore": ((), (PartialCE(),), "random", LabelReading("ignore", "representative")),
    "freeze": ((), (PartialCE(),), "random", LabelReading("background", "representative")),
    "mib": (
        (),
        (PartialCE(normalization="all_pixels"), SetKD(10.0, normalization="old_classes")),
        "mass_preserving",
        LabelReading(split_aware=False),
    ),
    "plop": (
        (PseudoLabel(0.001, image_factor="plop"),),
        (
            PartialCE(normalization="all_pixels"),
            LocalPOD(0.01, 0.0005, normalize=False, schedule=True, layers="plop"),
        ),
        "mass_preserving",
        LabelReading(split_aware=False),
    ),
    "plop-normalised": (
        (PseudoLabel(0.001, image_factor="share"),),
        (PartialCE(), LocalPOD(0.01, 0.0, normalize=True, schedule=False, layers="stages")),
        "mass_preserving",
        LabelReading(split_aware=False),
    ),
    "candidate-sets": (
        (Refine(0.7),),
        (PartialCE(), SetKD(1.0, conditioning="label_consistent")),
        "mass_preserving",
        LabelReading(),
    ),
    "candidate-sets-lc": (
        (Refine(0.7),),
        (PartialCE(), SetKD(1.0, conditioning="label")),
        "mass_preserving",
        LabelReading(),
    ),
    "joint": ((), (PartialCE(),), "mass_preserving", LabelReading(full_labels=True)),
    "joint-distilled": (
        (),
        (PartialCE(), SetKD(1.0, conditioning="label_consistent")),
        "mass_preserving",
        LabelReading(full_labels=True),
    ),
}


@pytest.mark.parametrize("name", list(PINNED))
def test_preset_pieces(name):
    """Each preset is exactly these transforms, terms, initialisation and label reading."""
    transforms, terms, init, reading = PINNED[name]
    strategy = create_strategy(name)
    assert strategy.transforms == transforms
    assert strategy.terms == terms
    assert (strategy.init, strategy.reading) == (init, reading)
    assert strategy.freeze == (name == "freeze")
    assert strategy.replay == name.startswith("joint")


def test_every_preset_is_pinned():
    assert set(PINNED) == set(list_strategies())


def test_user_setting_beats_preset():
    mib = create_strategy("mib")
    assert mib.terms[1].weight == 10.0
    assert create_strategy("mib", {"kd_weight": 2.0}).terms[1].weight == 2.0
    # +replay never undoes an explicit replay=False...
    assert create_strategy("candidate-sets+replay", {"replay": False}).replay is False
    assert create_strategy("candidate-sets+replay").replay is True
    # ...and the cross-entropy options apply to any strategy with a cross-entropy term.
    focal = create_strategy("plop", {"focal_gamma": 2.0, "class_weights": "inverse_frequency"})
    assert focal.terms[0] == PartialCE("inverse_frequency", 2.0, normalization="all_pixels")
    assert focal.class_weighting == "inverse_frequency"


def test_replay_has_defaults_of_its_own():
    """Candidate sets replay with the split-evidence combination; the user's settings (a null
    included) win, and only replaying runs take it."""
    combination = (
        (Refine(0.7), SelfTrainWithinSets(0.8)),
        (
            PartialCE(),
            SetKD(1.0, conditioning="label_consistent"),
            FamilyContrast(0.5),
        ),
    )
    for replayed in (create_strategy("candidate-sets+replay"),
                     create_strategy("candidate-sets", {"replay": True})):  # fmt: skip
        assert (replayed.transforms, replayed.terms) == combination
    plain = create_strategy("candidate-sets")
    assert create_strategy("candidate-sets+replay", {"replay": False}) == plain
    off = create_strategy("candidate-sets+replay", {"replay": None})  # null: off, as false
    assert off == plain and off.replay is False  # a boolean: results.csv and resume read it
    with pytest.raises(ValueError, match=r"setting replay: expected true, false or null, got 1"):
        create_strategy("candidate-sets", {"replay": 1})
    # A setting that needs a replay default (self-training's EMA) is taken with replay.
    for name, settings in (("candidate-sets+replay", {}), ("candidate-sets", {"replay": True})):
        ema = create_strategy(name, {**settings, "self_training_ema": 0.99})
        assert ema.transforms[1] == SelfTrainWithinSets(0.8, ema_decay=0.99)
    former = create_strategy("candidate-sets+replay", {"contrast": None, "self_training": None})
    assert (former.transforms, former.terms) == (plain.transforms, plain.terms)
    assert create_strategy("candidate-sets+replay", {"contrast": 1.0}).terms[2] == FamilyContrast(1)
    assert replay_defaults("candidate-sets+replay") == {"contrast": 0.5, "self_training": 0.8}
    assert strategy_settings("candidate-sets+replay")["contrast"] == 0.5
    assert strategy_settings("candidate-sets")["contrast"] is None
    assert replay_defaults("mib") == {}
    assert create_strategy("joint") == create_strategy("joint+replay")


def test_replay_defaults_must_be_settings():
    with pytest.raises(ValueError, match=r"replay_defaults \['kd_wieght'\] are not settings"):
        register_strategy("typo-strategy", replay_defaults={"kd_wieght": 1.0})(
            lambda kd_weight=1.0: create_strategy("mib")
        )
    assert "typo-strategy" not in list_strategies()


def test_registering_the_same_factory_again_keeps_its_replay_defaults():
    """A reloaded module registers the same factory again: allowed, unless its replay defaults
    change, which would silently change what `+replay` trains."""
    from incremental.strategies import registry

    def factory(weight: float = 0.1) -> Strategy:
        return create_strategy("mib")

    register_strategy("test-twice", replay_defaults={"weight": 0.2})(factory)
    try:
        register_strategy("test-twice", replay_defaults={"weight": 0.2})(factory)
        with pytest.raises(ValueError, match=r"'test-twice' is registered again with other"):
            register_strategy("test-twice", replay_defaults={"weight": 0.3})(factory)
        assert replay_defaults("test-twice") == {"weight": 0.2}
    finally:
        registry._FACTORIES.pop("test-twice")
        registry._REPLAY_DEFAULTS.pop("test-twice")


def test_a_reloaded_module_registers_its_strategy_again(tmp_path, monkeypatch):
    """``importlib.reload`` defines the factory again (a new function object): allowed with
    the same replay defaults, refused with others (they would change what `+replay` trains)."""
    import importlib

    from incremental.strategies import registry

    source = (
        "from incremental.strategies import create_strategy, register_strategy\n"
        "@register_strategy('test-reloaded', replay_defaults={{'kd_weight': {}}})\n"
        "def reloaded(kd_weight: float = 10.0):\n"
        "    return create_strategy('mib', {{'kd_weight': kd_weight}})\n"
    )
    module_file = tmp_path / "reloaded_strategy.py"
    module_file.write_text(source.format(2.0))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = importlib.import_module("reloaded_strategy")
        importlib.reload(module)
        assert create_strategy("test-reloaded+replay").terms[1].weight == 2.0
        module_file.write_text(source.format(3.0))
        with pytest.raises(ValueError, match=r"'test-reloaded' is registered again with other"):
            importlib.reload(module)
    finally:
        registry._FACTORIES.pop("test-reloaded", None)
        registry._REPLAY_DEFAULTS.pop("test-reloaded", None)
        monkeypatch.delitem(__import__("sys").modules, "reloaded_strategy", raising=False)


def test_another_lambda_or_closure_under_a_taken_name_is_refused():
    """Lambdas and closures share their qualified names while being other factories: only a
    module-level function defined again (a reload) counts as the same factory."""
    from incremental.strategies import registry

    def make(weight):
        def factory(kd_weight: float = weight) -> Strategy:
            return create_strategy("mib", {"kd_weight": kd_weight})

        return factory

    for first, second in ((lambda: create_strategy("mib"), lambda: create_strategy("finetune")),
                          (make(1.0), make(5.0))):  # fmt: skip
        register_strategy("test-taken")(first)
        try:
            with pytest.raises(ValueError, match=r"'test-taken' is registered twice"):
                register_strategy("test-taken")(second)
        finally:
            registry._FACTORIES.pop("test-taken")
            registry._REPLAY_DEFAULTS.pop("test-taken")


def test_replay_defaults_hold_when_the_factory_replays_by_itself():
    """A factory that replays by itself takes its replay defaults with or without `+replay`:
    both are the run (name, replay=True), so both must train alike; `replay: false` drops
    both."""
    from incremental.strategies import registry

    def oracle(kd_weight: float = 0.0) -> Strategy:
        return create_strategy("joint", {"kd_weight": kd_weight})

    register_strategy("test-self-replaying", replay_defaults={"kd_weight": 1.0})(oracle)
    try:
        plain = create_strategy("test-self-replaying")
        assert plain == create_strategy("test-self-replaying+replay") and plain.replay
        assert [type(term) for term in plain.terms] == [PartialCE, SetKD]
        off = create_strategy("test-self-replaying", {"replay": False})
        assert not off.replay and [type(term) for term in off.terms] == [PartialCE]
    finally:
        registry._FACTORIES.pop("test-self-replaying")
        registry._REPLAY_DEFAULTS.pop("test-self-replaying")


def test_settings_are_listed():
    assert strategy_settings("mib") == {
        "kd_weight": 10.0,
        "temperature": 1.0,
        "replay": None,
        "old_share": None,
        "freeze": None,
        "class_weights": None,
        "focal_gamma": None,
    }


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown strategy 'mibb'"):
        create_strategy("mibb")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['kd_wieght'\]"):
        create_strategy("mib", {"kd_wieght": 1})
    with pytest.raises(ValueError, match="distillation: 'soft'"):
        create_strategy("candidate-sets", {"distillation": "soft"})
    with pytest.raises(ValueError, match="only suffix"):
        create_strategy("mib+fast")
    with pytest.raises(ValueError, match="old_share"):
        create_strategy("mib", {"old_share": 1.0})
    with pytest.raises(ValueError, match="class_weights: 'median'"):
        create_strategy("mib", {"class_weights": "median"})
    with pytest.raises(ValueError, match="needs fully labeled data"):
        Strategy("x", init="scratch")


def test_strategy_settings_add_their_pieces():
    """The oracle's distillation and candidate sets' parent-set switch are pieces, not flags."""
    assert create_strategy("joint", {"kd_weight": 0.5}).terms == (
        PartialCE(),
        SetKD(0.5, conditioning="label_consistent"),
    )
    assert create_strategy("joint", {"kd_weight": 0.5}).uses_teacher
    assert create_strategy("candidate-sets", {"parent_ce": False}).transforms == (
        Refine(0.7),
        ParentSetsDistilledOnly(),
    )
    averaged = create_strategy("candidate-sets", {"self_training": 0.8, "self_training_ema": 0.99})
    assert averaged.transforms[1] == SelfTrainWithinSets(0.8, ema_decay=0.99)
    assert averaged.ema_decay == 0.99 and create_strategy("candidate-sets").ema_decay is None
    with pytest.raises(ValueError, match="self_training_ema decides self-training, which is off"):
        create_strategy("candidate-sets", {"self_training_ema": 0.99})


def test_uses_teacher():
    assert not create_strategy("finetune").uses_teacher
    assert create_strategy("candidate-sets").uses_teacher
    assert create_strategy("plop").uses_teacher and create_strategy("plop").needs_features
    assert not create_strategy("joint").uses_teacher
    assert not create_strategy(
        "candidate-sets", {"distillation": "none", "refine": False}
    ).uses_teacher


def _context(gen: torch.Generator, num_classes: int = 4) -> StepContext:
    logits = torch.randn(2, num_classes, 3, 3, generator=gen, requires_grad=True)
    labels = torch.randint(0, num_classes, (2, 3, 3), generator=gen)
    candidates = torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).bool()
    return StepContext(
        logits=logits,
        candidates=candidates,
        informative=torch.ones(2, 3, 3, dtype=torch.bool),
        teacher_sets=torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]]).bool(),
        representatives=torch.arange(3),
        teacher_logits=torch.randn(2, 3, 3, 3, generator=gen),
    )


def test_loss_terms_compose_in_order():
    """Transforms run before the terms, in order; a term reads the transformed sets."""
    step = _context(torch.Generator().manual_seed(0))
    class_0 = torch.zeros_like(step.candidates)
    class_0[:, 0] = True

    @dataclass(frozen=True)
    class Relabel:  # every pixel labeled class 0
        needs_teacher: ClassVar[bool] = False
        needs_features: ClassVar[bool] = False

        def __call__(self, s: StepContext) -> StepContext:
            return s.replace(candidates=class_0)

    strategy = Strategy("x", transforms=(Relabel(),), terms=(PartialCE(),))
    expected = torch.nn.functional.cross_entropy(step.logits, torch.zeros(2, 3, 3).long())
    torch.testing.assert_close(strategy.loss_terms(step)["ce"], expected)
    assert not torch.allclose(Strategy("y").loss_terms(step)["ce"], expected)


# ---------------------------------------------------------------------- a strategy from outside
@dataclass(frozen=True)
class _Entropy:
    """A new loss term, defined outside the library: mean prediction entropy."""

    weight: float = 0.1
    name: ClassVar[str] = "entropy"
    needs_teacher: ClassVar[bool] = False
    needs_features: ClassVar[bool] = False

    def initial_state(self, labels):
        return {}

    def callbacks(self):
        return []

    def describe(self):
        return {"type": "Entropy", "weight": self.weight}

    def __call__(self, step: StepContext) -> torch.Tensor:
        log_p = step.logits.log_softmax(dim=1)
        return -self.weight * (log_p.exp() * log_p).sum(dim=1).mean()


FAST = {"epochs": 1, "batch_size": 4, "progress_bar": False, "limit_train_batches": 2}


@pytest.fixture
def entropy_min_strategy():
    """A strategy registered the way a new file would; unregistered afterwards."""
    from incremental.strategies import registry

    @register_strategy("test-entropy-min")
    def entropy_min(weight: float = 0.1) -> Strategy:
        return Strategy("test-entropy-min", terms=(PartialCE(), _Entropy(weight)))

    yield entropy_min
    registry._FACTORIES.pop("test-entropy-min")
    registry._REPLAY_DEFAULTS.pop("test-entropy-min")


def test_a_new_strategy_file_needs_no_other_edit(entropy_min_strategy, tmp_path):
    """Registering a factory is all it takes: the runner trains it by name, with overrides."""
    import pandas as pd
    import yaml

    from experiments.run import main

    strategy = create_strategy("test-entropy-min", {"weight": 0.5})
    assert strategy.terms[1].weight == 0.5 and strategy.describe()["terms"][1]["type"] == "Entropy"

    config = {
        "scenarios": ["fashion-new-class"],
        "strategies": ["test-entropy-min"],
        "strategy_overrides": {"test-entropy-min": {"weight": 0.5}},
        "wandb": "disabled",
        "jobs": 1,
        "cache_dir": str(tmp_path / "cache"),
        "train_old": FAST,
        "train": FAST,
        "scenario_overrides": {"fashion": {"sizes": {"old_train": 16, "new_train": 8, "val": 4,
                               "test": 4, "old_val": 4}, "image_size": 32,
                               "items_per_scene": [1, 2]}},
    }  # fmt: skip
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main([str(path), "--output", str(tmp_path / "out")]) == 0
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(results["strategy"]) == ["test-entropy-min"]
    assert 0.0 <= results["miou_all"][0] <= 1.0
    assert (
        tmp_path / "out" / "models" / "fashion-new-class" / "test-entropy-min-seed0.pt"
    ).is_file()
