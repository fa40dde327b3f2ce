"""The audit finds a new class planted, unlabeled, in old images, and ranks by its area."""

from __future__ import annotations

import csv
import textwrap

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from incremental.__main__ import main
from incremental.audit import audit_dataset
from incremental.labels import Split, TeacherMap, Transition
from incremental.models import save_model_file

TRANSITION = Transition(("background", "coat"), new_classes=("bag",))
#: Side of the red "bag" square planted in old image i (0: none); labeled background.
PLANTED = {1: 4, 3: 12, 4: 8, 6: 16}
COATS = (2, 3, 5)  # blue squares, labeled coat: known, never suspect


@pytest.fixture
def old_dataset(tmp_path):
    """Dark noise images; blue coats labeled 1; red bags planted but labeled background (0)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "old"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(8):
        image = rng.integers(0, 60, (40, 48, 3), dtype=np.uint8)
        mask = np.zeros((40, 48), dtype=np.uint8)
        if i in COATS:
            image[20:30, 30:40] = (0, 0, 255)
            mask[20:30, 30:40] = 1
        if i in PLANTED:
            side = PLANTED[i]
            image[2 : 2 + side, 2 : 2 + side] = (255, 0, 0)
        Image.fromarray(image).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask, mode="L").save(root / "masks" / f"{i:02d}.png")
    labels = {"vocabulary": "old", "values": {0: "background", 1: "coat"}}
    (root / "old.yaml").write_text(yaml.safe_dump({"labels": labels}))
    return root / "old.yaml"


@pytest.fixture
def colour_model(tmp_path, monkeypatch):
    """A model file whose network is a 1x1 conv: red -> bag, blue -> coat, dark -> background
    (inputs are ImageNet-normalised, so red is R ~ 2.2, dark R < -1)."""
    (tmp_path / "colour_models.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def build():
                conv = nn.Conv2d(3, 3, 1)
                with torch.no_grad():
                    conv.weight.zero_()
                    conv.bias.copy_(torch.tensor([0.0, 2.0, 2.0]))
                    conv.weight[1, 2] = 3.0  # coat from blue
                    conv.weight[2, 0] = 3.0  # bag from red
                return conv
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import colour_models

    spec = {"factory": "colour_models:build", "factory_kwargs": {}}
    return save_model_file(
        tmp_path / "model.pt",
        colour_models.build(),
        spec,
        TRANSITION.student_classes,
        metadata={"transition": TRANSITION.to_config()},
    )


def test_planted_bags_are_found_and_ranked_by_area(tmp_path, old_dataset, colour_model):
    out = tmp_path / "audit"
    rows = audit_dataset(colour_model, old_dataset, out, top=3, allow_factory=True)
    ranked = [int(r.image.split("/")[-1][:2]) for r in rows]
    assert ranked == sorted(PLANTED, key=lambda i: -PLANTED[i])  # every planted one, no other
    assert [r.pixels for r in rows] == sorted((s * s for s in PLANTED.values()), reverse=True)
    assert rows[0].image_share == pytest.approx(16 * 16 / (40 * 48))
    assert all(r.cls == "bag" and r.hidden_under == "background" for r in rows)
    with open(out / "audit.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["rank"]) for r in table] == [1, 2, 3, 4]
    thumbnails = sorted((out / "thumbnails").glob("*.png"))
    assert len(thumbnails) == 3 and thumbnails[0].name == "0001_06_bag.png"
    pair = np.asarray(Image.open(thumbnails[0]))
    assert pair.shape == (40, 96, 3) and tuple(pair[5, 48 + 5]) != tuple(pair[5, 5])


def test_cli_refuses_to_overwrite_and_needs_the_factory_allowed(
    tmp_path, old_dataset, colour_model
):
    out = tmp_path / "audit"
    args = ["audit", "--model", str(colour_model), "--dataset", str(old_dataset), "--out", str(out)]
    assert main(args) == 2  # the network is user code: not built without --allow-factory
    assert main([*args, "--allow-factory"]) == 0
    assert main([*args, "--allow-factory"]) == 2  # audit.csv exists
    assert main([*args, "--allow-factory", "--overwrite", "--top", "1"]) == 0
    assert len(list((out / "thumbnails").glob("*.png"))) == 1


def test_a_model_without_transition_is_refused(tmp_path, old_dataset, colour_model):
    from incremental.models import load_model_file

    loaded = load_model_file(colour_model)
    torch.save(
        {**torch.load(colour_model, weights_only=True), "metadata": {}}, tmp_path / "bare.pt"
    )
    assert loaded.metadata["transition"]
    with pytest.raises(ValueError, match="records no transition"):
        audit_dataset(tmp_path / "bare.pt", old_dataset, tmp_path / "a", allow_factory=True)


def test_split_children_hide_under_their_parent():
    transition = Transition(
        ("background", "car"), new_classes=("bag",), splits=(Split.of("car", ["police_car"]),)
    )
    assert TeacherMap(transition).hiding_places() == {"bag": "background", "police_car": "car"}
