"""The learning-curve plot reads a checkpoint's history and writes a PNG."""

import matplotlib.pyplot as plt
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


def test_change_labels_stay_inside_the_axes(tmp_path):
    # a change at the first epoch and one just before the last: the second label must not run off the right edge
    history = [{"epoch": e, "val_nll": 120 - e, "batch_size": 100 if e in (1, 50) else 1024} for e in range(1, 51)]
    save(tmp_path / "a", history)
    fig = curves.figure([str(tmp_path / "a")])
    try:
        renderer = fig.canvas.get_renderer()
        axes_box = fig.axes[0].get_window_extent(renderer)
        labels = [t for t in fig.axes[0].texts if t.get_text().endswith("from here")]
        assert len(labels) == 2
        for label in labels:
            box = label.get_window_extent(renderer)
            assert axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1, label.get_text()
    finally:
        plt.close(fig)


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
