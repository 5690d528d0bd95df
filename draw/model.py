"""DRAW: Deep Recurrent Attentive Writer (Gregor et al. 2015).

Per step t = 1..T (section 2 of the paper):
    x_hat_t = x - sigmoid(c_{t-1})
    r_t     = read(x, x_hat_t, h_dec_{t-1})
    h_enc_t = LSTM_enc(h_enc_{t-1}, [r_t, h_dec_{t-1}])
    z_t     ~ q(z_t | h_enc_t) = N(mu_t, sigma_t^2)
    h_dec_t = LSTM_dec(h_dec_{t-1}, z_t)
    c_t     = c_{t-1} + write(h_dec_t)
Loss per image, in nats: -log Bernoulli(x | sigmoid(c_T)) + beta * sum_t KL(q(z_t|.) || N(0, I)).
"""

import math
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from draw import attention
from draw.attention import AttentionParams
from draw.config import DrawConfig

LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (B, units)


class Losses(NamedTuple):
    canvas: torch.Tensor  # final canvas logits c_T, (B, H, W)
    recon: torch.Tensor  # -log p(x | z), nats, (B,)
    kl: torch.Tensor  # KL(q(z_t | x, z_<t) || N(0, I)) per step, nats, (B, T)
    log_pz_qz: torch.Tensor  # sum_t log p(z_t) - log q(z_t | .), nats, (B,); for importance weights


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per dimension, nats. Same shape as mu."""
    return 0.5 * (mu**2 + logvar.exp() - logvar - 1)


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log Bernoulli(x | sigmoid(logits)) summed over pixels, nats. (B, H, W) -> (B,)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def objective(out: Losses, beta: float) -> torch.Tensor:
    """The training loss: mean over the batch of recon + beta * sum_t KL_t, nats per image."""
    return (out.recon + beta * out.kl.sum(1)).mean()


class DRAW(nn.Module):
    def __init__(self, cfg: DrawConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = nn.LSTMCell(cfg.read_size + cfg.dec_size, cfg.enc_size)
        self.latent = nn.Linear(cfg.enc_size, 2 * cfg.z_size)  # -> (mu, log sigma^2)
        self.decoder = nn.LSTMCell(cfg.z_size, cfg.dec_size)
        # One linear map of h_dec_t gives everything the decoder emits: with attention, the write
        # patch w_t (N_w^2), the write window (5) and the read window for step t + 1 (5);
        # without attention, the canvas update itself (H * W).
        head_size = cfg.write_n**2 + 10 if cfg.attention else cfg.image_size
        self.head = nn.Linear(cfg.dec_size, head_size)
        if cfg.attention:
            self._init_windows()

    @torch.no_grad()
    def _init_windows(self) -> None:
        """Start both windows centred with delta~ = 1/2 and sigma = delta / 2. With the paper's
        delta = (max(A,B) - 1) / (N - 1) * delta~ and delta~ near 1, a 2x2 read window would start
        on the image corners, see only background, and the latents would collapse to zero KL."""
        c = self.cfg
        for n, start in ((c.write_n, c.write_n**2), (c.read_n, c.write_n**2 + 5)):
            delta = (max(c.height, c.width) - 1) / (n - 1) / 2
            # order: g~X, g~Y, log sigma^2, log delta~, log gamma
            bias = torch.tensor([0.0, 0.0, 2 * math.log(delta / 2), math.log(0.5), 0.0])
            self.head.bias[start : start + 5] = bias

    def initial_state(self, batch: int) -> tuple[LSTMState, LSTMState, torch.Tensor, torch.Tensor]:
        """Zero encoder and decoder states, blank canvas logits (B, H, W), and head(h_dec_0)."""
        p = self.head.bias
        enc = (p.new_zeros(batch, self.cfg.enc_size), p.new_zeros(batch, self.cfg.enc_size))
        dec = (p.new_zeros(batch, self.cfg.dec_size), p.new_zeros(batch, self.cfg.dec_size))
        canvas = p.new_zeros(batch, self.cfg.height, self.cfg.width)
        return enc, dec, canvas, self.head(dec[0])

    def read_window(self, head_out: torch.Tensor) -> AttentionParams:
        """Read window for step t from head(h_dec_{t-1}) (B, head_size)."""
        c = self.cfg
        return attention.attention_params(head_out[:, -5:], c.read_n, c.height, c.width)

    def write_window(self, head_out: torch.Tensor) -> AttentionParams:
        """Write window for step t from head(h_dec_t) (B, head_size)."""
        c = self.cfg
        raw = head_out[:, c.write_n**2 : c.write_n**2 + 5]
        return attention.attention_params(raw, c.write_n, c.height, c.width)

    def read(
        self, x: torch.Tensor, x_hat: torch.Tensor, head_out: torch.Tensor
    ) -> tuple[torch.Tensor, AttentionParams | None]:
        """Glimpse of [x, x_hat] (each (B, H, W)): (B, 2, N, N) with attention, else (B, 2, H, W)."""
        images = torch.stack([x, x_hat], dim=1)
        if not self.cfg.attention:
            return images, None
        p = self.read_window(head_out)
        fx, fy = attention.filterbank(p, self.cfg.read_n, self.cfg.height, self.cfg.width)
        return attention.read(images, fx, fy, p.gamma), p

    def encode(
        self, r: torch.Tensor, h_dec: torch.Tensor, enc: LSTMState
    ) -> tuple[torch.Tensor, torch.Tensor, LSTMState]:
        """r (B, read_size), h_dec_{t-1} (B, dec_size) -> mu, log sigma^2 (B, Z), new encoder state."""
        enc = self.encoder(torch.cat([r, h_dec], dim=1), enc)
        mu, logvar = self.latent(enc[0]).chunk(2, dim=1)
        return mu, logvar, enc

    def decode(self, z: torch.Tensor, dec: LSTMState) -> tuple[LSTMState, torch.Tensor]:
        """z (B, Z) -> new decoder state and head(h_dec_t) (B, head_size)."""
        dec = self.decoder(z, dec)
        return dec, self.head(dec[0])

    def write(self, head_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, AttentionParams | None]:
        """Canvas update (B, H, W), the patch w_t (B, N, N) or (B, H, W), and the write window."""
        c = self.cfg
        if not c.attention:
            update = head_out.view(-1, c.height, c.width)
            return update, update, None
        patch = head_out[:, : c.write_n**2].view(-1, c.write_n, c.write_n)
        p = self.write_window(head_out)
        fx, fy = attention.filterbank(p, c.write_n, c.height, c.width)
        return attention.write(patch, fx, fy, p.gamma), patch, p

    def step(
        self,
        x: torch.Tensor,
        canvas: torch.Tensor,
        head_out: torch.Tensor,
        enc: LSTMState,
        dec: LSTMState,
        eps: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, LSTMState, LSTMState, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step t of the training pass (the equations above). x (B, H, W), canvas logits
        c_{t-1} (B, H, W), head(h_dec_{t-1}) (B, head_size), both LSTM states, eps_t (B, Z) ->
        c_t, head(h_dec_t), the new encoder and decoder states, mu_t, log sigma_t^2 and z_t (B, Z)."""
        glimpse, _ = self.read(x, x - torch.sigmoid(canvas), head_out)
        mu, logvar, enc = self.encode(glimpse.flatten(1), dec[0], enc)
        z = mu + torch.exp(0.5 * logvar) * eps
        dec, head_out = self.decode(z, dec)
        return canvas + self.write(head_out)[0], head_out, enc, dec, mu, logvar, z

    def compile_step(self) -> None:
        """Replace `step` by a torch.compile'd copy, for training on a CPU: the LSTM gates' and the
        filters' small elementwise ops fuse, ~1.3x a training step with attention (~1.1x without)
        after ~30 s of compiling (python -m draw.bench). Needs a C++ compiler at run time. One step
        is compiled, not the unrolled 64-step loop, which took 8 minutes to compile."""
        # attention's cached constant grids are pure functions of their shapes: tracing through is right
        warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
        self.step = torch.compile(self.step, dynamic=False)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> Losses:
        """The training pass. x (B, H, W) in [0, 1]; noise (B, T, Z) fixes eps (default: fresh)."""
        c = self.cfg
        enc, dec, canvas, head_out = self.initial_state(x.shape[0])
        steps = []
        for t in range(c.T):
            eps = torch.randn(x.shape[0], c.z_size, dtype=x.dtype, device=x.device) if noise is None else noise[:, t]
            canvas, head_out, enc, dec, mu, logvar, z = self.step(x, canvas, head_out, enc, dec, eps)
            steps.append((mu, logvar, eps, z))
        # The per-step terms once over all steps (B, T, Z): fewer, larger ops than inside the loop.
        mu, logvar, eps, z = (torch.stack(v, dim=1) for v in zip(*steps, strict=True))
        kl = gaussian_kl(mu, logvar).sum(2)
        # log N(z; 0, I) - log N(z; mu, sigma^2), the 2*pi terms cancel
        log_pz_qz = 0.5 * (eps**2 + logvar - z**2).sum((1, 2))
        return Losses(canvas, bernoulli_nll(canvas, x), kl, log_pz_qz)

    def loss(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, Losses]:
        """Mean over the batch of recon + beta * sum_t KL_t, nats per image; noise as in forward."""
        out = self(x, noise)
        return objective(out, self.cfg.beta), out
