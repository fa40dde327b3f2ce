"""The embedded Fashion-scenes benchmark for both cases (DESIGN §4), as configuration.

A scenario config names the transition (old classes, added classes, splits), which
Fashion-MNIST classes make up each student class, and how scenes are drawn. Old images never
show an added class; new images always show a step class (new class or split child), and
every other item on them is unlabeled. ``sibling_rate`` sets how often the split parent's
other kinds (the siblings that tell the model what is *not* the child) appear on new images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from incremental.constants import IGNORE_INDEX
from incremental.data.fashion.mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from incremental.data.fashion.streams import SceneStream, StreamSource
from incremental.data.scenario import Scenario
from incremental.labels import IGNORE, UNLABELED, LabelDeclaration, Transition


@dataclass
class FashionScenarioConfig:
    """Parameters of a Fashion-scenes scenario (see experiments/configs/scenario/)."""

    name: str
    transition: dict[str, Any]
    #: student class -> Fashion-MNIST class names (``background`` takes none).
    items: dict[str, list[str]]
    image_size: int = 64
    items_per_scene: tuple[int, int] = (2, 4)
    item_scale: tuple[float, float] = (0.8, 1.5)
    #: step-class items on each new image.
    new_items_per_scene: tuple[int, int] = (1, 2)
    #: share of the other items on new images that are siblings of a split child (None: no
    #: preference, items drawn uniformly over classes).
    sibling_rate: float | None = None
    sizes: dict[str, int] = field(
        default_factory=lambda: {"old_train": 600, "new_train": 300, "val": 150, "test": 300}
    )
    #: "auto" uses the 60k train split of Fashion-MNIST too when installed.
    fashion_mnist: str = "auto"
    data_seed: int = 0


_STREAMS = {"old_train": 1, "new_train": 2, "val": 3, "test": 4, "old_val": 5}


def build_fashion_scenario(config: FashionScenarioConfig | Mapping[str, Any]) -> Scenario:
    """A scenario's datasets (deterministic for ``data_seed``): checked now, each stream's
    scenes drawn when first read (about 2 ms a scene; see :mod:`.streams`)."""
    if not isinstance(config, FashionScenarioConfig):
        config = FashionScenarioConfig(**dict(config))
    transition = Transition.from_config(config.transition)
    fmnist = load_fashion_mnist(config.fashion_mnist)
    ids = _item_ids(config, transition)
    step_classes = [c for c in transition.student_classes if c in transition.step_classes]
    added = set(transition.new_classes)
    old_image_classes = [c for c in ids if c not in added]
    student = transition.student_classes

    def scenes(stream: str, pool: str, required: list[str], optional: list[str], weights=None):
        req_ids = [i for c in required for i in ids[c]]
        opt_ids = [i for c in optional for i in ids[c]]
        if weights is None:  # each class equally likely, whatever its number of FMNIST kinds
            weights = [1.0 / len(ids[c]) for c in optional for _ in ids[c]]
        return SceneStream(
            config,
            stream,
            _size(config, stream),
            config.data_seed * 100 + _STREAMS[stream],
            pool,
            req_ids,
            opt_ids,
            weights,
            tuple(config.new_items_per_scene) if required else (0, 0),
            fmnist.source,
        )

    # Drawn when first read (streams.py): a process that never reads the old images never
    # draws them.
    # Old images: every class but the added ones; fully labeled in old classes.
    old_scenes = scenes("old_train", "train", [], old_image_classes)
    old_val_scenes = scenes("old_val", "val", [], old_image_classes)
    # New images: a step class on top of other items (siblings at sibling_rate).
    others = [c for c in ids if c not in step_classes]
    new_scenes = scenes(
        "new_train", "train", step_classes, others, _other_weights(config, transition, ids, others)
    )
    # Evaluation: everything may appear.
    every = list(ids)
    val_scenes = scenes("val", "val", [], every)
    test_scenes = scenes("test", "test", [], every)

    # Old scenes are drawn without the added classes: they say so, and a replayed old
    # "background" is background, not {background, bag}.
    old_decl = LabelDeclaration(
        "old_train",
        {**{k: c for k, c in enumerate(transition.old_classes)}, IGNORE_INDEX: IGNORE},
        vocabulary="old",
        absent=transition.new_classes,
    )
    new_values = {0: UNLABELED, IGNORE_INDEX: IGNORE}
    new_values.update({i + 1: c for i, c in enumerate(step_classes)})
    new_decl = LabelDeclaration("new_train", new_values, vocabulary="student", exhaustive=True)
    full_values = {**{k: c for k, c in enumerate(student)}, IGNORE_INDEX: IGNORE}

    def full(name: str) -> LabelDeclaration:
        return LabelDeclaration(name, full_values, vocabulary="student")

    old_lut = _lut(ids, {c: k for k, c in enumerate(transition.old_classes)}, transition, "old")
    old_test_lut = old_lut.copy()
    for cls in transition.new_classes:
        old_test_lut[[fid + 1 for fid in ids[cls]]] = IGNORE_INDEX
    student_lut = _lut(ids, {c: k for k, c in enumerate(student)}, transition, "student")
    new_lut = np.zeros(256, dtype=np.uint8)  # unlabeled unless a step class
    for i, c in enumerate(step_classes):
        for fid in ids[c]:
            new_lut[fid + 1] = i + 1
    return Scenario(
        name=config.name,
        transition=transition,
        old_train=StreamSource(old_scenes, old_lut, old_decl),
        new_train=StreamSource(new_scenes, new_lut, new_decl),
        val=StreamSource(val_scenes, student_lut, full("val")),
        test=StreamSource(test_scenes, student_lut, full("test")),
        old_val=StreamSource(old_val_scenes, old_lut, old_decl),
        # The old model's score on the step's test scenes: the added classes (never shown to it,
        # outside its vocabulary) are ignored there, the split children count as their parent.
        old_test=StreamSource(test_scenes, old_test_lut, old_decl),
        old_train_full=StreamSource(old_scenes, student_lut, full("old_train_full")),
        new_train_full=StreamSource(new_scenes, student_lut, full("new_train_full")),
        info={
            "fashion_mnist": fmnist.source,
            "image_size": config.image_size,
            "sibling_rate": config.sibling_rate,
            **{f"n_{k}": int(v) for k, v in config.sizes.items()},
        },
    )


def _size(config: FashionScenarioConfig, stream: str) -> int:
    """Scenes in ``stream``; ``old_val`` defaults to the ``val`` size."""
    key = stream if stream in config.sizes else "val" if stream == "old_val" else stream
    if key not in config.sizes:
        raise ValueError(
            f"scenario {config.name!r}: sizes.{key} missing; give old_train, new_train, val, test"
        )
    return int(config.sizes[key])


def _item_ids(config: FashionScenarioConfig, transition: Transition) -> dict[str, list[int]]:
    """Student class -> Fashion-MNIST ids; validated against the transition."""
    known = {name: i for i, name in enumerate(FASHION_MNIST_CLASSES)}
    student = set(transition.student_classes)
    ids: dict[str, list[int]] = {}
    used: dict[int, str] = {}
    for cls, names in config.items.items():
        if cls not in student:
            raise ValueError(
                f"scenario {config.name!r}: items.{cls}: not a student class; student classes: "
                f"{list(transition.student_classes)}"
            )
        if not names:
            raise ValueError(f"scenario {config.name!r}: items.{cls}: empty list")
        ids[cls] = []
        for name in names:
            if name not in known:
                raise ValueError(
                    f"scenario {config.name!r}: items.{cls}: unknown Fashion-MNIST class "
                    f"{name!r}; known: {list(FASHION_MNIST_CLASSES)}"
                )
            if known[name] in used:
                raise ValueError(
                    f"scenario {config.name!r}: Fashion-MNIST class {name!r} is used by both "
                    f"{used[known[name]]!r} and {cls!r}"
                )
            used[known[name]] = cls
            ids[cls].append(known[name])
    missing = [c for c in transition.student_classes[1:] if c not in ids]
    if missing:
        raise ValueError(
            f"scenario {config.name!r}: items: no Fashion-MNIST classes for {missing} "
            "(every student class but the background needs some)"
        )
    return ids


def _other_weights(
    config: FashionScenarioConfig,
    transition: Transition,
    ids: Mapping[str, Sequence[int]],
    others: Sequence[str],
) -> list[float] | None:
    """Weights of the unlabeled items on new images; siblings get ``sibling_rate`` in total."""
    if config.sibling_rate is None:
        return None
    if not 0.0 <= config.sibling_rate <= 1.0:
        raise ValueError(f"scenario {config.name!r}: sibling_rate must be in [0, 1]")
    siblings = {s.remainder for s in transition.splits}
    if not siblings & set(others):
        raise ValueError(f"scenario {config.name!r}: sibling_rate needs a split")
    n_sib = sum(len(ids[c]) for c in others if c in siblings)
    n_rest = sum(len(ids[c]) for c in others if c not in siblings)
    weights = []
    for c in others:
        for _ in ids[c]:
            if c in siblings:
                weights.append(config.sibling_rate / n_sib)
            else:
                weights.append((1.0 - config.sibling_rate) / max(n_rest, 1))
    return weights


def _lut(
    ids: Mapping[str, Sequence[int]],
    index: Mapping[str, int],
    transition: Transition,
    vocabulary: str,
) -> np.ndarray:
    """Lookup table from item-map value + 1 (0 = background) to a mask value."""
    lut = np.zeros(256, dtype=np.uint8)
    parents = transition.parent_classes()
    for cls, fids in ids.items():
        if vocabulary == "old" and cls in transition.new_classes:
            continue  # old images never show added classes; nothing to map
        name = parents[cls] if vocabulary == "old" else cls
        for fid in fids:
            lut[fid + 1] = index[name]
    return lut
