"""The page, headless: streamlit.testing.v1.AppTest through each mode, an edit and a traversal.

Tiny random checkpoints and a fake MNIST directory in tmp_path: these check that the page runs
and reacts, never what a trained model draws.
"""

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from plotly.subplots import make_subplots
from streamlit.testing.v1 import AppTest
from tiny import idx_bytes

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
    (root / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(imgs))
    (root / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
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


def test_a_latent_edit_reuses_the_scrubber(app, monkeypatch):
    """The scrubber's frames are built once per drawing; the edited drawing's only when asked for."""
    built = []
    scrubber = figures.scrubber
    monkeypatch.setattr(figures, "scrubber", lambda *a, **k: built.append(a) or scrubber(*a, **k))
    at = ok(app.run())
    before = len(built)  # 0 or 1: the cache outlives an AppTest
    d = at.multiselect(key="edit_dims").value[0]
    at.slider(key=f"edit_v_{d}").set_value(1.5).run()
    assert "1 dimension(s) moved" in texts(ok(at)) and len(built) == before
    at.session_state["edit_scrub_open"] = True  # open "Scrub the edited drawing"
    ok(at.run())
    assert len(built) == before + 1 and built[-1][0][0].name.endswith("(edited)")


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


def test_long_model_names_run_down_their_row_on_two_lines():
    """Rotated down the left of a row of panels, a 25-character name was taller than the row and ran
    into the next row's name; it breaks at the underscore nearest its middle."""
    assert figures._two_lines("mnist_attention_T64_beta4") == "mnist_attention_<br>T64_beta4"
    assert figures._two_lines("mnist_noattention_T64") == "mnist_<br>noattention_T64"
    assert figures._two_lines("a_attention") == "a_attention"
    assert figures._two_lines("x" * 30) == "x" * 30  # nowhere to break


def typed(spec: dict) -> np.ndarray:
    """A plotly.js typed array back as numpy."""
    a = np.frombuffer(base64.b64decode(spec["bdata"]), np.float32)
    return a.reshape([int(n) for n in spec["shape"].split(",")]) if "shape" in spec else a


def test_scrubber_frames_hold_the_trace(checkpoints):
    model, _ = checkpoint.load(checkpoints / "a_attention")
    trace = explore.make_trace(model, "generate", 0)
    fig = figures.scrubber([figures.ModelView("a", model.cfg, trace)], t0=8).to_plotly_json()
    geo = explore.windows(trace, model.cfg)
    for t in (0, 3, 8):
        canvas, box, _, patch, marker = fig["frames"][t]["data"]
        np.testing.assert_array_equal(typed(canvas["z"]), trace.canvas_prob[0, t].numpy())
        if t:
            x0, y0, x1, y1 = geo.write_box[t - 1]
            np.testing.assert_allclose(typed(box["x"]), [x0, x1, x1, x0, x0])
            np.testing.assert_allclose(typed(box["y"]), [y0, y0, y1, y1, y0])
            np.testing.assert_array_equal(typed(patch["z"]), trace.write_patch[0, t - 1].numpy())
        assert list(marker["x"]) == [t, t]
    assert np.isnan(typed(fig["frames"][0]["data"][1]["x"])).all()  # no write box before step 1


@pytest.mark.parametrize("n", [1, 3, 4])
@pytest.mark.parametrize("spacing", [0.03, 0.14])
def test_row_layout_matches_make_subplots(n, spacing):
    titles = [f"panel {i}" for i in range(n)]
    ours = figures._row_layout(titles, spacing)
    theirs = make_subplots(rows=1, cols=n, subplot_titles=titles, horizontal_spacing=spacing).layout.to_plotly_json()
    for k in range(1, n + 1):
        for axis in (figures._axis(k, "x"), figures._axis(k, "y")):
            assert ours[axis]["anchor"] == theirs[axis]["anchor"]
            np.testing.assert_allclose(ours[axis]["domain"], theirs[axis]["domain"])
    for a, b in zip(ours["annotations"], theirs["annotations"], strict=True):
        assert a.pop("x") == pytest.approx(b.pop("x")) and a == b


COMMITTED = Path(__file__).resolve().parent.parent / "checkpoints"


@pytest.mark.skipif(not list(COMMITTED.glob("*/model.safetensors")), reason="no checkpoint in checkpoints/")
def test_opens_on_the_committed_checkpoints(monkeypatch):
    """The page as a newcomer first sees it: the repository's checkpoints, no data, no network."""
    monkeypatch.delenv("DRAW_CHECKPOINTS", raising=False)
    monkeypatch.delenv("DRAW_DATA_DIR", raising=False)
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    assert not at.error
    assert set(at.selectbox(key="model").options) == {p.parent.name for p in COMMITTED.glob("*/model.safetensors")}
