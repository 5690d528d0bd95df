"""The trace API: one pass records what the training pass computes, and re-decoding with edited
latents changes exactly what it should."""

import pytest
import torch

from draw import attention
from draw.config import DrawConfig
from draw.model import DRAW, gaussian_kl
from draw.trace import final_canvas, generate, reconstruct, redecode

CFG = dict(T=6, enc_size=32, dec_size=32, z_size=5, read_n=2, write_n=3)


def make_model(attention: bool) -> DRAW:
    torch.manual_seed(0)
    model = DRAW(DrawConfig(attention=attention, **CFG)).eval()
    with torch.no_grad():  # larger weights than the default init, so every step matters
        for p in model.parameters():
            p.mul_(3)
    return model


@pytest.fixture(scope="module", params=[True, False], ids=["attention", "no_attention"])
def model(request) -> DRAW:
    return make_model(request.param)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.bernoulli(torch.full((3, 28, 28), 0.3), generator=torch.Generator().manual_seed(1))


def test_reconstruct_records_the_training_pass(model, images):
    trace = reconstruct(model, images, seed=3)
    with torch.no_grad():
        out = model(images, trace.eps)
    torch.testing.assert_close(trace.canvas[:, -1], out.canvas)
    torch.testing.assert_close(trace.kl_per_step, out.kl)
    torch.testing.assert_close(trace.recon_nats, out.recon)
    torch.testing.assert_close(trace.kl, gaussian_kl(trace.mu, trace.logvar))
    torch.testing.assert_close(trace.z, trace.mu + torch.exp(0.5 * trace.logvar) * trace.eps)


def test_trace_shapes(model, images):
    c = model.cfg
    trace = reconstruct(model, images)
    B, T, Z = len(images), c.T, c.z_size
    assert trace.canvas.shape == (B, T + 1, 28, 28)
    assert not trace.canvas[:, 0].any(), "c_0 is a blank canvas"
    for name in ("mu", "logvar", "eps", "z", "kl"):
        assert getattr(trace, name).shape == (B, T, Z), name
    for name in ("h_enc", "c_enc", "h_dec", "c_dec"):
        assert getattr(trace, name).shape[:2] == (B, T + 1), name
    if c.attention:
        assert trace.read_glimpse.shape == (B, T, 2, c.read_n, c.read_n)
        assert trace.write_patch.shape == (B, T, c.write_n, c.write_n)
        assert all(v.shape == (B, T) for v in trace.read_window + trace.write_window)
        assert trace.read_box(c.read_n).shape == trace.write_box(c.write_n).shape == (B, T, 4)
    else:
        assert trace.read_glimpse.shape == (B, T, 2, 28, 28)
        assert trace.write_patch.shape == (B, T, 28, 28)
        assert trace.read_window is trace.write_window is trace.read_box(2) is None


def test_canvas_increments_are_the_recorded_writes(model, images):
    """c_t - c_{t-1} = write(w_t) through the recorded write window, step by step."""
    c = model.cfg
    trace = reconstruct(model, images)
    for s in range(c.T):
        increment = trace.canvas[:, s + 1] - trace.canvas[:, s]
        if c.attention:
            p = attention.AttentionParams(*(v[:, s] for v in trace.write_window))
            fx, fy = attention.filterbank(p, c.write_n, c.height, c.width)
            expected = attention.write(trace.write_patch[:, s], fx, fy, p.gamma)
        else:
            expected = trace.write_patch[:, s]
        torch.testing.assert_close(increment, expected, atol=1e-5, rtol=1e-5)


def test_glimpses_read_x_and_the_error_image(model, images):
    """The glimpse at step t reads [x, x - sigmoid(c_{t-1})] through the recorded read window."""
    c = model.cfg
    trace = reconstruct(model, images)
    for s in range(c.T):
        pair = torch.stack([images, images - torch.sigmoid(trace.canvas[:, s])], dim=1)
        if c.attention:
            p = attention.AttentionParams(*(v[:, s] for v in trace.read_window))
            fx, fy = attention.filterbank(p, c.read_n, c.height, c.width)
            expected = attention.read(pair, fx, fy, p.gamma)
        else:
            expected = pair
        torch.testing.assert_close(trace.read_glimpse[:, s], expected, atol=1e-5, rtol=1e-5)


def test_generate_is_reproducible_by_seed_and_draws_z_from_the_prior(model):
    a, b, other = generate(model, 4, seed=7), generate(model, 4, seed=7), generate(model, 4, seed=8)
    assert torch.equal(a.canvas, b.canvas)
    assert not torch.allclose(a.canvas[:, -1], other.canvas[:, -1])
    assert torch.equal(a.z, a.eps) and not a.mu.any() and not a.kl.any()
    assert a.x is None and a.read_glimpse is None and a.recon_nats is None
    assert not torch.allclose(a.canvas[0, -1], a.canvas[1, -1]), "each drawing has its own noise"


def edited_z(trace, step: int, k: int = 1, shift: float = 2.0) -> torch.Tensor:
    """z_step (k, Z): the trace's z at step with dimension 0 moved by shift * (1..k)."""
    z = trace.z[:1, step].repeat(k, 1)
    z[:, 0] += shift * torch.arange(1, k + 1)
    return z


