"""The explorer's pure logic: window geometry, edits, traversals, exports, URL state."""

import copy
import io
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from draw import attention, checkpoint, explore
from draw.config import DrawConfig
from draw.explore import Edit, ViewState
from draw.model import DRAW
from draw.trace import decode_only, final_canvas

TINY = dict(T=8, enc_size=32, dec_size=32, z_size=8)


@pytest.fixture(scope="module", params=[True, False], ids=["attention", "no-attention"])
def model(request) -> DRAW:
    torch.manual_seed(0)
    return DRAW(DrawConfig(**TINY, attention=request.param)).eval()


@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    x = np.zeros((28, 28), dtype=np.float32)
    x[6:22, 12:16] = 0.9  # a "1"
    return x


@pytest.fixture(params=["generate", "reconstruct"])
def trace(request, model, digit):
    return explore.make_trace(model, request.param, seed=3, x=digit)


def test_boxes_are_the_filter_grids_extent(digit):
    """Each box spans N * delta around the window centre, so the first and last filter centres
    (mu^1, mu^N from the paper's formula) sit half a stride inside it."""
    torch.manual_seed(0)
    model = DRAW(DrawConfig(**TINY, read_n=3, write_n=5)).eval()
    tr = explore.make_trace(model, "reconstruct", 0, digit)
    geo = explore.windows(tr, model.cfg)
    for window, box, n in ((tr.read_window, geo.read_box, 3), (tr.write_window, geo.write_box, 5)):
        gx, gy, delta = window.gx[0], window.gy[0], window.delta[0]
        mu_x = attention.filter_centres(gx - 1, delta, n)  # (T, N), 0-based
        mu_y = attention.filter_centres(gy - 1, delta, n)
        torch.testing.assert_close(torch.from_numpy(box[:, 0]), mu_x[:, 0] - delta / 2)
        torch.testing.assert_close(torch.from_numpy(box[:, 2]), mu_x[:, -1] + delta / 2)
        torch.testing.assert_close(torch.from_numpy(box[:, 1]), mu_y[:, 0] - delta / 2)
        torch.testing.assert_close(torch.from_numpy(box[:, 3]), mu_y[:, -1] + delta / 2)
    np.testing.assert_allclose(geo.read_centre, (geo.read_box[:, :2] + geo.read_box[:, 2:]) / 2, atol=1e-5)


def test_no_attention_has_no_windows(digit):
    m = DRAW(DrawConfig(**TINY, attention=False))
    geo = explore.windows(explore.make_trace(m, "reconstruct", 0, digit), m.cfg)
    assert geo.read_box is None and geo.write_box is None


@pytest.mark.parametrize("step", [1, 4, 8])
def test_open_loop_edit_changes_only_steps_from_t(model, trace, step):
    edit = Edit(step, values=((2, 3.0), (5, -2.5)))
    out = explore.apply_edit(model, trace, edit)
    s = step - 1
    torch.testing.assert_close(out.canvas[:, : s + 1], trace.canvas[:, : s + 1], rtol=0, atol=0)
    torch.testing.assert_close(out.z[:, :s], trace.z[:, :s], rtol=0, atol=0)
    torch.testing.assert_close(out.z[:, s + 1 :], trace.z[:, s + 1 :], rtol=0, atol=0)  # open loop keeps them
    assert out.z[0, s, 2] == 3.0 and out.z[0, s, 5] == -2.5
    assert not torch.equal(out.canvas[:, s + 1], trace.canvas[:, s + 1])


def test_closed_loop_reinfers_later_latents(model, digit):
    tr = explore.make_trace(model, "reconstruct", 0, digit)
    out = explore.apply_edit(model, tr, Edit(3, values=((0, 3.5),), closed_loop=True))
    torch.testing.assert_close(out.z[:, :2], tr.z[:, :2], rtol=0, atol=0)
    assert not torch.allclose(out.z[:, 3:], tr.z[:, 3:])


def test_noop_edit_reproduces_the_trace(model, trace):
    out = explore.apply_edit(model, trace, Edit(2))
    torch.testing.assert_close(out.canvas, trace.canvas)


