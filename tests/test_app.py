"""The page, headless: streamlit.testing.v1.AppTest through each mode, an edit and a traversal.

Tiny random checkpoints and a fake MNIST directory in tmp_path: these check that the page runs
and reacts, never what a trained model draws.
"""

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from app import figures
from draw import checkpoint, explore
from draw.config import DrawConfig
from draw.model import DRAW

APP = str(Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py")
TIMEOUT = 120  # seconds per run: generous, CI shares 2 cores


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    tiny = dict(enc_size=32, dec_size=32, z_size=8)
    checkpoint.save(DRAW(DrawConfig(T=8, **tiny)), root / "a_attention", {"test_nll_nats": 99.5})
    checkpoint.save(DRAW(DrawConfig(T=6, **tiny, attention=False)), root / "b_noattention", {})
    broken = root / "c_broken"
    broken.mkdir()
    (broken / "config.json").write_text((root / "a_attention" / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    return root


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    """20 fake test digits in the IDX format draw.data reads."""
    root = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    imgs = np.zeros((20, 28, 28), np.uint8)
    for i in range(20):
        r, c = rng.integers(4, 10, size=2)
        imgs[i, r : r + 16, c : c + 5] = 255
    labels = (np.arange(20) % 10).astype(np.uint8)
    (root / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, 20, 28, 28) + imgs.tobytes())
    (root / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, 20) + labels.tobytes())
    return root


@pytest.fixture
def app(checkpoints, monkeypatch):
    monkeypatch.setenv("DRAW_CHECKPOINTS", str(checkpoints))
    monkeypatch.delenv("DRAW_DATA_DIR", raising=False)
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    return "\n".join(map(str, parts))


def test_generate_is_the_default_and_broken_checkpoint_is_listed(app):
    at = ok(app.run())
    assert at.radio(key="mode").value == "generate"
    assert at.selectbox(key="model").options == ["a_attention", "b_noattention"]
    assert "c_broken" in texts(at) and "unreadable weights" in texts(at)
    assert "test NLL 99.50 nats" in texts(at)
    assert "KL is zero" in texts(at)  # generate mode explains instead of plotting zeros
    assert at.query_params["model"] == "a_attention"
    next(b for b in at.button if b.label == "New sample").click().run()
    assert ok(at).number_input(key="seed").value == 1


def test_compare_two_models(app):
    at = ok(app.run())
    at.selectbox(key="compare").set_value("b_noattention").run()
    ok(at)
    assert at.query_params["compare"] == "b_noattention"


def test_reconstruct_without_data_offers_drawing(app):
    at = ok(app.run())
    at.radio(key="mode").set_value("reconstruct").run()
    ok(at)
    assert at.radio(key="source").options == ["Draw with the mouse", "Upload an image"]
    assert "DRAW_DATA_DIR" in texts(at)


def test_broken_data_directory_is_explained(app, tmp_path, monkeypatch):
    monkeypatch.setenv("DRAW_DATA_DIR", str(tmp_path))  # exists, holds no MNIST
    at = ok(app.run())
    at.radio(key="mode").set_value("reconstruct").run()
    assert "t10k-images-idx3-ubyte: not found" in texts(ok(at))
    assert at.radio(key="source").options == ["Draw with the mouse", "Upload an image"]


def test_reconstruct_test_digit(app, mnist_dir, monkeypatch):
    monkeypatch.setenv("DRAW_DATA_DIR", str(mnist_dir))
    at = ok(app.run())
    at.radio(key="mode").set_value("reconstruct").run()
    ok(at).number_input(key="index").set_value(5).run()
    assert "MNIST test digit #5 (label 5)" in texts(ok(at))
    at.selectbox(key="label").set_value(3).run()
    assert ok(at).number_input(key="index").value == 13  # next 3 after #5
    at.selectbox(key="label").set_value(3).run()
    assert ok(at).number_input(key="index").value == 3  # no 3 after #13 among 20: wraps around
    at.selectbox(key="compare").set_value("b_noattention").run()
    ok(at)


def digit_png() -> bytes:
    im = Image.new("L", (90, 120), 255)
    ImageDraw.Draw(im).line([(45, 10), (45, 110)], fill=0, width=10)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_upload_good_and_bad(app):
    at = ok(app.run())
    at.radio(key="mode").set_value("reconstruct").run()
    at.radio(key="source").set_value("upload").run()
    at.file_uploader[0].set_value(("one.png", digit_png(), "image/png")).run()
    assert "Reconstructing **one.png**" in texts(ok(at))
    assert len(at.get("image")) == 1  # the converted 28x28 preview
    at.file_uploader[0].set_value(("junk.png", b"\x89PNG but not really", "image/png")).run()
    assert "Could not use junk.png" in texts(ok(at))


def test_latent_edit_resample_reset(app):
    at = ok(app.run())
    dims = at.multiselect(key="edit_dims").value
    assert dims
    at.slider(key=f"edit_v_{dims[0]}").set_value(3.5).run()
    assert "1 dimension(s) moved" in texts(ok(at))
    assert at.query_params["edits"] == f"{dims[0]}:3.5"
    resample = next(b for b in at.button if b.label == "Resample z_t")
    resample.click().run()
    assert ok(at).query_params["resample"] == "1"
    next(b for b in at.button if b.label == "Reset edits").click().run()
    assert "edits" not in ok(at).query_params and "resample" not in at.query_params


def test_closed_loop_edit_in_reconstruct(app, mnist_dir, monkeypatch):
    monkeypatch.setenv("DRAW_DATA_DIR", str(mnist_dir))
    at = ok(app.run())
    at.radio(key="mode").set_value("reconstruct").run()
    at.radio(key="closed").set_value(True).run()
    d = ok(at).multiselect(key="edit_dims").value[0]
    at.slider(key=f"edit_v_{d}").set_value(-2.0).run()
    assert ok(at).query_params["closed"] == "1"


def test_traversal(app):
    at = ok(app.run())
    at.slider(key="zt").set_value(3).run()
    at.multiselect(key="dims").set_value([1, 6]).run()
    ok(at)
    assert at.query_params["dims"] == "1,6" and at.query_params["zt"] == "3"


def test_url_state_is_restored(app):
    app.query_params.update(model="b_noattention", seed="12", zt="2", edits="1:2.5", t="3")
    at = ok(app.run())
    assert at.selectbox(key="model").value == "b_noattention"
    assert at.number_input(key="seed").value == 12
    assert at.slider(key="zt").value == 2 and at.slider(key="edit_v_1").value == 2.5
    assert "1 dimension(s) moved" in texts(at)


def test_bad_url_falls_back_with_notes(app):
    app.query_params.update(model="gone", seed="minus one", zt="999", colour="red")
    at = ok(app.run())
    (warning,) = at.warning
    assert warning.value.count("\n- ") == 4, warning.value
    for key in ("model", "seed", "zt", "colour"):
        assert f"- {key}" in warning.value
    assert at.selectbox(key="model").value == "a_attention" and at.number_input(key="seed").value == 0


def test_no_usable_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("DRAW_CHECKPOINTS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception and "No usable checkpoint" in at.error[0].value


def test_gif_export_is_made_on_request(app):
    at = ok(app.run())
    labels = [d.proto.label for d in at.get("download_button")]
    assert "Download GIF" not in labels and "Download trace JSON" in labels
    next(b for b in at.button if b.label == "Make animated GIF").click().run()
    assert "Download GIF" in [d.proto.label for d in ok(at).get("download_button")]


def test_scrubber_figure_has_a_frame_per_step(checkpoints):
    """The figure the browser scrubs: frames 0..T that replace only what moves."""
    views = []
    for name in ("a_attention", "b_noattention"):
        model, _ = checkpoint.load(checkpoints / name)
        x = np.zeros((28, 28), np.float32)
        x[4:24, 12:16] = 1
        views.append(figures.ModelView(name, model.cfg, explore.make_trace(model, "reconstruct", 0, x)))
    fig = figures.scrubber(views, t0=3, trail=True)
    assert [f.name for f in fig.frames] == [str(t) for t in range(9)]  # T = 8 and 6: the longer one
    assert fig.layout.sliders[0].active == 3
    moving = fig.frames[0].traces
    assert 0 not in moving and 8 not in moving  # the input images never change
    assert all(len(f.data) == len(moving) for f in fig.frames)
    assert len(figures.bar_trace_indices(fig)) == 2


COMMITTED = Path(__file__).resolve().parent.parent / "checkpoints"


@pytest.mark.skipif(not list(COMMITTED.glob("*/model.safetensors")), reason="no checkpoint in checkpoints/")
def test_opens_on_the_committed_checkpoints(monkeypatch):
    """The page as a newcomer first sees it: the repository's checkpoints, no data, no network."""
    monkeypatch.delenv("DRAW_CHECKPOINTS", raising=False)
    monkeypatch.delenv("DRAW_DATA_DIR", raising=False)
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    assert not at.error
    assert set(at.selectbox(key="model").options) == {p.parent.name for p in COMMITTED.glob("*/model.safetensors")}