@pytest.mark.parametrize("step", [0, 2, 5])
def test_open_loop_edit_changes_only_steps_from_t(model, images, step):
    trace = reconstruct(model, images[:1])
    edited = redecode(model, trace, step, edited_z(trace, step))
    # states and canvases up to index step (c_0..c_step) are those before the edited step
    torch.testing.assert_close(edited.canvas[:, : step + 1], trace.canvas[:, : step + 1], rtol=0, atol=0)
    torch.testing.assert_close(edited.h_dec[:, : step + 1], trace.h_dec[:, : step + 1], rtol=0, atol=0)
    torch.testing.assert_close(edited.z[:, :step], trace.z[:, :step], rtol=0, atol=0)
    torch.testing.assert_close(edited.z[:, step + 1 :], trace.z[:, step + 1 :], rtol=0, atol=0)
    assert edited.z[0, step, 0] == trace.z[0, step, 0] + 2
    assert not torch.allclose(edited.canvas[:, step + 1], trace.canvas[:, step + 1])
    assert not torch.allclose(edited.canvas[:, -1], trace.canvas[:, -1])


@pytest.mark.parametrize("closed_loop", [False, True])
def test_redecoding_the_same_z_reproduces_the_trace(model, images, closed_loop):
    trace = reconstruct(model, images[:1])
    again = redecode(model, trace, 2, trace.z[:, 2], closed_loop=closed_loop)
    for name in ("canvas", "z", "mu", "logvar", "kl", "h_enc", "h_dec"):
        torch.testing.assert_close(getattr(again, name), getattr(trace, name), msg=name)


def test_closed_loop_reinfers_later_latents_with_the_same_noise(model, images):
    step = 2
    trace = reconstruct(model, images[:1])
    edited = redecode(model, trace, step, edited_z(trace, step), closed_loop=True)
    later = slice(step + 1, None)
    torch.testing.assert_close(edited.eps, trace.eps)
    assert edited.z[0, step, 0] == trace.z[0, step, 0] + 2, "the edited step keeps the edit"
    torch.testing.assert_close(
        edited.z[:, later], edited.mu[:, later] + torch.exp(0.5 * edited.logvar[:, later]) * edited.eps[:, later]
    )
    assert not torch.allclose(edited.z[:, later], trace.z[:, later]), "the encoder saw a different canvas"
    torch.testing.assert_close(edited.z[:, :step], trace.z[:, :step], rtol=0, atol=0)


def test_closed_loop_needs_an_image(model):
    trace = generate(model, 1)
    with pytest.raises(ValueError, match="reconstruct mode"):
        redecode(model, trace, 1, trace.z[:, 1], closed_loop=True)


@pytest.mark.parametrize("mode", ["reconstruct", "generate"])
@pytest.mark.parametrize("step", [0, 3, 5])
def test_final_canvas_is_the_open_loop_redecodes_last_canvas(model, images, mode, step):
    """The decoder-only shortcut the traversal grid uses draws what the full redraw draws."""
    trace = reconstruct(model, images[:1], seed=1) if mode == "reconstruct" else generate(model, 1, seed=1)
    z = edited_z(trace, step, k=3)
    expected = redecode(model, trace, step, z).canvas[:, -1]
    torch.testing.assert_close(final_canvas(model, trace, step, z), expected, rtol=1e-5, atol=1e-5)
    # a trace of batch K takes one z_step row per image
    batch = trace.select([0, 0, 0])
    torch.testing.assert_close(final_canvas(model, batch, step, z), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="step"):
        final_canvas(model, trace, trace.steps, z)


@pytest.mark.parametrize("closed_loop", [False, True])
def test_a_batch_of_edits_equals_the_edits_one_by_one(model, images, closed_loop):
    step, k = 3, 4
    trace = reconstruct(model, images[:1])
    z = edited_z(trace, step, k, shift=-0.7)
    batched = redecode(model, trace, step, z, closed_loop=closed_loop)
    assert batched.canvas.shape[0] == k
    for i in range(k):
        single = redecode(model, trace, step, z[i : i + 1], closed_loop=closed_loop)
        torch.testing.assert_close(batched.canvas[i : i + 1], single.canvas, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batched.z[i : i + 1], single.z, atol=1e-5, rtol=1e-5)


def test_generate_mode_edits_redraw_from_the_prior_latents(model):
    trace = generate(model, 1, seed=2)
    edited = redecode(model, trace, 1, edited_z(trace, 1))
    assert edited.mode == "generate" and edited.x is None
    torch.testing.assert_close(edited.z[:, 2:], trace.z[:, 2:], rtol=0, atol=0)
    assert not torch.allclose(edited.canvas[:, -1], trace.canvas[:, -1])


def test_select_keeps_the_batch_axis(model, images):
    trace = reconstruct(model, images)
    one = trace.select(1)
    assert one.batch_size == 1
    torch.testing.assert_close(one.canvas[0], trace.canvas[1])
    if model.cfg.attention:
        torch.testing.assert_close(one.read_window.gx[0], trace.read_window.gx[1])
    assert one.canvas.untyped_storage().data_ptr() == trace.canvas.untyped_storage().data_ptr()  # a view
    last = trace.select(-1)
    assert last.batch_size == 1
    torch.testing.assert_close(last.z[0], trace.z[-1])


def test_bad_inputs_are_refused(model, images):
    with pytest.raises(ValueError, match="shape"):
        reconstruct(model, images[:, :20])
    trace = reconstruct(model, images[:1])
    with pytest.raises(ValueError, match="step"):
        redecode(model, trace, model.cfg.T, trace.z[:, 0])
    batch = reconstruct(model, images)
    with pytest.raises(ValueError, match="rows"):
        redecode(model, batch, 1, batch.z[:2, 1])
