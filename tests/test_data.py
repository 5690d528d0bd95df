"""IDX and .amat readers on tiny generated files: correct parses and one clear DataError naming the file."""

import gzip
import struct

import numpy as np
import pytest
from tiny import amat_text, idx_bytes, write_amat

from draw.data import DataError, find_file, load_binarized_mnist, load_mnist, read_amat, read_idx


def write(path, data: bytes):
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.fixture(params=["", ".gz"], ids=["plain", "gzip"])
def gz(request) -> str:
    return request.param


def test_idx_images_and_labels_parse(tmp_path, gz):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8)
    labels = np.array([7, 1], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write(tmp_path / f"i{gz}", idx_bytes(images))), images)
    np.testing.assert_array_equal(read_idx(write(tmp_path / f"l{gz}", idx_bytes(labels))), labels)


def test_load_mnist_finds_gzipped_files_in_subfolder(tmp_path):
    (tmp_path / "mnist").mkdir()
    images = np.full((3, 28, 28), 255, dtype=np.uint8)
    write(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", idx_bytes(images))
    write(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 2])))
    x, y = load_mnist(tmp_path, "test")
    assert x.shape == (3, 28, 28) and x.dtype == np.float32 and x.max() == 1.0
    assert y.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "data, message",
    [
        (idx_bytes(np.zeros((2, 3, 4)), magic=0x00000802), "magic number"),
        (idx_bytes(np.zeros((2, 3, 4)), magic=0x12345678), "magic number"),
        (idx_bytes(np.zeros((2, 3, 4)))[:-5], "expected"),  # truncated pixels
        (idx_bytes(np.zeros((2, 3, 4))) + b"\0", "expected"),  # trailing bytes
        (idx_bytes(np.zeros((2, 3, 4)))[:10], "truncated header"),
        (b"\0\0\x08", "too short"),
        (b"", "too short"),
    ],
    ids=["wrong-type-magic", "garbage-magic", "truncated", "too-long", "truncated-header", "3-bytes", "empty"],
)
def test_idx_errors_name_the_file(tmp_path, gz, data, message):
    path = write(tmp_path / f"bad-idx{gz}", data)
    with pytest.raises(DataError, match=message) as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_idx_huge_declared_shape_is_an_error_not_an_allocation(tmp_path):
    path = write(tmp_path / "huge", struct.pack(">4I", 0x803, 2**32 - 1, 2**32 - 1, 2**32 - 1))
    with pytest.raises(DataError, match="expected"):
        read_idx(path)


def test_amat_parses(tmp_path, gz):
    rows = np.array([[0, 1, 1, 0], [1, 1, 1, 1]])
    got = read_amat(write_amat(tmp_path / f"x.amat{gz}", rows), pixels=4)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, rows)


def test_amat_accepts_windows_line_endings(tmp_path):
    path = tmp_path / "crlf.amat"
    path.write_bytes(b"0 1 1\r\n1 0 0\r\n")
    np.testing.assert_array_equal(read_amat(path, pixels=3), [[0, 1, 1], [1, 0, 0]])


def test_load_binarized_mnist_reshapes(tmp_path, gz):
    rows = np.random.default_rng(0).integers(0, 2, (3, 784))
    write_amat(tmp_path / f"binarized_mnist_test.amat{gz}", rows)
    x = load_binarized_mnist(tmp_path, "test")
    assert x.shape == (3, 28, 28)
    np.testing.assert_array_equal(x.reshape(3, -1), rows)


@pytest.mark.parametrize(
    "text, message",
    [
        ("0 1 1\n1 0\n", "line 2"),  # short row
        ("0 1 1\n1 0 1 1\n", "line 2"),  # long row
        ("0 1 2\n", "other than 0 or 1"),
        ("0 1 x\n", "other than 0 or 1"),
        ("0 1 -\n", "other than 0 or 1"),
        ("0,1,1\n", "line 1"),
        ("0  1 1\n", "line 1"),
        ("0 1 1\n\n1 0 0\n", "line 2"),  # blank line
        ("0.5 1\n", "line 1"),
        ("", "no rows"),
    ],
    ids=["short", "long", "value-2", "letter", "minus", "commas", "double-space", "blank-line", "float", "empty"],
)
def test_amat_errors_name_the_file(tmp_path, gz, text, message):
    path = write(tmp_path / f"bad.amat{gz}", text.encode())
    with pytest.raises(DataError, match=message) as e:
        read_amat(path, pixels=3)
    assert str(path) in str(e.value)


def test_truncated_or_corrupt_gzip_is_a_data_error(tmp_path):
    packed = gzip.compress(amat_text(np.ones((50, 3))).encode())
    truncated = write(tmp_path / "truncated.amat.gz", b"")
    truncated.write_bytes(packed[: len(packed) // 2])
    corrupt = tmp_path / "corrupt.amat.gz"
    corrupt.write_bytes(packed[:12] + bytes(b ^ 0xFF for b in packed[12:-8]) + packed[-8:])
    not_gzip = tmp_path / "plain-text.amat.gz"
    not_gzip.write_text("0 1 1\n")
    for path in (truncated, corrupt, not_gzip):
        with pytest.raises(DataError, match="cannot read") as e:
            read_amat(path, pixels=3)
        assert str(path) in str(e.value)


def test_missing_file_lists_where_it_looked(tmp_path):
    with pytest.raises(DataError, match="binarized_mnist_valid.amat: not found") as e:
        load_binarized_mnist(tmp_path, "valid")
    assert str(tmp_path / "binarized_mnist" / "binarized_mnist_valid.amat.gz") in str(e.value)


def test_a_directory_named_like_the_file_is_not_taken_for_it(tmp_path):
    (tmp_path / "binarized_mnist_test.amat").mkdir()
    with pytest.raises(DataError, match="not found"):
        find_file(tmp_path, "binarized_mnist_test.amat", "binarized_mnist")


def test_unknown_split_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_binarized_mnist(tmp_path, "training")
