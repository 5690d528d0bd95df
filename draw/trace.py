"""The trace: every per-step quantity of one DRAW pass, recorded so a UI can scrub without
recomputing. Entry points: `reconstruct`, `generate`, `redecode` (edit z_t, redraw from t) and
`final_canvas` (only the last canvas of such an open-loop redraw, for traversal grids).

All arrays have a leading batch axis B and a time axis: T steps, or T + 1 canvases (c_0..c_T).
Step s (0-based) of a trace is the paper's step t = s + 1.
"""

from dataclasses import dataclass, fields, replace

import torch

from draw import attention
from draw.attention import AttentionParams
from draw.model import DRAW, LSTMState, bernoulli_nll, gaussian_kl


@dataclass(frozen=True)
class Trace:
    mode: str  # "reconstruct" (encoder infers z from x) or "generate" (z from the prior)
    x: torch.Tensor | None  # (B, H, W) the image read; None when generating
    canvas: torch.Tensor  # (B, T+1, H, W) canvas logits c_0..c_T
    read_window: AttentionParams | None  # each (B, T), pixel units; None without attention
    write_window: AttentionParams | None  # each (B, T)
    read_glimpse: torch.Tensor | None  # (B, T, 2, N, N) glimpses of [x, x_hat]; None when generating
    write_patch: torch.Tensor  # (B, T, N, N) patch w_t; without attention (B, T, H, W)
    mu: torch.Tensor  # (B, T, Z) posterior mean (0 when generating)
    logvar: torch.Tensor  # (B, T, Z) posterior log sigma^2 (0 when generating)
    eps: torch.Tensor  # (B, T, Z) standard normal noise: z = mu + sigma * eps
    z: torch.Tensor  # (B, T, Z) the latents the decoder was given
    kl: torch.Tensor  # (B, T, Z) KL(q || N(0, 1)) per step and dimension, nats
    h_enc: torch.Tensor  # (B, T+1, enc_size) encoder LSTM state after each step (index 0: initial)
    c_enc: torch.Tensor  # (B, T+1, enc_size)
    h_dec: torch.Tensor  # (B, T+1, dec_size)
    c_dec: torch.Tensor  # (B, T+1, dec_size)

    @property
    def batch_size(self) -> int:
        return self.canvas.shape[0]

    @property
    def steps(self) -> int:
        return self.z.shape[1]

    @property
    def canvas_prob(self) -> torch.Tensor:
        """sigmoid(c_t), (B, T+1, H, W): what the canvas looks like after each step."""
        return torch.sigmoid(self.canvas)

    @property
    def kl_per_step(self) -> torch.Tensor:
        """KL_t in nats, (B, T)."""
        return self.kl.sum(-1)

    @property
    def recon_nats(self) -> torch.Tensor | None:
        """-log p(x | z) of the final canvas, (B,); None when generating."""
        return None if self.x is None else bernoulli_nll(self.canvas[:, -1], self.x)

    def read_box(self, n: int) -> torch.Tensor | None:
        """(B, T, 4) read window squares (x0, y0, x1, y1), 0-based pixel coordinates."""
        return None if self.read_window is None else _box(self.read_window, n)

    def write_box(self, n: int) -> torch.Tensor | None:
        """(B, T, 4) write window squares (x0, y0, x1, y1), 0-based pixel coordinates."""
        return None if self.write_window is None else _box(self.write_window, n)

    def select(self, index) -> "Trace":
        """The trace of a subset of the batch: an int keeps the batch axis with size 1 and gives
        views of this trace's arrays, a list of indices gives copies."""
        index = slice(index, index + 1 or None) if isinstance(index, int) else index  # -1 + 1 = 0: to the end
        return _map(self, lambda a: a[index])


def _box(p: AttentionParams, n: int) -> torch.Tensor:
    flat = AttentionParams(*(v.flatten() for v in p))
    return attention.box(flat, n).view(*p.gx.shape, 4)


def _map(trace: Trace, fn) -> Trace:
    """Apply fn to every tensor of a trace (the windows' fields included)."""
    out = {}
    for f in fields(trace):
        v = getattr(trace, f.name)
        if isinstance(v, AttentionParams):
            v = AttentionParams(*(fn(a) for a in v))
        elif isinstance(v, torch.Tensor):
            v = fn(v)
        out[f.name] = v
    return replace(trace, **out)


