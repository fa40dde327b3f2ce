"""Fashion-MNIST photos: an IDX reader and a cached loader.

The 10k test split ships with the package (``assets/``, MIT licence beside it); the 60k
train split is picked up from the Debian package ``dataset-fashion-mnist`` when it is installed.
"""

from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "FASHION_MNIST_CLASSES",
    "SYSTEM_DIR",
    "VENDORED_DIR",
    "FashionMNIST",
    "load_fashion_mnist",
    "read_idx",
]

#: Class names by Fashion-MNIST label id (0 T-shirt/top ... 9 Ankle boot).
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "tshirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)

#: The vendored test split (10,000 images).
VENDORED_DIR = Path(__file__).resolve().parent / "assets"
#: Where ``apt-get install dataset-fashion-mnist`` puts all four files.
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

_TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
_TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

# IDX type code (third magic byte) -> element dtype; multi-byte types are big-endian.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class FashionMNIST:
    """Fashion-MNIST photos and labels.

    Attributes:
        images: (N, 28, 28) uint8, white item on black (0 = background).
        labels: (N,) uint8 class ids 0..9, see ``FASHION_MNIST_CLASSES``.
        source: "test" (vendored 10k only) or "all" (vendored test first, then the 60k train split).
    """

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.labels)


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the file starts with the gzip magic."""
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as error:  # truncated or corrupt gzip stream
        raise ValueError(f"{path}: corrupt gzip stream ({error})") from error


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file (gzip or plain) into an array of the header's shape and type.

    The header is 2 zero bytes, a type code, the number of dimensions, then one big-endian
    uint32 per dimension. Raises ValueError naming the file if the magic number is wrong or
    the data size does not match the header.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    zeros, type_code, ndim = data[:2], data[2], data[3]
    if zeros != b"\x00\x00" or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()} "
            "(expected 0x0000 then a type code in 08,09,0b,0c,0d,0e and ndim >= 1)"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} < {header_size} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_size
    if actual != expected:
        raise ValueError(
            f"{path}: IDX data is {actual} bytes but header dims {shape} of {dtype} "
            f"need {expected} bytes"
        )
    array = np.frombuffer(data, dtype, offset=header_size).reshape(shape)
    # Native byte order and writeable memory, so callers get a normal array.
    return array.astype(dtype.newbyteorder("="), copy=True)


def _read_split(directory: Path, files: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) uint8) of one split, checked for agreement."""
    images = read_idx(directory / files[0])
    labels = read_idx(directory / files[1])
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"{directory / files[0]}: expected (N, 28, 28) uint8 images")
    if labels.shape != (len(images),) or labels.dtype != np.uint8:
        raise ValueError(f"{directory / files[1]}: expected ({len(images)},) uint8 labels")
    if labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{directory / files[1]}: label {labels.max()} out of range 0..9")
    return images, labels


def _train_split_present() -> bool:
    return all((SYSTEM_DIR / name).is_file() for name in _TRAIN_FILES)


def load_fashion_mnist(source: str = "auto") -> FashionMNIST:
    """Load Fashion-MNIST.

    Args:
        source: "test" = the vendored 10k test split; "all" = that plus the 60k train split from
            ``/usr/share/datasets/fashion-mnist`` (FileNotFoundError if absent); "auto" = "all"
            when the train split is installed, else "test".

    Returns:
        A cached, read-only ``FashionMNIST`` whose ``source`` is the resolved "test" or "all".
    """
    if source not in ("auto", "test", "all"):
        raise ValueError(f"source must be 'auto', 'test' or 'all', got {source!r}")
    if source == "auto":
        source = "all" if _train_split_present() else "test"
    return _load(source)


@functools.lru_cache(maxsize=2)
def _load(source: str) -> FashionMNIST:
    """The resolved split, loaded once per process (arrays made read-only as they are shared)."""
    images, labels = _read_split(VENDORED_DIR, _TEST_FILES)
    if source == "all":
        if not _train_split_present():
            raise FileNotFoundError(
                f"Fashion-MNIST train split not found in {SYSTEM_DIR} "
                f"(need {', '.join(_TRAIN_FILES)}); install it with "
                "`apt-get install dataset-fashion-mnist` or use source='test'"
            )
        train_images, train_labels = _read_split(SYSTEM_DIR, _TRAIN_FILES)
        images = np.concatenate([images, train_images])
        labels = np.concatenate([labels, train_labels])
    images.flags.writeable = False
    labels.flags.writeable = False
    return FashionMNIST(images=images, labels=labels, source=source)
