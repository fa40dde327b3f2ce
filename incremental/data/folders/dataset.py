"""A dataset folder as a :class:`~incremental.data.core.SegmentationSource` (DESIGN §4).

:class:`FolderDataset` refuses bad data when built, with every problem that
:func:`incremental.data.folders.check.inspect_dataset` finds; it reads files with the same
readers as the check, so training and ``python -m incremental check`` agree on what is
readable.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from incremental.data.core import DatasetError, Problem, read_image, read_mask, size_mismatch
from incremental.data.folders.check import inspect_dataset
from incremental.labels import LabelDeclaration

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from incremental.labels import Transition


class FolderDataset:
    """A dataset folder as a :class:`~incremental.data.core.SegmentationSource`.

    Args:
        yaml_path: the dataset's YAML.
        validate: decode every file once and refuse undeclared values, bad modes, sizes and
            unreadable files. The YAML, the folders and the image-mask pairing are always
            checked (they cost no decoding).
        classes: class names the experiment knows; names in the YAML outside them are refused.
        transition: the step; names in the YAML must resolve through it (see
            :class:`~incremental.labels.CandidateSetTable`).

    Raises:
        DatasetError: listing every problem found.

    Attributes:
        declaration: what the mask values mean.
        name: the dataset's name.
        stems: file stems, sorted; sample ``i`` is ``images/<stems[i]>.*``.
        image_paths, mask_paths: the files, in the order of ``stems``.
    """

    def __init__(
        self,
        yaml_path: str | Path,
        *,
        validate: bool = True,
        classes: Sequence[str] | None = None,
        transition: Transition | None = None,
    ) -> None:
        report = inspect_dataset(yaml_path, classes, transition, decode=validate)
        if report.problems:
            raise DatasetError.from_problems(f"dataset {yaml_path}", report.problems)
        assert report.layout is not None and report.layout.declaration is not None
        self.yaml_path = Path(yaml_path)
        self.name = report.layout.name
        self.declaration: LabelDeclaration = report.layout.declaration
        self.stems = list(report.pairs.stems)
        self.image_paths = list(report.pairs.images)
        self.mask_paths = list(report.pairs.masks)
        #: (width, height) of each image as displayed; empty without ``validate``.
        self.image_sizes = list(report.image_sizes)
        for warning in report.warnings:
            log.warning("%s", warning)

    def __len__(self) -> int:
        return len(self.stems)

    def __repr__(self) -> str:
        return f"FolderDataset({str(self.yaml_path)!r}, name={self.name!r}, images={len(self)})"

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, 3) uint8 and mask (H, W) uint8 of sample ``index``.

        Raises:
            DatasetError: naming the file, if it is unreadable, has a wrong mode or size (a
                dataset built with ``validate=False``, or a file changed since).
        """
        image_path, mask_path = self.image_paths[index], self.mask_paths[index]
        image, mask = read_image(image_path), read_mask(mask_path)
        if image.shape[:2] != mask.shape:
            (h, w), (mh, mw) = image.shape[:2], mask.shape
            message = size_mismatch((w, h), (mw, mh), image_path)
            raise DatasetError(f"{mask_path}: {message}", [Problem(str(mask_path), message)])
        return image, mask
