"""The paper's 2-D Gaussian filterbank attention (Gregor et al. 2015, section 3.2).

Pure functions on tensors. Pixel coordinates follow the paper: column a = 1..A, row b = 1..B,
so a window with delta = 1 centred at ((A+1)/2, (B+1)/2) with N = A puts filter i on pixel i.
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


@functools.cache
def _affine(n: int, height: int, width: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Scale and shift (2, 5) taking the raw outputs to (gX, gY, log sigma^2, log delta, log gamma):
    g = (size + 1) / 2 * (g~ + 1) and log delta = log delta~ + log((max(A, B) - 1) / (N - 1)).
    Cached per shape; built outside inference_mode so that training can save it for backward."""
    with torch.inference_mode(False):
        cx, cy = (width + 1) / 2, (height + 1) / 2
        log_stride = math.log((max(width, height) - 1) / (n - 1))
        return torch.tensor([[cx, cy, 1, 1, 1], [cx, cy, 0, log_stride, 0]], dtype=dtype, device=device)


def attention_params(raw: torch.Tensor, n: int, height: int, width: int) -> AttentionParams:
    """Map the linear output (g~X, g~Y, log sigma^2, log delta~, log gamma) of shape (B, 5)."""
    scale, shift = _affine(n, height, width, raw.dtype, raw.device)
    v = torch.addcmul(shift, raw, scale)  # one op for the whole affine map, (B, 5)
    sigma2, delta, gamma = v[:, 2:].exp().unbind(-1)
    return AttentionParams(v[:, 0], v[:, 1], sigma2, delta, gamma)


@functools.cache
def _offsets(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """i - N/2 - 0.5 for i = 1..N, (N,). Cached like `_affine`."""
    with torch.inference_mode(False):
        return torch.arange(1, n + 1, dtype=dtype, device=device) - n / 2 - 0.5


@functools.cache
def _pixels(height: int, width: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates 1..S, S = max(A, B), for the x and y axes (2, 1, S), and a mask (2, 1, S)
    that is 1 on each axis's own pixels and 0 past them. Cached like `_affine`."""
    size = max(height, width)
    with torch.inference_mode(False):
        pixels = torch.arange(1, size + 1, dtype=dtype, device=device).expand(2, 1, size)
        inside = (pixels <= torch.tensor([width, height], device=device)[:, None, None]).to(dtype)
        return pixels, inside


def filter_centres(centre: torch.Tensor, delta: torch.Tensor, n: int) -> torch.Tensor:
    """mu^i = g + (i - N/2 - 0.5) * delta for i = 1..N. centre, delta (...) -> (..., N)."""
    return torch.addcmul(centre[..., None], _offsets(n, centre.dtype, centre.device), delta[..., None])


def filterbank(p: AttentionParams, n: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical filterbanks F_X (B, N, A) and F_Y (B, N, B), rows summing to 1.

    Both axes in one broadcasted expression over pixels 1..max(A, B); on the shorter axis the
    columns past its size are zeroed before normalising and then dropped."""
    pixels, inside = _pixels(height, width, p.gx.dtype, p.gx.device)  # (2, 1, S)
    mu = filter_centres(torch.stack([p.gx, p.gy], dim=1), p.delta[:, None], n)  # (B, 2, N)
    f = torch.exp((pixels - mu[..., None]).square() / (-2 * p.sigma2)[:, None, None, None])  # (B, 2, N, S)
    if height != width:
        f = f * inside
    f = f / f.sum(-1, keepdim=True).clamp_min(FILTER_EPS)
    return f[:, 0, :, :width], f[:, 1, :, :height]


def read(images: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """gamma * F_Y x F_X^T for a stack of images. (B, C, H, W) -> glimpses (B, C, N, N)."""
    glimpse = fy[:, None] @ images @ fx[:, None].transpose(-1, -2)
    return gamma[:, None, None, None] * glimpse


def write(patch: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """(1 / gamma) * F_Y^T w F_X. patch (B, N, N) -> canvas update (B, H, W)."""
    return (fy.transpose(-1, -2) @ patch @ fx) / gamma[:, None, None]


def box(p: AttentionParams, n: int) -> torch.Tensor:
    """The square each window covers, N * delta wide around its centre, as (x0, y0, x1, y1) in
    0-based pixel coordinates (pixel (0, 0) is centred on (0, 0)). (B,) params -> (B, 4)."""
    half = n * p.delta / 2
    cx, cy = p.gx - 1, p.gy - 1
    return torch.stack([cx - half, cy - half, cx + half, cy + half], dim=-1)
