"""The DRAW model: loss terms, KL, gradients, both variants."""

import copy

import pytest
import torch
from tiny import needs_cxx

from draw.config import DrawConfig
from draw.model import DRAW, bernoulli_nll, gaussian_kl

SMALL = dict(height=9, width=10, T=4, read_n=2, write_n=3, enc_size=12, dec_size=12, z_size=3)


@pytest.fixture(params=[True, False], ids=["attention", "no-attention"])
def model(request) -> DRAW:
    torch.manual_seed(0)
    return DRAW(DrawConfig(**SMALL, attention=request.param))


def test_analytic_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([0.7, -1.2, 0.0]), torch.tensor([-0.5, 0.8, 0.0])
    z = mu + torch.exp(0.5 * logvar) * torch.randn(400_000, 3)
    log_q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z)
    torch.testing.assert_close((log_q - log_p).mean(0), gaussian_kl(mu, logvar), atol=0.01, rtol=0)
    assert gaussian_kl(mu, logvar)[2] == 0  # q = p


def test_bernoulli_nll_sums_over_pixels():
    logits = torch.tensor([[[0.0, 2.0], [-1.0, 0.5]]])
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    p = torch.sigmoid(logits)
    expected = -(x * p.log() + (1 - x) * (1 - p).log()).sum()
    torch.testing.assert_close(bernoulli_nll(logits, x), expected[None])


def test_loss_is_recon_plus_beta_kl(model):
    x = (torch.rand(5, 9, 10) > 0.5).float()
    noise = torch.randn(5, 4, 3)
    out = model(x, noise)
    assert out.canvas.shape == (5, 9, 10) and out.recon.shape == (5,) and out.kl.shape == (5, 4)
    torch.testing.assert_close(out.recon, bernoulli_nll(out.canvas, x))
    beta4 = DRAW(DrawConfig(**SMALL, attention=model.cfg.attention, beta=4.0))
    beta4.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    loss4, out4 = beta4.loss(x)
    torch.testing.assert_close(loss4, (out4.recon + 4 * out4.kl.sum(1)).mean())


def test_canvas_is_the_sum_of_writes(model):
    """c_T = sum_t write(h_dec_t) from a blank canvas: zero the head and the canvas stays blank."""
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    if model.cfg.attention:
        out = model(torch.zeros(2, 9, 10))
        assert torch.count_nonzero(out.canvas) == 0


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_loss_is_finite_on_blank_and_full_images(model, value):
    loss, out = model.loss(torch.full((3, 9, 10), value))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("attention", [True, False])
def test_gradcheck_full_model(attention):
    """Gradients of the loss wrt the head (attention, patch, canvas), the encoder and the image."""
    torch.manual_seed(0)
    cfg = DrawConfig(height=5, width=6, T=3, read_n=2, write_n=2, enc_size=4, dec_size=4, z_size=2, attention=attention)
    model = DRAW(cfg).double()
    x = torch.rand(2, 5, 6, dtype=torch.float64)
    noise = torch.randn(2, 3, 2, dtype=torch.float64)
    names = ["head.weight", "encoder.weight_ih", "latent.bias"]
    params = dict(model.named_parameters())

    def loss(xx, *tensors):
        out = torch.func.functional_call(model, {**params, **dict(zip(names, tensors, strict=True))}, (xx, noise))
        return out.recon + out.kl.sum(1)

    inputs = [x.clone().requires_grad_()] + [params[n].detach().clone().requires_grad_() for n in names]
    assert torch.autograd.gradcheck(loss, inputs)


def test_importance_weight_terms():
    """log p(z) - log q(z|x) summed over steps, checked against torch.distributions."""
    torch.manual_seed(0)
    model = DRAW(DrawConfig(**SMALL))
    x = torch.rand(2, 9, 10)
    noise = torch.randn(2, 4, 3)
    out = model(x, noise)
    # recover mu, sigma step by step through the public step functions
    enc, dec, canvas, head_out = model.initial_state(2)
    expected = torch.zeros(2)
    for t in range(4):
        glimpse, _ = model.read(x, x - torch.sigmoid(canvas), head_out)
        mu, logvar, enc = model.encode(glimpse.flatten(1), dec[0], enc)
        z = mu + torch.exp(0.5 * logvar) * noise[:, t]
        q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
        expected += (torch.distributions.Normal(0.0, 1.0).log_prob(z) - q.log_prob(z)).sum(1)
        dec, head_out = model.decode(z, dec)
        canvas = canvas + model.write(head_out)[0]
    torch.testing.assert_close(out.log_pz_qz, expected)


def test_initial_windows_cover_the_image():
    model = DRAW(DrawConfig())
    _, _, _, head_out = model.initial_state(1)
    for window, n in ((model.read_window(head_out), 2), (model.write_window(head_out), 5)):
        assert window.gx.item() == pytest.approx(14.5) and window.gy.item() == pytest.approx(14.5)
        assert window.delta.item() * (n - 1) == pytest.approx(27 / 2)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="read_n"):
        DrawConfig(read_n=1)
    with pytest.raises(ValueError, match="beta"):
        DrawConfig(beta=0)
    with pytest.raises(ValueError, match="unknown"):
        DrawConfig.from_dict({"T": 3, "colour": True})


@needs_cxx
def test_compiled_step_computes_the_eager_loss_and_gradients(model):
    x, noise = (torch.rand(5, 9, 10) > 0.5).float(), torch.randn(5, 4, 3)
    compiled = copy.deepcopy(model)
    compiled.compile_step()
    losses, grads = [], []
    for m in (model, compiled):
        loss, _ = m.loss(x, noise)
        loss.backward()
        losses.append(loss)
        grads.append([p.grad for p in m.parameters()])
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=0)
    for g_compiled, g_eager in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(g_compiled, g_eager, rtol=1e-4, atol=1e-6)