def _noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
def reconstruct(model: DRAW, x: torch.Tensor, seed: int = 0) -> Trace:
    """The encoder reads x (B, H, W) in [0, 1] and infers each z_t = mu_t + sigma_t * eps_t, with
    eps drawn from `seed`. Returns the full trace."""
    c = model.cfg
    if x.shape[1:] != (c.height, c.width):
        raise ValueError(f"expected images of shape (B, {c.height}, {c.width}), got {tuple(x.shape)}")
    device = model.head.weight.device
    x = x.to(device, torch.float32)
    eps = _noise((x.shape[0], c.T, c.z_size), seed).to(device)
    return _unroll(model, x, eps, z=eps, infer_after=-1, start=None)


@torch.inference_mode()
def generate(model: DRAW, n: int, seed: int = 0) -> Trace:
    """n drawings with every z_t drawn from the prior N(0, I); the same seed gives the same drawings."""
    c = model.cfg
    eps = _noise((n, c.T, c.z_size), seed).to(model.head.weight.device)
    return _unroll(model, None, eps, z=eps, infer_after=c.T, start=None)


@torch.inference_mode()
def redecode(model: DRAW, trace: Trace, step: int, z_step: torch.Tensor, closed_loop: bool = False) -> Trace:
    """Replace z at `step` (0-based) with z_step (K, Z) and redraw steps step..T-1.

    Steps before `step` are copied from `trace`. A trace of batch 1 is broadcast to K edits, so a
    sweep of one dimension is one batched call. Open loop keeps the later latents as they were;
    closed loop (reconstruct mode only) lets the encoder infer them again from the new canvas,
    with the same noise eps.
    """
    T = trace.steps
    _check_edit(trace, step, z_step)
    if closed_loop and trace.x is None:
        raise ValueError("closed loop needs an image to re-infer from: it applies to reconstruct mode only")
    k = z_step.shape[0]
    # Broadcast views, not copies: base is only read, and _splice builds new arrays from it.
    base = _map(trace, lambda a: a.expand(k, *a.shape[1:])) if trace.batch_size != k else trace
    z = base.z.clone()
    z[:, step] = z_step.to(z)
    infer_after = step if closed_loop else T
    tail = _unroll(model, base.x, base.eps, z, infer_after, start=(base, step))
    return _splice(base, tail, step)


@torch.inference_mode()
def final_canvas(model: DRAW, trace: Trace, step: int, z_step: torch.Tensor) -> torch.Tensor:
    """The last canvas logits c_T (K, H, W) of redecode(model, trace, step, z_step) in open loop,
    without recording a trace. With the later latents kept, nothing the encoder says reaches z,
    so only the decoder runs: from the decoder state and canvas recorded before `step`, with z_step
    (K, Z) at `step` and the trace's own z after it. A batch-1 trace is broadcast to the K rows."""
    _check_edit(trace, step, z_step)
    k = z_step.shape[0]
    z = trace.z.expand(k, -1, -1).clone()
    z[:, step] = z_step.to(z)
    dec = (trace.h_dec[:, step].expand(k, -1), trace.c_dec[:, step].expand(k, -1))
    return decode_only(model, dec, trace.canvas[:, step].expand(k, -1, -1), z[:, step:])


