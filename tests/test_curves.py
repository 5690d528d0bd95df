"""The learning-curve plot reads a checkpoint's history and writes a PNG."""

import pytest
from PIL import Image

from draw import checkpoint, curves
from draw.config import DrawConfig
from draw.model import DRAW


def save(directory, history, **extra):
    checkpoint.save(DRAW(DrawConfig(T=2, enc_size=8, dec_size=8, z_size=2)), directory, {"history": history, **extra})


def test_plot_writes_a_png(tmp_path):
    history = [{"epoch": e, "val_nll": 120 - 5 * e, "binarize": "static" if e < 3 else "dynamic"} for e in range(1, 5)]
    save(tmp_path / "a", history, test_nll_nats=101.5)
    save(tmp_path / "b", history[:2])
    curves.main([str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "out" / "c.png")])
    with Image.open(tmp_path / "out" / "c.png") as image:
        assert image.format == "PNG" and image.width > 400


def test_a_checkpoint_without_history_is_an_error(tmp_path):
    save(tmp_path / "a", [])
    with pytest.raises(SystemExit, match="no validation history"):
        curves.main([str(tmp_path / "a"), "-o", str(tmp_path / "c.png")])
    with pytest.raises(SystemExit, match="missing"):
        curves.main([str(tmp_path / "nothing"), "-o", str(tmp_path / "c.png")])


def test_changes_of_batch_size_or_binarization_are_named():
    static_100 = {"batch_size": 100, "binarize": "static"}
    assert curves.training_change(static_100, static_100) == ""
    assert curves.training_change(static_100, static_100 | {"batch_size": 1024}) == "batch 1024"
    assert curves.training_change(static_100, {"batch_size": 1024, "binarize": "dynamic"}) == (
        "batch 1024, dynamic binarization"
    )
    assert curves.training_change({"epoch": 1}, static_100) == ""  # unknown settings: no mark
