"""The filterbank against the paper's definitions and a plain loop over pixels."""

import math

import torch

from draw import attention
from draw.attention import AttentionParams


def params(gx, gy, sigma2, delta, gamma=1.0, dtype=torch.float32) -> AttentionParams:
    return AttentionParams(*(torch.tensor([v], dtype=dtype) for v in (gx, gy, sigma2, delta, gamma)))


def slow_filterbank(p: AttentionParams, n: int, size: int, centre: float) -> torch.Tensor:
    """F[i, a] = exp(-(a - mu_i)^2 / 2 sigma^2) / Z_i, one pixel at a time (1-based a, i)."""
    f = torch.zeros(n, size, dtype=torch.float64)
    for i in range(1, n + 1):
        mu = centre + (i - n / 2 - 0.5) * p.delta.item()
        for a in range(1, size + 1):
            f[i - 1, a - 1] = math.exp(-((a - mu) ** 2) / (2 * p.sigma2.item()))
        f[i - 1] /= max(f[i - 1].sum().item(), attention.FILTER_EPS)
    return f


def test_params_follow_the_paper():
    raw = torch.tensor([[0.0, 0.0, math.log(2.0), 0.0, math.log(3.0)], [-1.0, 1.0, 0.0, math.log(0.5), 0.0]])
    p = attention.attention_params(raw, n=5, height=20, width=28)
    torch.testing.assert_close(p.gx, torch.tensor([14.5, 0.0]))  # (A + 1) / 2 * (g~ + 1)
    torch.testing.assert_close(p.gy, torch.tensor([10.5, 21.0]))  # (B + 1) / 2 * (g~ + 1)
    torch.testing.assert_close(p.delta, torch.tensor([27 / 4, 27 / 8]))  # (max(A, B) - 1) / (N - 1) * delta~
    torch.testing.assert_close(p.sigma2, torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(p.gamma, torch.tensor([3.0, 1.0]))


def test_filterbank_matches_pixel_loop():
    p = params(gx=9.3, gy=17.1, sigma2=2.7, delta=3.4, dtype=torch.float64)
    fx, fy = attention.filterbank(p, n=4, height=20, width=28)
    assert fx.shape == (1, 4, 28) and fy.shape == (1, 4, 20)
    torch.testing.assert_close(fx[0], slow_filterbank(p, 4, 28, 9.3))
    torch.testing.assert_close(fy[0], slow_filterbank(p, 4, 20, 17.1))


def test_filters_sum_to_one_even_far_off_the_image():
    p = AttentionParams(
        gx=torch.tensor([14.5, 500.0, -300.0]),
        gy=torch.tensor([14.5, -200.0, 14.5]),
        sigma2=torch.tensor([1.0, 1e-4, 0.5]),
        delta=torch.tensor([2.0, 1.0, 3.0]),
        gamma=torch.ones(3),
    )
    fx, fy = attention.filterbank(p, n=5, height=28, width=28)
    assert torch.isfinite(fx).all() and torch.isfinite(fy).all()
    torch.testing.assert_close(fx[0].sum(-1), torch.ones(5))
    torch.testing.assert_close(fy[0].sum(-1), torch.ones(5))


def test_unit_stride_tiny_sigma_window_reads_exact_pixels():
    """N = A, delta = 1, centred: filter i sits on pixel i, so the glimpse is the image."""
    size = 12
    x = torch.rand(1, 1, size, size)
    p = params(gx=(size + 1) / 2, gy=(size + 1) / 2, sigma2=1e-3, delta=1.0)
    fx, fy = attention.filterbank(p, n=size, height=size, width=size)
    torch.testing.assert_close(attention.read(x, fx, fy, p.gamma), x)
    # and the write of that window puts the patch back in place
    torch.testing.assert_close(attention.write(x[:, 0], fx, fy, p.gamma), x[:, 0])


def test_read_and_write_are_adjoint():
    """<F_Y x F_X^T, w> = <x, F_Y^T w F_X> for gamma = 1."""
    g = torch.Generator().manual_seed(0)
    p = params(gx=11.0, gy=15.0, sigma2=1.7, delta=2.3, dtype=torch.float64)
    fx, fy = attention.filterbank(p, n=5, height=24, width=28)
    x = torch.rand(1, 1, 24, 28, generator=g, dtype=torch.float64)
    w = torch.rand(1, 5, 5, generator=g, dtype=torch.float64)
    lhs = (attention.read(x, fx, fy, p.gamma)[:, 0] * w).sum()
    rhs = (x[:, 0] * attention.write(w, fx, fy, p.gamma)).sum()
    torch.testing.assert_close(lhs, rhs)


def test_gamma_scales_read_and_divides_write():
    p1, p3 = params(14, 14, 2.0, 2.0, 1.0), params(14, 14, 2.0, 2.0, 3.0)
    fx, fy = attention.filterbank(p1, n=3, height=28, width=28)
    x, w = torch.rand(1, 2, 28, 28), torch.rand(1, 3, 3)
    torch.testing.assert_close(attention.read(x, fx, fy, p3.gamma), 3 * attention.read(x, fx, fy, p1.gamma))
    torch.testing.assert_close(attention.write(w, fx, fy, p3.gamma), attention.write(w, fx, fy, p1.gamma) / 3)


def test_gradcheck_through_params_read_and_write():
    torch.manual_seed(0)
    raw = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    x = torch.rand(2, 2, 9, 10, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)

    def read_then_write(raw, x, w):
        p = attention.attention_params(raw, n=3, height=9, width=10)
        fx, fy = attention.filterbank(p, n=3, height=9, width=10)
        return attention.read(x, fx, fy, p.gamma), attention.write(w, fx, fy, p.gamma)

    assert torch.autograd.gradcheck(read_then_write, (raw, x, w))


def test_box_is_n_delta_wide_around_the_0_based_centre():
    p = AttentionParams(*(torch.tensor([v, v + 1]) for v in (10.0, 5.0, 1.0, 2.0, 1.0)))
    b = attention.box(p, n=4)
    # centre (9, 4) and (10, 5) in 0-based pixels; half-width N * delta / 2 = 4 and 6
    torch.testing.assert_close(b, torch.tensor([[5.0, 0.0, 13.0, 8.0], [4.0, -1.0, 16.0, 11.0]]))