def decode_only(model: DRAW, dec: LSTMState, canvas: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The decoder alone, given its latents z (K, S, Z): from decoder state dec and canvas logits
    (K, H, W), S steps of c <- c + write(h_dec); returns the last canvas logits (K, H, W). Not in
    inference mode, so gradients can flow back to z."""
    for s in range(z.shape[1]):
        dec, head_out = model.decode(z[:, s], dec)
        canvas = canvas + model.write(head_out)[0]
    return canvas


def _check_edit(trace: Trace, step: int, z_step: torch.Tensor) -> None:
    """step must be a step of trace (0-based), and z_step (K, Z) one row per image or a batch-1 trace."""
    if not 0 <= step < trace.steps:
        raise ValueError(f"step must be in 0..{trace.steps - 1}, got {step}")
    k = z_step.shape[0]
    if trace.batch_size not in (1, k):
        raise ValueError(f"z_step has {k} rows but the trace has batch {trace.batch_size}")


def _splice(head: Trace, tail: Trace, step: int) -> Trace:
    """Steps < step from head, the rest from tail (which starts at step). Arrays of T + 1 states
    keep head's index `step` too: it is the state the tail started from."""

    def join(a, b):
        keep = step + 1 if a.shape[1] == head.steps + 1 else step
        return torch.cat([a[:, :keep], b], dim=1)

    out = {}
    for f in fields(head):
        a, b = getattr(head, f.name), getattr(tail, f.name)
        if f.name == "mode" or a is None:
            out[f.name] = a
        elif f.name == "x":
            out[f.name] = a.contiguous()  # head's x may be a broadcast view of the original image
        elif isinstance(a, AttentionParams):
            out[f.name] = AttentionParams(*(join(u, v) for u, v in zip(a, b, strict=True)))
        else:
            out[f.name] = join(a, b)
    return Trace(**out)


def _unroll(
    model: DRAW,
    x: torch.Tensor | None,
    eps: torch.Tensor,
    z: torch.Tensor,
    infer_after: int,
    start: tuple[Trace, int] | None,
) -> Trace:
    """Run steps s0..T-1 recording everything. Step s uses z = mu + sigma * eps[:, s] when
    s > infer_after, else z[:, s]. The encoder runs whenever x is given. `start` = (trace, s0)
    resumes from the states trace recorded after step s0 - 1; None starts from scratch (s0 = 0),
    and the returned arrays of states and canvases then include index 0."""
    c = model.cfg
    B = eps.shape[0]
    if start is None:
        s0 = 0
        enc, dec, canvas, head_out = model.initial_state(B)
        states = [(enc, dec, canvas)]
    else:
        base, s0 = start
        enc = (base.h_enc[:, s0], base.c_enc[:, s0])
        dec = (base.h_dec[:, s0], base.c_dec[:, s0])
        canvas = base.canvas[:, s0]
        head_out = model.head(dec[0])
        states = []  # index s0 is already in base

    rec = {k: [] for k in ("read", "glimpse", "mu", "logvar", "z", "write", "patch")}
    zeros = eps.new_zeros(B, c.z_size)
    for s in range(s0, c.T):
        mu = logvar = zeros
        if x is not None:
            glimpse, read_window = model.read(x, x - torch.sigmoid(canvas), head_out)
            mu, logvar, enc = model.encode(glimpse.flatten(1), dec[0], enc)
            rec["glimpse"].append(glimpse)
        else:
            read_window = model.read_window(head_out) if c.attention else None
        z_s = mu + torch.exp(0.5 * logvar) * eps[:, s] if s > infer_after else z[:, s]
        dec, head_out = model.decode(z_s, dec)
        update, patch, write_window = model.write(head_out)
        canvas = canvas + update
        states.append((enc, dec, canvas))
        rec["read"].append(read_window)
        rec["mu"].append(mu)
        rec["logvar"].append(logvar)
        rec["z"].append(z_s)
        rec["write"].append(write_window)
        rec["patch"].append(patch)

    def stack(xs):
        return torch.stack(xs, dim=1)

    def windows(ps):
        return None if ps[0] is None else AttentionParams(*(stack(list(v)) for v in zip(*ps, strict=True)))

    mu, logvar = stack(rec["mu"]), stack(rec["logvar"])
    return Trace(
        mode="generate" if x is None else "reconstruct",
        x=x,
        canvas=stack([s[2] for s in states]),
        read_window=windows(rec["read"]),
        write_window=windows(rec["write"]),
        read_glimpse=stack(rec["glimpse"]) if x is not None else None,
        write_patch=stack(rec["patch"]),
        mu=mu,
        logvar=logvar,
        eps=eps[:, s0:],
        z=stack(rec["z"]),
        kl=gaussian_kl(mu, logvar),
        h_enc=stack([s[0][0] for s in states]),
        c_enc=stack([s[0][1] for s in states]),
        h_dec=stack([s[1][0] for s in states]),
        c_dec=stack([s[1][1] for s in states]),
    )
