"""Find new classes hiding, unlabeled, in the old data.

Old images were labeled before the step: a bag in them is labeled background (case 1), a police
car is labeled car (case 2). The new model can point at them: :func:`audit_dataset` ranks the old
images by the area labeled as the class a created class hides under (background, the split
parent) that the new model assigns to the created class, and writes a CSV and thumbnails of the
top images so a user can relabel them.

The model file must record its step's transition (the runner's model files do, in their
metadata), which says for every created class which old class it hid under.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from incremental.data.folders import FolderDataset
from incremental.data.transforms import eval_transform
from incremental.devices import resolve_device
from incremental.io import write_atomic
from incremental.labels import TeacherMap, Transition
from incremental.models import load_model_file
from incremental.predict import segment_images

__all__ = ["AuditRow", "audit_dataset"]

#: Colour of the suspect pixels in thumbnails (magenta: rare in natural images).
SUSPECT_COLOUR = np.array([255, 0, 255], dtype=np.float32)


@dataclass
class AuditRow:
    """One (old image, created class) pair.

    Attributes:
        pixels: pixels labeled ``hidden_under`` that the new model assigns to ``cls``.
        image_share: ``pixels`` / image area (the ranking key).
        label_share: ``pixels`` / pixels labeled ``hidden_under``.
        mean_probability: the model's mean probability of ``cls`` over those pixels.
    """

    rank: int
    image: str
    mask: str
    cls: str
    hidden_under: str
    pixels: int
    image_share: float
    label_share: float
    mean_probability: float
    thumbnail: str = ""


def audit_dataset(
    model_path: str | Path,
    dataset: str | Path,
    out: str | Path,
    *,
    classes: list[str] | None = None,
    top: int = 50,
    device: str = "auto",
    overwrite: bool = False,
    allow_factory: bool = False,
    progress: bool = True,
) -> list[AuditRow]:
    """Rank the images of the old ``dataset`` (a dataset YAML) for hidden created classes.

    Writes ``out/audit.csv`` (every image with a suspect pixel, ranked by ``image_share``) and
    ``out/thumbnails/<rank>_<stem>_<class>.png`` for the ``top`` rows: the image, and the image
    with the suspect pixels in magenta. Returns the rows.

    Args:
        classes: created classes to look for (default: all of the step's).

    Raises:
        ValueError: the model file records no transition, an unknown class, a dataset whose
            labels do not use the old classes.
        FileExistsError: ``out`` holds an audit and ``overwrite`` is False.
    """
    device = resolve_device(device)
    model_file = load_model_file(model_path)
    transition = _transition_of(model_file.metadata, model_path)
    places = TeacherMap(transition).hiding_places()
    wanted = list(places) if classes is None else list(classes)
    unknown = [c for c in wanted if c not in places]
    if unknown:
        raise ValueError(
            f"--classes: {unknown} are not created by the step of {model_path}; "
            f"known: {list(places)}"
        )
    out = Path(out)
    if (out / "audit.csv").exists() and not overwrite:
        raise FileExistsError(f"{out / 'audit.csv'} exists; pass --overwrite to replace it")
    source = FolderDataset(dataset, transition=transition)
    finder = _SuspectFinder(
        model_file.build(allow_factory=allow_factory).to(device),
        transition,
        _old_class_lut(source, transition),
        places,
        device,
    )
    rows: list[AuditRow] = []
    with tqdm(total=len(source), desc="audit", disable=not progress, unit="img") as bar:
        for index in range(len(source)):
            image, mask = source.load(index)
            for cls, (suspect, under, probability) in finder(image, mask, wanted).items():
                pixels = int(suspect.sum())
                if pixels == 0:
                    continue
                rows.append(
                    AuditRow(
                        rank=0,
                        image=str(source.image_paths[index]),
                        mask=str(source.mask_paths[index]),
                        cls=cls,
                        hidden_under=places[cls],
                        pixels=pixels,
                        image_share=pixels / mask.size,
                        label_share=pixels / int(under.sum()),
                        mean_probability=float(probability[suspect].mean()),
                    )
                )
            bar.update(1)
    rows.sort(key=lambda r: (-r.image_share, r.image, r.cls))
    (out / "thumbnails").mkdir(parents=True, exist_ok=True)
    for stale in (out / "thumbnails").glob("*.png"):  # a previous audit's (overwrite given)
        stale.unlink()
    # The top rows' suspect maps are recomputed rather than kept for every image: one forward
    # per thumbnail instead of an (H, W) map per row in memory for large datasets.
    for rank, row in enumerate(rows, start=1):
        row.rank = rank
        if rank <= top:
            path = out / "thumbnails" / f"{rank:04d}_{Path(row.image).stem}_{row.cls}.png"
            index = source.image_paths.index(Path(row.image))
            image, mask = source.load(index)
            suspect = finder(image, mask, [row.cls])[row.cls][0]
            _write_thumbnail(image, suspect, path)
            row.thumbnail = str(path)
    _write_csv(rows, out / "audit.csv")
    return rows


class _SuspectFinder:
    """Per created class, the pixels labeled as its hiding place that the model assigns to it."""

    def __init__(self, model, transition, label_of, places, device) -> None:
        self.model, self.label_of, self.device = model, label_of, device
        self.transform = eval_transform()
        self.student = {c: i for i, c in enumerate(transition.student_classes)}
        self.places = {c: transition.old_classes.index(p) for c, p in places.items()}

    @torch.no_grad()
    def __call__(
        self, image: np.ndarray, mask: np.ndarray, classes: list[str]
    ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """class -> (suspect (H, W) bool, labeled-as-hiding-place (H, W) bool, the class's
        probability (H, W) float)."""
        logits = segment_images(self.model, [image], self.transform, self.device)[0]
        probs = logits.softmax(dim=0).cpu().numpy()
        predicted = probs.argmax(axis=0)
        labels = self.label_of[mask]
        found = {}
        for cls in classes:
            under = labels == self.places[cls]
            found[cls] = (under & (predicted == self.student[cls]), under, probs[self.student[cls]])
        return found


def _transition_of(metadata: dict, model_path: str | Path) -> Transition:
    config = metadata.get("transition")
    if not config:
        raise ValueError(
            f"{model_path}: the model file records no transition (written by an older version, "
            "or not by a step); the audit needs to know which old class each new class hid under"
        )
    return Transition.from_config(config)


def _old_class_lut(source: FolderDataset, transition: Transition) -> np.ndarray:
    """(256,) mask value -> old class index; -1 for values that are not one old class."""
    declaration = source.declaration
    if declaration.vocabulary != "old":
        raise ValueError(
            f"{source.yaml_path}: the audit reads old data, labeled in the old classes "
            f"(vocabulary: old); this dataset declares vocabulary {declaration.vocabulary!r}"
        )
    return declaration.class_index_lut(transition.old_classes)


def _write_thumbnail(image: np.ndarray, suspect: np.ndarray, path: Path) -> None:
    """The image (H, W, 3) beside a copy with the suspect pixels (H, W) in magenta."""
    marked = image.astype(np.float32)
    marked[suspect] = 0.35 * marked[suspect] + 0.65 * SUSPECT_COLOUR
    Image.fromarray(np.concatenate([image, marked.astype(np.uint8)], axis=1)).save(path)


def _write_csv(rows: list[AuditRow], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(AuditRow.__dataclass_fields__))
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    write_atomic(path, lambda f: f.write(buffer.getvalue().encode()))
