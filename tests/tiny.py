"""Tiny generated data and a tiny DRAW for the data, checkpoint, train and reliability tests."""

import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from draw import train

# torch.compile on a CPU builds C++ kernels, so its tests need a compiler.
needs_cxx = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "g++")) is None, reason="torch.compile on a CPU needs a C++ compiler"
)

# The train CLI's model flags for a DRAW small enough to train a few steps in milliseconds.
TINY_FLAGS = ["--T", "4", "--enc-size", "16", "--dec-size", "16", "--z-size", "4", "--read-n", "2", "--write-n", "3"]
TINY = dict(T=4, enc_size=16, dec_size=16, z_size=4, read_n=2, write_n=3)


def amat_text(images: np.ndarray) -> str:
    """(n, pixels) 0/1 array -> the .amat text: one image a line, values separated by spaces."""
    return "".join(" ".join(str(int(v)) for v in row) + "\n" for row in images)


def write_amat(path: Path, images: np.ndarray) -> Path:
    text = amat_text(images.reshape(len(images), -1)).encode()
    path.write_bytes(gzip.compress(text) if path.suffix == ".gz" else text)
    return path


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """A uint8 array as IDX bytes: magic (0x08 = ubyte, then ndim, unless given), big-endian dims, data."""
    magic = 0x0800 + array.ndim if magic is None else magic
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def blob_distances(rng: np.random.Generator, n: int) -> np.ndarray:
    """Squared pixel distances (n, 28, 28) from a random centre per image, near the middle."""
    yy, xx = np.mgrid[:28, :28]
    centres = rng.uniform(8, 20, size=(n, 2, 1, 1))
    return (yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2


def binarized_mnist_dir(root: Path, n_train: int = 40, n_valid: int = 16, n_test: int = 24, seed: int = 0) -> Path:
    """binarized_mnist_{train,valid,test}.amat of random 28x28 blobs; valid gzipped, to cover both.
    Also grey train-images/labels IDX files (n_train + n_valid soft blobs) for --binarize dynamic."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("valid.amat.gz", n_valid), ("test", n_test)):
        name = split if split.endswith(".gz") else f"{split}.amat"
        images = (blob_distances(rng, n) < rng.uniform(16, 40, (n, 1, 1))).astype(int)
        write_amat(root / f"binarized_mnist_{name}", images)
    n_grey = n_train + n_valid
    grey = (255 * np.exp(-blob_distances(rng, n_grey) / 30)).round()
    (root / "train-images-idx3-ubyte").write_bytes(idx_bytes(grey))
    (root / "train-labels-idx1-ubyte").write_bytes(idx_bytes(rng.integers(0, 10, n_grey)))
    return root


def run_train(data: Path, run: Path, *flags) -> dict:
    """The train CLI on the tiny DRAW: batches of 8, 8 validation images, 3 epochs unless flags say."""
    args = ["--data-dir", str(data), "--run", str(run), "--batch-size", "8", "--val-size", "8", "--epochs", "3"]
    return train.train(train.parse_args(args + TINY_FLAGS + [str(f) for f in flags]))
