"""Scene streams drawn on first use, and kept on disk when a cache folder is set.

A Fashion scenario's streams (old_train, new_train, val, test, old_val) are deterministic in
its config, and drawing them is the slow part of building it (about 2 ms a scene: 10-13 s for
the quick profile's 5,200 scenes). A :class:`SceneStream` draws its scenes the first time a
source reads them, so a process that only needs a scenario's sizes (the runner's main process
when the old models are shipped) or only its new images (a run without replay) never draws the
4,000 old ones. With :func:`set_scene_cache` (the experiment runner sets ``cache_dir/scenes``),
a drawn stream is written once and read back by every later process and run: parallel jobs do
not draw the same scenes twice. A cached stream is named by a hash of its config, the
Fashion-MNIST source and the generator's code, so a change to any of them draws it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from incremental.io import write_atomic
from incremental.labels import LabelDeclaration

if TYPE_CHECKING:
    from incremental.data.fashion.scenario import FashionScenarioConfig

log = logging.getLogger(__name__)

#: The folder drawn streams are written to and read from; None: drawn in each process.
_CACHE: dict[str, Path | None] = {"dir": None}
#: The generator's code: a change to it makes cached streams stale.
_GENERATOR_FILES = ("scenes.py", "scenario.py", "streams.py", "mnist.py")


def set_scene_cache(folder: str | Path | None) -> Path | None:
    """Write drawn scene streams to ``folder`` and read them from there (None: no cache), in
    this process; returns the previous folder."""
    previous = _CACHE["dir"]
    _CACHE["dir"] = None if folder is None else Path(folder)
    return previous


@contextmanager
def using_scene_cache(folder: str | Path | None) -> Iterator[None]:
    """:func:`set_scene_cache` for the ``with`` block, the previous folder restored after."""
    previous = set_scene_cache(folder)
    try:
        yield
    finally:
        set_scene_cache(previous)


def scene_cache() -> Path | None:
    return _CACHE["dir"]


def _generator_digest() -> str:
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _GENERATOR_FILES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


class SceneStream:
    """The scenes of one stream of a Fashion scenario: images (N, H, W, 3) uint8 and item maps
    (N, H, W) int16 (the Fashion-MNIST class of each pixel, -1 = background).

    Args:
        config: the scenario's config.
        stream: the stream's name (``old_train``...), which seeds it.
        length: its number of scenes.
        seed, pool, required, optional, weights, required_count: what
            :func:`~incremental.data.fashion.scenes.compose_scenes` draws it with.
        fashion_mnist: the resolved Fashion-MNIST source (``"test"`` or ``"all"``).
    """

    def __init__(
        self,
        config: FashionScenarioConfig,
        stream: str,
        length: int,
        seed: int,
        pool: str,
        required: Sequence[int],
        optional: Sequence[int],
        weights: Sequence[float],
        required_count: tuple[int, int],
        fashion_mnist: str,
    ) -> None:
        self.config, self.stream, self.length, self.seed = config, stream, length, seed
        self.pool, self.required, self.optional = pool, list(required), list(optional)
        self.weights, self.required_count = [float(w) for w in weights], tuple(required_count)
        self.fashion_mnist = fashion_mnist
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def key(self) -> str:
        """A hash of everything that decides the stream's scenes."""
        what = {
            "config": {k: v for k, v in asdict(self.config).items() if k != "name"},
            "stream": [self.stream, self.length, self.seed, self.pool, self.required,
                       self.optional, self.weights, list(self.required_count)],
            "fashion_mnist": self.fashion_mnist,
            "generator": _generator_digest(),
        }  # fmt: skip
        text = json.dumps(what, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(images, item maps): drawn on the first call, read from the cache when it has them."""
        if self._arrays is None:
            folder = scene_cache()
            path = None if folder is None else folder / f"{self.stream}-{self.key()}.npz"
            self._arrays = (path is not None and self._read(path)) or self._draw()
            if path is not None and not path.is_file():
                self._write(path, *self._arrays)
        return self._arrays

    def _draw(self) -> tuple[np.ndarray, np.ndarray]:
        from incremental.data.fashion.mnist import load_fashion_mnist
        from incremental.data.fashion.scenes import SceneStyle, compose_scenes, split_item_pools

        fmnist = load_fashion_mnist(self.fashion_mnist)
        pools = split_item_pools(fmnist.labels, seed=self.config.data_seed)
        style = SceneStyle(
            image_size=self.config.image_size,
            items_per_scene=tuple(self.config.items_per_scene),
            item_scale=tuple(self.config.item_scale),
        )
        return compose_scenes(
            self.length, self.seed, fmnist.images, fmnist.labels, pools[self.pool],
            self.required, self.optional, self.weights, style,
            required_count=self.required_count,
        )  # fmt: skip

    def _read(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        """The cached arrays, or None (absent, or unreadable: drawn again and rewritten)."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                images, items = data["images"], data["items"].astype(np.int16)
        except Exception as error:  # a damaged file is redrawn, not trusted
            log.warning("scene cache %s unreadable (%s): drawing the scenes again", path, error)
            path.unlink(missing_ok=True)
            return None
        size = self.config.image_size
        if images.shape != (self.length, size, size, 3) or items.shape != images.shape[:3]:
            log.warning("scene cache %s has other shapes: drawing the scenes again", path)
            path.unlink(missing_ok=True)
            return None
        return images, items

    @staticmethod
    def _write(path: Path, images: np.ndarray, items: np.ndarray) -> None:
        """Atomically (a parallel job reads either nothing or the whole file); item maps as int8
        (Fashion-MNIST classes 0-9 and -1 fit), half their size."""
        write_atomic(
            path,
            lambda file: np.savez(file, images=images, items=items.astype(np.int8)),
            "the scene cache",
        )

    def __getstate__(self) -> dict:
        # A process given this stream reads it from the cache when there is one (cheaper than
        # pickling the arrays through a pipe); without a cache, drawn arrays travel with it.
        state = dict(self.__dict__)
        if scene_cache() is not None:
            state["_arrays"] = None
        return state


class StreamSource:
    """A :class:`~incremental.data.core.SegmentationSource` over a stream's scenes, masks
    read through ``lut`` (Fashion-MNIST class + 1 -> mask value); nothing is drawn until the
    first :meth:`load`.

    Args:
        stream: the scenes.
        lut: (256,) uint8 mask value of each Fashion-MNIST class + 1 (index 0: background).
        declaration: what the mask values mean.
    """

    def __init__(self, stream: SceneStream, lut: np.ndarray, declaration: LabelDeclaration):
        self.stream, self.lut, self.declaration = stream, lut, declaration
        self._masks: np.ndarray | None = None

    def __len__(self) -> int:
        return self.stream.length

    @property
    def images(self) -> np.ndarray:
        """(N, H, W, 3) uint8."""
        return self.stream.arrays()[0]

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) uint8."""
        if self._masks is None:
            self._masks = self.lut[self.stream.arrays()[1] + 1]
        return self._masks

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[index], self.masks[index]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_masks": None}  # recomputed from the stream where needed
