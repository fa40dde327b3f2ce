"""A scenario from the user's own dataset folders and, optionally, their trained model.

The config (a scenario YAML with ``kind: folders``, or an entry of an experiment's
``scenarios:``)::

    kind: folders
    name: my-step
    transition:                     # incremental.labels.Transition.from_config
      old_classes: [background, A, B, C, D, E, F]   # optional with a model file
      add: [G]
    old_model: {path: old.pt}       # incremental.models.load_existing_model; optional
    old_train: old/dataset.yaml     # one YAML or a list; old vocabulary
    new_train: [new_g/dataset.yaml] # one YAML or a list; labeled for the step's classes
    val: val/dataset.yaml           # complete labels in the student's classes
    test: test/dataset.yaml         # optional (default: val, reported in results)
    old_val: old_val/dataset.yaml   # only needed to train the old model here

Relative paths are relative to ``root`` (default: the folder of the YAML that holds the
scenario). Every dataset is checked as ``python -m incremental check`` would, against the
transition, before anything trains.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from incremental.data.folders.dataset import FolderDataset
from incremental.data.scenario import Scenario
from incremental.labels import Transition
from incremental.models.existing import ExistingModel, load_existing_model

__all__ = ["FOLDER_SCENARIO_KEYS", "build_folder_scenario"]

log = logging.getLogger(__name__)

FOLDER_SCENARIO_KEYS = (
    "name",
    "root",
    "transition",
    "old_model",
    "old_train",
    "new_train",
    "val",
    "test",
    "old_val",
    "old_train_full",
    "new_train_full",
)


def build_folder_scenario(config: Mapping[str, Any]) -> Scenario:
    """The one-step scenario of a ``kind: folders`` config (see the module docstring).

    Raises:
        ValueError: an unknown or missing key, a transition that disagrees with the model's
            classes, or a model that does not fit (naming the key and the allowed values).
        DatasetError: every problem of every dataset folder.
    """
    name = str(config.get("name") or "folders")
    unknown = sorted(set(config) - set(FOLDER_SCENARIO_KEYS))
    if unknown:
        raise ValueError(
            f"scenario {name!r}: unknown key(s) {unknown}; allowed: {list(FOLDER_SCENARIO_KEYS)}"
        )
    for key in ("transition", "new_train", "val"):
        if not config.get(key):
            raise ValueError(f"scenario {name!r}: missing key '{key}'")
    root = Path(str(config.get("root") or "."))
    transition_cfg = dict(config["transition"])
    teacher = _teacher(config, root, transition_cfg.get("old_classes"), name)
    if "old_classes" not in transition_cfg:
        if teacher is None or teacher.classes is None:
            raise ValueError(
                f"scenario {name!r}: transition.old_classes is missing; list the old model's "
                "classes in channel order (only a model file of ours records them)"
            )
        transition_cfg["old_classes"] = list(teacher.classes)
    try:
        transition = Transition.from_config(transition_cfg)
    except ValueError as error:
        raise ValueError(f"scenario {name!r}: {error}") from None
    if config.get("old_train") is None:
        raise ValueError(
            f"scenario {name!r}: missing key 'old_train' (the old images, for replay and for "
            "the old model's training); give the folders the old model was trained on"
        )
    if teacher is None and not config.get("old_val"):
        raise ValueError(
            f"scenario {name!r}: without 'old_model', the old model is trained here and needs "
            "'old_val' (validation images in the old classes)"
        )

    def datasets(key: str) -> tuple[FolderDataset, ...]:
        value = config[key]
        paths = [value] if isinstance(value, str) else list(value)
        if not paths or not all(isinstance(p, str) and p for p in paths):
            raise ValueError(f"scenario {name!r}: '{key}' must be a YAML path or a list of them")
        return tuple(FolderDataset(root / p, transition=transition) for p in paths)

    def single(key: str) -> FolderDataset | None:
        if not config.get(key):
            return None
        found = datasets(key)
        if len(found) != 1:
            raise ValueError(f"scenario {name!r}: '{key}' takes one dataset YAML")
        return found[0]

    info: dict[str, Any] = {}
    test = single("test")
    if test is None:
        log.warning("scenario %r: no 'test' dataset; test scores are on the validation set", name)
        info["test"] = "val"
    val = single("val")
    assert val is not None
    return Scenario(
        name=name,
        transition=transition,
        old_train=datasets("old_train"),
        new_train=datasets("new_train"),
        val=val,
        test=test if test is not None else val,
        old_val=single("old_val"),
        old_train_full=single("old_train_full"),
        new_train_full=single("new_train_full"),
        info=info,
        teacher=teacher,
    )


def _teacher(
    config: Mapping[str, Any], root: Path, old_classes: Sequence[str] | None, name: str
) -> ExistingModel | None:
    if not config.get("old_model"):
        return None
    if not isinstance(config["old_model"], Mapping):
        raise ValueError(
            f"scenario {name!r}: old_model must be a mapping such as {{path: model.pt}}, got "
            f"{config['old_model']!r}"
        )
    try:
        return load_existing_model(
            config["old_model"], root, list(old_classes) if old_classes else None
        )
    except ValueError as error:
        raise ValueError(f"scenario {name!r}: {error}") from None
