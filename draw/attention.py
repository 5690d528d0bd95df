"""The paper's 2-D Gaussian filterbank attention (Gregor et al. 2015, section 3.2).

Pure functions on tensors. Pixel coordinates follow the paper: column a = 1..A, row b = 1..B,
so a window with delta = 1 centred at ((A+1)/2, (B+1)/2) with N = A puts filter i on pixel i.

The model computes several windows at once (the write window of step t and the read window of
step t + 1 come from the same h_dec_t): `window_params` and `filters` take K windows of N_k
filters each and build all of their filters in one set of ops.
"""

import functools
import math
from typing import NamedTuple

import torch

# Guards the filter normaliser Z against 0 when sigma is tiny and the window is off the image.
FILTER_EPS = 1e-8


class AttentionParams(NamedTuple):
    """Window parameters in pixel units, each of shape (B,)."""

    gx: torch.Tensor  # centre column, 1-based
    gy: torch.Tensor  # centre row, 1-based
    sigma2: torch.Tensor  # isotropic variance of each Gaussian filter, pixels^2
    delta: torch.Tensor  # stride between filter centres, pixels
    gamma: torch.Tensor  # intensity (read multiplies by it, write divides by it)


# The constant tensors below are cached per shape and built outside inference_mode, so that
# training can save them for backward.


@functools.cache
def _affine(ns: tuple[int, ...], height: int, width: int, dtype, device) -> torch.Tensor:
    """Scale and shift (2, K, 5) taking each window's raw outputs to (gX, gY, log sigma^2, log delta,
    log gamma): g = (size + 1) / 2 * (g~ + 1) and log delta = log delta~ + log((max(A, B) - 1) / (N - 1))."""
    with torch.inference_mode(False):
        cx, cy = (width + 1) / 2, (height + 1) / 2
        rows = [([cx, cy, 1, 1, 1], [cx, cy, 0, math.log((max(width, height) - 1) / (n - 1)), 0]) for n in ns]
        return torch.tensor(rows, dtype=dtype, device=device).transpose(0, 1).contiguous()


@functools.cache
def _filter_layout(ns: tuple[int, ...], dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """For the filters of K windows laid end to end: the window of each filter (F,), and its offset
    i - N/2 - 0.5 for i = 1..N (F, 1), F = sum N_k."""
    with torch.inference_mode(False):
        window = torch.cat([torch.full((n,), k, device=device) for k, n in enumerate(ns)])
        offset = torch.cat([torch.arange(1, n + 1, dtype=dtype, device=device) - n / 2 - 0.5 for n in ns])
        return window, offset[:, None]


@functools.cache
def _pixels(height: int, width: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates 1..S, S = max(A, B), for the x and y axes (2, S), and a mask (2, S) that is
    1 on each axis's own pixels and 0 past them."""
    size = max(height, width)
    with torch.inference_mode(False):
        pixels = torch.arange(1, size + 1, dtype=dtype, device=device).expand(2, size)
        inside = (pixels <= torch.tensor([[width], [height]], device=device)).to(dtype)
        return pixels, inside


def window_params(raw: torch.Tensor, ns: tuple[int, ...], height: int, width: int) -> torch.Tensor:
    """Raw linear outputs (g~X, g~Y, log sigma^2, log delta~, log gamma) of K windows (B, K, 5) ->
    (gX, gY, sigma^2, delta, gamma) in pixel units (B, K, 5)."""
    scale, shift = _affine(ns, height, width, raw.dtype, raw.device)
    v = torch.addcmul(shift, raw, scale)  # one op for the whole affine map
    return torch.cat([v[..., :2], v[..., 2:].exp()], dim=-1)


def attention_params(raw: torch.Tensor, n: int, height: int, width: int) -> AttentionParams:
    """One window from its raw linear outputs (B, 5)."""
    return AttentionParams(*window_params(raw[:, None], (n,), height, width)[:, 0].unbind(-1))


def filter_centres(centre: torch.Tensor, delta: torch.Tensor, n: int) -> torch.Tensor:
    """mu^i = g + (i - N/2 - 0.5) * delta for i = 1..N. centre, delta (...) -> (..., N)."""
    offset = _filter_layout((n,), centre.dtype, centre.device)[1][:, 0]
    return torch.addcmul(centre[..., None], offset, delta[..., None])


def filters(v: torch.Tensor, ns: tuple[int, ...], height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Filterbanks F_X (B, F, A) and F_Y (B, F, B) of K windows v (B, K, 5), their N_k rows each
    laid end to end (F = sum N_k), every row summing to 1:
        F[i, a] = exp(-(a - mu^i)^2 / (2 sigma^2)) / Z_i,  mu^i = g + (i - N/2 - 0.5) * delta.
    Both axes in one broadcasted expression over pixels 1..max(A, B); on the shorter axis the
    columns past its size are zeroed before normalising and then dropped."""
    window, offset = _filter_layout(ns, v.dtype, v.device)
    pixels, inside = _pixels(height, width, v.dtype, v.device)
    per_filter = v[:, window]  # (B, F, 5)
    mu = torch.addcmul(per_filter[..., :2], offset, per_filter[..., 3:4])  # (B, F, 2): x and y centres
    f = torch.exp((pixels - mu[..., None]).square() / (-2 * per_filter[..., 2, None, None]))  # (B, F, 2, S)
    if height != width:
        f = f * inside
    f = f / f.sum(-1, keepdim=True).clamp_min(FILTER_EPS)
    return f[:, :, 0, :width], f[:, :, 1, :height]


def filterbank(p: AttentionParams, n: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """F_X (B, N, A) and F_Y (B, N, B) of one window."""
    return filters(torch.stack(p, dim=-1)[:, None], (n,), height, width)


def read(images: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """gamma * F_Y x F_X^T for a stack of images. (B, C, H, W) -> glimpses (B, C, N, N)."""
    glimpse = fy[:, None] @ images @ fx[:, None].transpose(-1, -2)
    return gamma[:, None, None, None] * glimpse


def write(patch: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """(1 / gamma) * F_Y^T w F_X. patch (B, N, N) -> canvas update (B, H, W)."""
    return fy.transpose(-1, -2) @ (patch / gamma[:, None, None]) @ fx


def box(p: AttentionParams, n: int) -> torch.Tensor:
    """The square each window covers, N * delta wide around its centre, as (x0, y0, x1, y1) in
    0-based pixel coordinates (pixel (0, 0) is centred on (0, 0)). (B,) params -> (B, 4)."""
    half = n * p.delta / 2
    cx, cy = p.gx - 1, p.gy - 1
    return torch.stack([cx - half, cy - half, cx + half, cy + half], dim=-1)
