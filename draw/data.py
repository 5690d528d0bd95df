"""MNIST readers: IDX files (grey-level MNIST) and the binarized MNIST `.amat` text files.

Both may be gzip-compressed. The data directory comes from the caller (a CLI flag) or the
DRAW_DATA_DIR environment variable; files are looked up in it and in its `mnist/` and
`binarized_mnist/` subfolders, so `../shared/data` works as it is.
"""

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

ENV_VAR = "DRAW_DATA_DIR"
IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # labels (1-D), images (3-D), unsigned bytes
AMAT_SPLITS = ("train", "valid", "test")
IDX_SPLITS = {"train": "train", "test": "t10k"}


class DataError(ValueError):
    """A data file is missing or not what it claims to be; the message names the file."""


def data_dir(cli_value: str | os.PathLike | None = None) -> Path | None:
    """The directory named on the command line, else by $DRAW_DATA_DIR, else None."""
    value = cli_value or os.environ.get(ENV_VAR)
    return Path(value).expanduser() if value else None


def _read_bytes(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip raises all three for truncated or corrupt files
        raise DataError(f"{path}: cannot read ({e})") from e


def find_file(root: str | os.PathLike, name: str, subdir: str) -> Path:
    """`name` or `name.gz` in root or root/subdir; DataError listing where it looked otherwise."""
    root = Path(root)
    candidates = [d / n for d in (root, root / subdir) for n in (name, name + ".gz")]
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(f"{name}: not found; looked for {', '.join(str(p) for p in candidates)}")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file of unsigned bytes: (n,) labels or (n, rows, cols) images, uint8."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 8:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    magic = struct.unpack(">I", raw[:4])[0]
    ndim = magic & 0xFF
    if ndim not in IDX_MAGIC or magic != IDX_MAGIC[ndim]:
        raise DataError(
            f"{path}: magic number {magic:#010x}, expected {IDX_MAGIC[1]:#010x} (labels) "
            f"or {IDX_MAGIC[3]:#010x} (images)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + math.prod(shape)
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_amat(path: str | os.PathLike, pixels: int = 784) -> np.ndarray:
    """A binarized MNIST `.amat` file: one image a line, `pixels` 0/1 values separated by
    single spaces. Returns (n, pixels) float32."""
    path = Path(path)
    lines = _read_bytes(path).splitlines()
    width = 2 * pixels - 1
    rows = np.empty((len(lines), pixels), dtype=np.float32)
    for i, line in enumerate(lines):
        line = line.rstrip()
        chars = np.frombuffer(line, dtype=np.uint8)
        if len(chars) != width or not (chars[1::2] == ord(" ")).all():
            raise DataError(f"{path}: line {i + 1} is not {pixels} space-separated values")
        values = chars[::2] - ord("0")
        if values.max(initial=0) > 1:
            raise DataError(f"{path}: line {i + 1} has a value other than 0 or 1")
        rows[i] = values
    if len(rows) == 0:
        raise DataError(f"{path}: no rows")
    return rows


def load_binarized_mnist(root: str | os.PathLike, split: str) -> np.ndarray:
    """Statically binarized MNIST split ('train' 50k, 'valid' 10k, 'test' 10k): (n, 28, 28) float32."""
    if split not in AMAT_SPLITS:
        raise ValueError(f"split must be one of {AMAT_SPLITS}, got {split!r}")
    path = find_file(root, f"binarized_mnist_{split}.amat", "binarized_mnist")
    return read_amat(path).reshape(-1, 28, 28)


def load_mnist(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Grey-level MNIST ('train' 60k or 'test' 10k): images (n, 28, 28) float32 in [0, 1], labels (n,)."""
    if split not in IDX_SPLITS:
        raise ValueError(f"split must be one of {tuple(IDX_SPLITS)}, got {split!r}")
    prefix = IDX_SPLITS[split]
    images = read_idx(find_file(root, f"{prefix}-images-idx3-ubyte", "mnist"))
    labels = read_idx(find_file(root, f"{prefix}-labels-idx1-ubyte", "mnist"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{root}: {prefix} images {images.shape} and labels {labels.shape} do not match")
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)
