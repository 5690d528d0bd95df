"""DRAW: Deep Recurrent Attentive Writer (Gregor et al. 2015).

Per step t = 1..T (section 2 of the paper):
    x_hat_t = x - sigmoid(c_{t-1})
    r_t     = read(x, x_hat_t, h_dec_{t-1})
    h_enc_t = LSTM_enc(h_enc_{t-1}, [r_t, h_dec_{t-1}])
    z_t     ~ q(z_t | h_enc_t) = N(mu_t, sigma_t^2)
    h_dec_t = LSTM_dec(h_dec_{t-1}, z_t)
    c_t     = c_{t-1} + write(h_dec_t)
Loss per image, in nats: -log Bernoulli(x | sigmoid(c_T)) + beta * sum_t KL(q(z_t|.) || N(0, I)).

The parameters are the paper's modules (two LSTM cells, the latent and the output linear maps).
A step uses them regrouped by what they read (`StepWeights`): h_dec_t feeds the write and both
windows of the head, the encoder's gates and the decoder's own recurrence, so one matrix product
serves all of them; h_enc_t likewise gives (mu_t, log sigma^2_t) and the encoder's recurrence.
"""

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from draw import attention
from draw.config import DrawConfig

LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (B, units)


class StepWeights(NamedTuple):
    """The step's linear maps grouped by input, each one matrix (out, in) and bias. Built from the
    parameters on every pass (`DRAW.step_weights`), so gradients flow back to them."""

    dec: torch.Tensor  # (head + [4 enc] + 4 dec, dec_size): h_dec_t -> head_t, [encoder and] decoder gate terms
    dec_bias: torch.Tensor  # (head + [4 enc] + 4 dec,) with each LSTM's two biases summed
    enc: torch.Tensor  # (2 Z + 4 enc, enc_size): h_enc_t -> (mu_t, log sigma^2_t), encoder gate term
    enc_bias: torch.Tensor  # (2 Z + 4 enc,)
    z: torch.Tensor  # (4 dec, Z) the decoder's input weights
    read: torch.Tensor  # (4 enc, read_size) the encoder's weights on r_t
    encoder: bool  # whether dec has the encoder's rows


class State(NamedTuple):
    """What step t + 1 needs from step t (t = 0: the initial state)."""

    h_enc: torch.Tensor  # (B, enc_size)
    c_enc: torch.Tensor  # (B, enc_size)
    h_dec: torch.Tensor  # (B, dec_size)
    c_dec: torch.Tensor  # (B, dec_size)
    canvas: torch.Tensor  # (B, H, W) canvas logits c_t
    enc_in: torch.Tensor | None  # (B, 4 enc) the encoder's gate terms from h_dec_t and h_enc_t; None: no encoder
    dec_in: torch.Tensor  # (B, 4 dec) the decoder's gate term from h_dec_t
    patch: torch.Tensor  # (B, N, N) the write patch w_t; without attention the canvas update (B, H, W)
    windows: torch.Tensor | None  # (B, 2, 5) write window of step t, read window of step t + 1; None: no attention
    fx: torch.Tensor | None  # (B, write_n + read_n, W) both windows' filterbanks F_X, rows end to end
    fy: torch.Tensor | None  # (B, write_n + read_n, H)


class StepOut(NamedTuple):
    """What step t records besides its State."""

    glimpse: torch.Tensor | None  # (B, 2, N, N) r_t, (B, 2, H, W) without attention; None: no encoder
    mu: torch.Tensor | None  # (B, Z); None: no encoder
    logvar: torch.Tensor | None  # (B, Z)
    z: torch.Tensor  # (B, Z)
    patch: torch.Tensor  # (B, N, N) the write patch w_t; without attention the canvas update (B, H, W)


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


def flush_subnormals() -> None:
    """Treat subnormal floats (below 1.2e-38) as zero on this thread's CPU arithmetic. The far
    tails of the Gaussian filters are subnormal, and products with them run ~100x slower (they
    were a fifth of a training step). Left on, so that backward, which autograd runs on the
    thread that called forward, gets it too."""
    torch.set_flush_denormal(True)