def test_resample_is_seeded(trace):
    a = explore.edited_latent(trace, Edit(2, resample=7))
    b = explore.edited_latent(trace, Edit(2, resample=7, values=((1, 0.5),)))
    assert torch.equal(a, explore.edited_latent(trace, Edit(2, resample=7)))
    assert not torch.equal(a, explore.edited_latent(trace, Edit(2, resample=8)))
    assert b[0, 1] == 0.5 and torch.equal(a[0, 2:], b[0, 2:])


def test_traversal_grid_matches_single_edits(model, trace):
    dims, values = [0, 3, 7], (-3.0, 0.0, 3.0)
    grid = explore.traversal(model, trace, 5, dims, values)
    assert grid.shape == (3, 3, 28, 28) and grid.dtype == np.float32
    single = explore.apply_edit(model, trace, Edit(5, values=((3, 3.0),)))
    np.testing.assert_allclose(grid[1, 2], single.canvas_prob[0, -1].numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "values", [((0, float("nan")),), ((0, float("inf")),), ((0, -float("inf")),), ((0, 1e6),), ((8, 1.0),)]
)
def test_bad_edit_values_are_refused(model, trace, values):
    with pytest.raises(ValueError):
        explore.apply_edit(model, trace, Edit(2, values=values))
    with pytest.raises(ValueError):
        explore.traversal(model, trace, 2, [values[0][0]], (values[0][1],))


def test_traversal_and_edit_reject_bad_steps(model, trace):
    with pytest.raises(ValueError):
        explore.traversal(model, trace, 0, [0])
    with pytest.raises(ValueError):
        explore.apply_edit(model, trace, Edit(trace.steps + 1))
    with pytest.raises(ValueError):
        explore.traversal(model, trace, 1, [])


def test_step_summary_and_top_dims(trace):
    s = explore.step_summary(trace)
    assert s.shape == (trace.steps,) and (s >= 0).all()
    if trace.mode == "reconstruct":
        np.testing.assert_allclose(s, trace.kl.sum(-1)[0].numpy(), rtol=1e-6)
        t = explore.busiest_step(model, trace)
        assert s[t - 1] == s.max()
        top = explore.top_dims(model, trace, t, 3)
        kl = trace.kl[0, t - 1].numpy()
        assert min(kl[top]) >= np.sort(kl)[-3]


def test_latent_influence_is_the_jacobian_norm_of_the_finished_drawing(model):
    """Against the exact Jacobian d sigma(c_T) / d z of the decoder redrawing the trace's latents:
    with many probes the estimate is close; the editor opens where it is largest."""
    trace = explore.make_trace(model, "generate", seed=0)

    def finished(z):  # (T, Z) -> sigma(c_T) (H, W)
        _, dec, canvas, _ = model.initial_state(1)
        return torch.sigmoid(decode_only(model, dec, canvas, z[None])[0])

    z = trace.z[0].clone()
    torch.testing.assert_close(finished(z), trace.canvas_prob[0, -1])  # the redraw is the drawing
    exact = torch.autograd.functional.jacobian(finished, z).square().sum((0, 1, 3)).sqrt()  # (T,)
    torch.testing.assert_close(explore.latent_influence(model, trace, probes=4000), exact, rtol=0.1, atol=0)
    assert explore.busiest_step(model, trace) == int(explore.latent_influence(model, trace).argmax()) + 1
    assert all(p.grad is None for p in model.parameters())


COMMITTED_ATTENTION = explore.REPO_ROOT / "checkpoints" / "mnist_attention_T64"


