"""The paper's 2-D Gaussian filterbank attention (Gregor et al. 2015, section 3.2).

Pure functions on tensors. Pixel coordinates follow the paper: column a = 1..A, row b = 1..B,
so a window with delta = 1 centred at ((A+1)/2, (B+1)/2) with N = A puts filter i on pixel i.
"""

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


def attention_params(raw: torch.Tensor, n: int, height: int, width: int) -> AttentionParams:
    """Map the linear output (g~X, g~Y, log sigma^2, log delta~, log gamma) of shape (B, 5)."""
    gx_, gy_, log_sigma2, log_delta_, log_gamma = raw.unbind(-1)
    gx = (width + 1) / 2 * (gx_ + 1)
    gy = (height + 1) / 2 * (gy_ + 1)
    delta = (max(width, height) - 1) / (n - 1) * torch.exp(log_delta_)
    return AttentionParams(gx, gy, torch.exp(log_sigma2), delta, torch.exp(log_gamma))


def filter_centres(centre: torch.Tensor, delta: torch.Tensor, n: int) -> torch.Tensor:
    """mu^i = g + (i - N/2 - 0.5) * delta for i = 1..N. (B,), (B,) -> (B, N)."""
    offsets = torch.arange(1, n + 1, dtype=centre.dtype, device=centre.device) - n / 2 - 0.5
    return centre[:, None] + offsets * delta[:, None]


def filterbank(p: AttentionParams, n: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical filterbanks F_X (B, N, A) and F_Y (B, N, B), rows summing to 1."""

    def bank(centre: torch.Tensor, size: int) -> torch.Tensor:
        mu = filter_centres(centre, p.delta, n)  # (B, N)
        pixels = torch.arange(1, size + 1, dtype=mu.dtype, device=mu.device)  # (size,)
        f = torch.exp(-((pixels - mu[:, :, None]) ** 2) / (2 * p.sigma2[:, None, None]))
        return f / f.sum(-1, keepdim=True).clamp_min(FILTER_EPS)

    return bank(p.gx, width), bank(p.gy, height)


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