def lstm(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LSTM cell from its summed gate pre-activations (B, 4U), in torch's order (i, f, g, o), and
    c_{t-1} (B, U) -> h_t, c_t."""
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


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
        self.head_size = cfg.write_n**2 + 10 if cfg.attention else cfg.image_size
        self.head = nn.Linear(cfg.dec_size, self.head_size)
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

    def step_weights(self, encoder: bool = True) -> StepWeights:
        """The parameters regrouped for `step`; encoder=False leaves out the encoder's terms. Without
        autograd they are cached until a parameter changes (its version counter moves): building
        them copies 3.5 MB, a third of a batch-1 trace."""
        if torch.is_grad_enabled():
            return self._step_weights(encoder)
        key = (encoder, *((p.data_ptr(), p._version) for p in self.parameters()))
        cached = self.__dict__.get("_cached_step_weights")
        if cached is None or cached[0] != key:
            cached = self._cached_step_weights = (key, self._step_weights(encoder))
        return cached[1]

    def _step_weights(self, encoder: bool) -> StepWeights:
        enc, dec, r = self.encoder, self.decoder, self.cfg.read_size
        dec_rows = [self.head.weight, enc.weight_ih[:, r:], dec.weight_hh]
        dec_bias = [self.head.bias, enc.bias_ih + enc.bias_hh, dec.bias_ih + dec.bias_hh]
        if not encoder:
            del dec_rows[1], dec_bias[1]
        return StepWeights(
            torch.cat(dec_rows),
            torch.cat(dec_bias),
            torch.cat([self.latent.weight, enc.weight_hh]),
            torch.cat([self.latent.bias, torch.zeros_like(enc.bias_hh)]),
            dec.weight_ih,
            enc.weight_ih[:, :r],
            encoder,
        )

    def state(
        self,
        w: StepWeights,
        enc: LSTMState,
        dec: LSTMState,
        canvas: torch.Tensor,
        dec_out: torch.Tensor | None = None,
        enc_term: torch.Tensor | None = None,
    ) -> State:
        """The State after a step that left the LSTM states enc, dec and the canvas logits (B, H, W).
        dec_out (h_dec through w.dec) and enc_term (the encoder's recurrent term) when known."""
        if dec_out is None:
            dec_out = torch.addmm(w.dec_bias, dec[0], w.dec.T)
        if w.encoder and enc_term is None:
            enc_term = enc[0] @ w.enc[2 * self.cfg.z_size :].T
        # split, not slices: its backward is one concatenation instead of a zero-filled copy per slice
        head, *terms = dec_out.split([self.head_size] + [len(w.read)] * w.encoder + [len(w.z)], dim=1)
        enc_in = terms[0] + enc_term if w.encoder else None
        return State(*enc, *dec, canvas, enc_in, terms[-1], *self.emit(head))

    def initial_state(self, w: StepWeights, batch: int) -> State:
        """Zero encoder and decoder states and a blank canvas."""
        c, p = self.cfg, w.dec_bias
        enc = (p.new_zeros(batch, c.enc_size), p.new_zeros(batch, c.enc_size))
        dec = (p.new_zeros(batch, c.dec_size), p.new_zeros(batch, c.dec_size))
        canvas = p.new_zeros(batch, c.height, c.width)
        return self.state(w, enc, dec, canvas, p.expand(batch, -1), p.new_zeros(len(w.read)))  # products of zeros

    def emit(self, head: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """What head(h_dec_t) (B, head_size) says: the patch w_t, and the write window of step t and
        read window of step t + 1 as params (B, 2, 5) in pixel units and both filterbanks F_X, F_Y."""
        c = self.cfg
        if not c.attention:
            return head.view(-1, c.height, c.width), None, None, None
        patch, raw = head.split([c.write_n**2, 10], dim=1)
        ns = (c.write_n, c.read_n)
        v = attention.window_params(raw.view(-1, 2, 5), ns, c.height, c.width)
        return patch.view(-1, c.write_n, c.write_n), v, *attention.filters(v, ns, c.height, c.width)

    def read(self, x: torch.Tensor, x_hat: torch.Tensor, s: State) -> torch.Tensor:
        """Glimpse r_t of [x, x_hat] (each (B, H, W)) through the read window in s:
        (B, 2, N, N) with attention, else (B, 2, H, W)."""
        images = torch.stack([x, x_hat], dim=1)
        if not self.cfg.attention:
            return images
        n = self.cfg.write_n
        return attention.read(images, s.fx[:, n:], s.fy[:, n:], s.windows[:, 1, 4])

    def write(self, s: State) -> torch.Tensor:
        """The canvas update (B, H, W) of the step that left State s."""
        if not self.cfg.attention:
            return s.patch
        n = self.cfg.write_n
        return attention.write(s.patch, s.fx[:, :n], s.fy[:, :n], s.windows[:, 0, 4])

    def step(
        self, w: StepWeights, s: State, x: torch.Tensor | None, eps: torch.Tensor, z: torch.Tensor | None = None
    ) -> tuple[State, StepOut]:
        """Step t from the State s after step t - 1. The encoder reads x (B, H, W) when given, and
        z_t = mu_t + sigma_t * eps (B, Z) unless z (B, Z) is given."""
        Z = self.cfg.z_size
        glimpse = mu = logvar = enc_term = None
        enc = (s.h_enc, s.c_enc)
        if x is not None:
            glimpse = self.read(x, x - torch.sigmoid(s.canvas), s)
            enc = lstm(torch.addmm(s.enc_in, glimpse.flatten(1), w.read.T), s.c_enc)
            mu, logvar, enc_term = torch.addmm(w.enc_bias, enc[0], w.enc.T).split([Z, Z, len(w.read)], dim=1)
            if z is None:
                z = mu + torch.exp(0.5 * logvar) * eps
        dec = lstm(torch.addmm(s.dec_in, z, w.z.T), s.c_dec)
        after = self.state(w, enc, dec, s.canvas, torch.addmm(w.dec_bias, dec[0], w.dec.T), enc_term)
        return after._replace(canvas=s.canvas + self.write(after)), StepOut(glimpse, mu, logvar, z, after.patch)

    def encode_given(self, x: torch.Tensor, states: list[State], enc: LSTMState) -> tuple[torch.Tensor, ...]:
        """The encoder's pass over a drawing whose latents were all given, so that the decoder never
        read the encoder: it runs afterwards, with its input terms for every step in one product
        and only its recurrence step by step. states: the decoder's n + 1 States (before each
        step and after the last), enc: the encoder state before the first step. Returns the
        glimpses (B, n, 2, N, N), mu and log sigma^2 (B, n, Z), h_enc and c_enc (B, n, enc_size)."""
        c, w = self.cfg, self.step_weights(encoder=True)
        B, n, E = x.shape[0], len(states) - 1, c.enc_size
        canvas = torch.stack([s.canvas for s in states[:-1]], dim=1)  # (B, n, H, W)
        images = torch.stack([x[:, None].expand_as(canvas), x[:, None] - torch.sigmoid(canvas)], dim=2)
        glimpse = images.flatten(0, 1)  # (B n, 2, H, W)
        if c.attention:
            fx, fy, gamma = (torch.stack(v, dim=1).flatten(0, 1) for v in zip(*self._reads(states[:-1]), strict=True))
            glimpse = attention.read(glimpse, fx, fy, gamma)
        h_dec = torch.stack([s.h_dec for s in states[:-1]], dim=1).flatten(0, 1)  # (B n, dec_size)
        rows = slice(self.head_size, self.head_size + 4 * E)  # the encoder's terms in w.dec
        inputs = torch.addmm(w.dec_bias[rows], h_dec, w.dec[rows].T).addmm_(glimpse.flatten(1), w.read.T)
        inputs = inputs.view(B, n, 4 * E)
        recurrent = w.enc[2 * c.z_size :]
        h, cs = [], []
        for t in range(n):
            enc = lstm(torch.addmm(inputs[:, t], enc[0], recurrent.T), enc[1])
            h.append(enc[0])
            cs.append(enc[1])
        h_enc, c_enc = torch.stack(h, dim=1), torch.stack(cs, dim=1)
        latent = w.enc[: 2 * c.z_size]
        mu, logvar = torch.addmm(w.enc_bias[: 2 * c.z_size], h_enc.flatten(0, 1), latent.T).view(B, n, -1).chunk(2, 2)
        return glimpse.view(B, n, *glimpse.shape[1:]), mu, logvar, h_enc, c_enc

    def _reads(self, states: list[State]):
        """(F_X, F_Y, gamma) of the read window each State holds."""
        n = self.cfg.write_n
        return [(s.fx[:, n:], s.fy[:, n:], s.windows[:, 1, 4]) for s in states]

    def compile_step(self) -> "DRAW":
        """Compile `step` with torch.compile (inductor, fixed shapes): on a CPU it fuses the step's
        elementwise work, for about 1.6x the training throughput after a minute or more of
        compiling. Worth it for a training run; too slow to start for the app. Returns self."""
        self.step = torch.compile(self.step, dynamic=False)
        return self

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> Losses:
        """The training pass. x (B, H, W) in [0, 1]; noise (B, T, Z) fixes eps (default: fresh)."""
        flush_subnormals()
        w = self.step_weights()
        s = self.initial_state(w, x.shape[0])
        if noise is None:
            noise = torch.randn(x.shape[0], self.cfg.T, self.cfg.z_size, device=x.device)
        steps = []
        for t in range(self.cfg.T):
            s, out = self.step(w, s, x, noise[:, t])
            steps.append(out)
        # The per-step terms once over all steps (B, T, Z): fewer, larger ops than inside the loop.
        mu, logvar, z = (torch.stack(v, dim=1) for v in zip(*((o.mu, o.logvar, o.z) for o in steps), strict=True))
        kl = gaussian_kl(mu, logvar).sum(2)
        # log N(z; 0, I) - log N(z; mu, sigma^2), the 2*pi terms cancel
        log_pz_qz = 0.5 * (noise**2 + logvar - z**2).sum((1, 2))
        return Losses(s.canvas, bernoulli_nll(s.canvas, x), kl, log_pz_qz)

    def loss(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, Losses]:
        """Mean over the batch of recon + beta * sum_t KL_t, nats per image; noise as in forward."""
        out = self(x, noise)
        return (out.recon + self.cfg.beta * out.kl.sum(1)).mean(), out