@pytest.mark.skipif(not COMMITTED_ATTENTION.exists(), reason="no committed attention checkpoint")
def test_generating_the_editor_opens_on_a_step_whose_edit_shows():
    """The committed attention model draws most of a digit early: a quarter of the way in (the
    former default) its best single +1 sd nudge moves the finished drawing far less than at the step
    chosen now, measured exactly with one redraw per dimension."""
    model, _ = checkpoint.load(COMMITTED_ATTENTION)
    trace = explore.make_trace(model, "generate", seed=0)

    def best_nudge(t: int) -> float:
        z = trace.z[0, t - 1] + torch.eye(model.cfg.z_size)
        moved = torch.sigmoid(final_canvas(model, trace, t - 1, z)) - trace.canvas_prob[0, -1]
        return float(moved.abs().flatten(1).mean(1).max())

    assert best_nudge(explore.busiest_step(model, trace)) > 2 * best_nudge(trace.steps // 4)


def test_top_dims_when_generating_are_the_ones_the_decoder_listens_to(model):
    """With no KL to rank by, the dimensions that move the final canvas: here the decoder reads only
    dimensions 1 and 3 of z, so those come first, at any step."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.decoder.weight_ih[:, [0, 2, 4, 5, 6, 7]] = 0
    trace = explore.make_trace(model, "generate", seed=0)
    for step in (1, trace.steps):
        assert explore.top_dims(model, trace, step, 2) == [1, 3]
    with pytest.raises(ValueError, match="step"):
        explore.top_dims(model, trace, 0, 2)


def test_prepare_input_binarizes_and_resizes():
    cfg = DrawConfig(height=14, width=14, **TINY)
    x = np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(28, 28)
    out = explore.prepare_input(x, cfg)
    assert out.shape == (1, 14, 14) and set(out.unique().tolist()) <= {0.0, 1.0}


def test_exports(model, trace):
    cfg = model.cfg
    gif = explore.animation_gif([(trace, cfg), (trace, cfg)], scale=2)
    im = Image.open(io.BytesIO(gif))
    assert im.n_frames == trace.steps + 1
    png = explore.view_image([(trace, cfg)], 3, scale=2, names=["tiny"])
    assert png.dtype == np.uint8 and png.ndim == 3
    assert (png[:16] < 128).any()  # the caption strip has text
    d = json.loads(explore.trace_to_json(trace, cfg, "tiny"))
    assert d["config"] == cfg.to_dict() and d["mode"] == trace.mode
    assert np.asarray(d["canvas"]).shape == (cfg.T + 1, 28, 28)
    assert np.asarray(d["kl"]).shape == (cfg.T, cfg.z_size)
    if cfg.attention:
        assert np.asarray(d["read_window"]["gx"]).shape == (cfg.T,)


def test_step_image_draws_boxes_only_with_attention(model, digit):
    tr = explore.make_trace(model, "reconstruct", 0, digit)
    img = explore.step_image(tr, model.cfg, 4, scale=4)
    has_red = ((img[..., 0] > 200) & (img[..., 1] < 100)).any()
    assert img.shape == (112, 112 * 2 + 4, 3)
    assert has_red == model.cfg.attention


def test_list_checkpoints(tmp_path):
    torch.manual_seed(0)
    checkpoint.save(DRAW(DrawConfig(**TINY)), tmp_path / "b_ok", {"test_nll_nats": 88.123})
    checkpoint.save(DRAW(DrawConfig(**TINY)), tmp_path / "c_unmeasured", {})
    checkpoint.save(
        DRAW(DrawConfig(**TINY)), tmp_path / "d_passes", {"test_nll_nats": 85.05, "test_nll_se_nats": 0.021}
    )
    (tmp_path / "a_bad").mkdir()
    (tmp_path / "a_bad" / "config.json").write_text("{not json")
    (tmp_path / "notes").mkdir()  # no checkpoint files: not listed
    entries = explore.list_checkpoints(tmp_path)
    assert [e.name for e in entries] == ["a_bad", "b_ok", "c_unmeasured", "d_passes"]
    assert entries[0].cfg is None and "config.json" in entries[0].error
    assert entries[1].test_nll == "88.12 nats" and "88.12" in entries[1].describe()
    assert entries[2].test_nll == "not measured"
    assert entries[3].test_nll == "85.05 ± 0.021 nats"
    assert explore.list_checkpoints(tmp_path / "missing") == []


def test_checkpoints_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv(explore.CHECKPOINTS_ENV, str(tmp_path))
    assert explore.checkpoints_dir() == tmp_path
    monkeypatch.delenv(explore.CHECKPOINTS_ENV)
    assert explore.checkpoints_dir().name == "checkpoints"


# ---- URL state ----------------------------------------------------------------------------------

CONFIGS = {"att": DrawConfig(**TINY), "noatt": DrawConfig(**{**TINY, "T": 6}, attention=False)}


def test_empty_url_gives_defaults():
    s, notes = explore.parse_state({}, CONFIGS, None)
    assert s == ViewState(model="att") and notes == []


def test_valid_url_is_read():
    params = {"model": "noatt", "compare": "att", "mode": "reconstruct", "seed": "42", "source": "test"}
    params |= {"index": "7", "t": "6", "zt": "2", "edits": "3:1.5,0:-2", "resample": "9", "closed": "1", "dims": "1,4"}
    s, notes = explore.parse_state(params, CONFIGS, n_test=10)
    assert notes == []
    assert s == ViewState("noatt", "att", "reconstruct", 42, "test", 7, 6, 2, ((0, -2.0), (3, 1.5)), 9, True, (1, 4))


@pytest.mark.parametrize(
    "key, value",
    [
        ("model", "nope"),
        ("mode", "paint"),
        ("seed", "-1"),
        ("seed", "abc"),
        ("seed", "1e3"),
        ("index", "10"),
        ("t", "9"),  # T = 8
        ("zt", "0"),
        ("edits", "8:1"),  # z_size = 8
        ("edits", "1:nan"),
        ("edits", "1:9"),
        ("edits", "1"),
        ("closed", "maybe"),
        ("dims", "1,x"),
        ("source", "camera"),
    ],
)
def test_bad_url_values_fall_back_with_a_note(key, value):
    s, notes = explore.parse_state({key: value}, CONFIGS, n_test=10)
    assert getattr(s, key) == getattr(ViewState(model="att"), key)
    assert len(notes) == 1 and key in notes[0]


def test_unknown_and_unavailable_url_values_are_noted():
    s, notes = explore.parse_state({"colour": "red", "index": "3"}, CONFIGS, n_test=None)
    assert s.index == 0 and len(notes) == 2
    s, _ = explore.parse_state({"model": "att", "compare": "att"}, CONFIGS, None)
    assert s.compare is None
    s, _ = explore.parse_state({"seed": ["1", "2"]}, CONFIGS, None)  # repeated: the last wins
    assert s.seed == 2


def test_state_to_params_drops_defaults_and_generate_only_fields():
    assert explore.state_to_params(ViewState(model="att")) == {"model": "att"}
    p = explore.state_to_params(ViewState(model="att", mode="generate", index=5, closed=True))
    assert p == {"model": "att"}


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from(list(CONFIGS)),
    mode=st.sampled_from(explore.MODES),
    seed=st.integers(0, explore.MAX_SEED),
    source=st.sampled_from(explore.SOURCES),
    index=st.integers(0, 9),
    t=st.none() | st.integers(0, 6),
    zt=st.none() | st.integers(1, 6),
    edits=st.dictionaries(st.integers(0, 7), st.integers(-40, 40).map(lambda v: v / 10), max_size=4),
    resample=st.none() | st.integers(0, explore.MAX_SEED),
    closed=st.booleans(),
    dims=st.lists(st.integers(0, 7), unique=True, max_size=5),
)
def test_url_round_trip(model, mode, seed, source, index, t, zt, edits, resample, closed, dims):
    s = ViewState(model, None, mode, seed, source, index, t, zt, tuple(sorted(edits.items())), resample, closed)
    s = ViewState(**{**s.__dict__, "dims": tuple(dims)})
    if mode == "generate":
        s = ViewState(**{**s.__dict__, "source": "test", "index": 0, "closed": False})
    back, notes = explore.parse_state(explore.state_to_params(s), CONFIGS, n_test=10)
    assert notes == [] and back == s
