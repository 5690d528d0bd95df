"""Benchmarks: the project's code against a plain reference written here, side by side.

    python -m draw.bench                 # full run, writes benchmarks/results.md
    python -m draw.bench --quick         # fewer repeats, for a smoke test
    python -m draw.bench --gpu           # training on a CUDA GPU: rewrites the GPU section only

The reference is the per-step PyTorch loop a newcomer would write from the paper: the same
modules and weights, filterbanks built from scratch each step, the KL summed inside the loop.
Every row first checks that both give the same numbers, then times them interleaved (one
reference call, one project call, ...) so that load from other processes hits both alike.
"""

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from draw import checkpoint, explore
from draw.config import DrawConfig
from draw.model import DRAW
from draw.trace import Trace, reconstruct

REPO_ROOT = Path(__file__).resolve().parent.parent
APP = REPO_ROOT / "app" / "streamlit_app.py"
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "mnist_attention_T64"


# ---- the plain reference ----------------------------------------------------------------------


def plain_window(raw: torch.Tensor, n: int, cfg: DrawConfig) -> tuple[torch.Tensor, ...]:
    """(gx, gy, sigma2, delta, gamma), each (B,), from the 5 raw outputs (B, 5), as in the paper."""
    gx = (cfg.width + 1) / 2 * (raw[:, 0] + 1)
    gy = (cfg.height + 1) / 2 * (raw[:, 1] + 1)
    sigma2 = torch.exp(raw[:, 2])
    delta = (max(cfg.width, cfg.height) - 1) / (n - 1) * torch.exp(raw[:, 3])
    gamma = torch.exp(raw[:, 4])
    return gx, gy, sigma2, delta, gamma


def plain_filters(g: torch.Tensor, delta: torch.Tensor, sigma2: torch.Tensor, n: int, size: int) -> torch.Tensor:
    """One axis's filterbank (B, N, size), rows normalised to sum to 1."""
    i = torch.arange(1, n + 1, dtype=torch.float32, device=g.device)
    mu = g[:, None] + (i - n / 2 - 0.5) * delta[:, None]  # (B, N)
    a = torch.arange(1, size + 1, dtype=torch.float32, device=g.device)
    f = torch.exp(-((a[None, None, :] - mu[:, :, None]) ** 2) / (2 * sigma2[:, None, None]))
    return f / f.sum(dim=2, keepdim=True).clamp_min(1e-8)


def plain_read(model: DRAW, x, x_hat, head_out) -> torch.Tensor:
    """The glimpses of x and x_hat, concatenated and flattened: (B, 2 N^2), or (B, 2 H W)."""
    cfg = model.cfg
    if not cfg.attention:
        return torch.cat([x.flatten(1), x_hat.flatten(1)], dim=1)
    n = cfg.read_n
    gx, gy, sigma2, delta, gamma = plain_window(head_out[:, -5:], n, cfg)
    fx = plain_filters(gx, delta, sigma2, n, cfg.width)
    fy = plain_filters(gy, delta, sigma2, n, cfg.height)
    g1 = torch.bmm(torch.bmm(fy, x), fx.transpose(1, 2)) * gamma[:, None, None]
    g2 = torch.bmm(torch.bmm(fy, x_hat), fx.transpose(1, 2)) * gamma[:, None, None]
    return torch.cat([g1.flatten(1), g2.flatten(1)], dim=1)


def plain_write(model: DRAW, head_out: torch.Tensor) -> torch.Tensor:
    """The canvas update (B, H, W) from head(h_dec_t)."""
    cfg = model.cfg
    if not cfg.attention:
        return head_out.view(-1, cfg.height, cfg.width)
    n = cfg.write_n
    w = head_out[:, : n * n].view(-1, n, n)
    gx, gy, sigma2, delta, gamma = plain_window(head_out[:, n * n : n * n + 5], n, cfg)
    fx = plain_filters(gx, delta, sigma2, n, cfg.width)
    fy = plain_filters(gy, delta, sigma2, n, cfg.height)
    return torch.bmm(torch.bmm(fy.transpose(1, 2), w), fx) / gamma[:, None, None]


@dataclass
class PlainState:
    h_enc: torch.Tensor
    c_enc: torch.Tensor
    h_dec: torch.Tensor
    c_dec: torch.Tensor
    canvas: torch.Tensor


def plain_unroll(model: DRAW, x, eps, z=None, start: tuple[PlainState, int] | None = None) -> dict:
    """Steps s0..T-1. The encoder runs when x is given; z[:, s] (when z is given) replaces
    mu + sigma * eps. Returns per-step lists: canvases, states, mu, logvar, z."""
    cfg = model.cfg
    B = eps.shape[0]
    if start is None:
        s0 = 0
        st = PlainState(*(torch.zeros(B, n) for n in (cfg.enc_size, cfg.enc_size, cfg.dec_size, cfg.dec_size)), None)
        st.canvas = torch.zeros(B, cfg.height, cfg.width)
    else:
        st, s0 = start
    out = {"canvas": [st.canvas], "state": [st], "mu": [], "logvar": [], "z": []}
    h_enc, c_enc, h_dec, c_dec, canvas = st.h_enc, st.c_enc, st.h_dec, st.c_dec, st.canvas
    for s in range(s0, cfg.T):
        mu = logvar = torch.zeros(B, cfg.z_size)
        if x is not None:
            x_hat = x - torch.sigmoid(canvas)
            r = plain_read(model, x, x_hat, model.head(h_dec))
            h_enc, c_enc = model.encoder(torch.cat([r, h_dec], dim=1), (h_enc, c_enc))
            mu, logvar = model.latent(h_enc).chunk(2, dim=1)
        z_s = mu + torch.exp(0.5 * logvar) * eps[:, s] if z is None else z[:, s]
        h_dec, c_dec = model.decoder(z_s, (h_dec, c_dec))
        canvas = canvas + plain_write(model, model.head(h_dec))
        out["canvas"].append(canvas)
        out["state"].append(PlainState(h_enc, c_enc, h_dec, c_dec, canvas))
        out["mu"].append(mu)
        out["logvar"].append(logvar)
        out["z"].append(z_s)
    return out


def plain_trace(model: DRAW, x, eps) -> dict:
    with torch.no_grad():
        return plain_unroll(model, x, eps)


def plain_traversal(model: DRAW, ref: dict, eps, step: int, z_step: torch.Tensor) -> dict:
    """Open-loop re-decode from `step` of a batch-1 plain trace, one row per value of z_step (K, Z):
    the decoder alone, since with the later latents kept nothing the encoder says reaches z."""
    k = z_step.shape[0]
    st = ref["state"][step]
    start = PlainState(*(v.expand(k, *v.shape[1:]) for v in (st.h_enc, st.c_enc, st.h_dec, st.c_dec, st.canvas)))
    z = torch.stack(ref["z"], dim=1).repeat(k, 1, 1)
    z[:, step] = z_step
    with torch.no_grad():
        return plain_unroll(model, None, eps.expand(k, -1, -1), z, start=(start, step))


def plain_loss(model: DRAW, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -log p(x | z) + beta * sum_t KL_t, KL summed step by step."""
    cfg = model.cfg
    B, device = x.shape[0], x.device
    h_enc = c_enc = torch.zeros(B, cfg.enc_size, device=device)
    h_dec = c_dec = torch.zeros(B, cfg.dec_size, device=device)
    canvas = torch.zeros(B, cfg.height, cfg.width, device=device)
    kl = torch.zeros(B, device=device)
    for t in range(cfg.T):
        r = plain_read(model, x, x - torch.sigmoid(canvas), model.head(h_dec))
        h_enc, c_enc = model.encoder(torch.cat([r, h_dec], dim=1), (h_enc, c_enc))
        mu, logvar = model.latent(h_enc).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * logvar) * noise[:, t]
        h_dec, c_dec = model.decoder(z, (h_dec, c_dec))
        canvas = canvas + plain_write(model, model.head(h_dec))
        kl = kl + 0.5 * (mu**2 + torch.exp(logvar) - logvar - 1).sum(dim=1)
    recon = F.binary_cross_entropy_with_logits(canvas, x, reduction="none").sum(dim=(1, 2))
    return (recon + cfg.beta * kl).mean()


# ---- agreement checks (also run by tests/test_bench.py on a tiny model) ------------------------


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max(max |b|, 1e-12)."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def trace_agreement(trace: Trace, ref: dict) -> float:
    """Largest relative difference between a project trace and a plain one over canvases and latents."""
    pairs = [(trace.canvas, torch.stack(ref["canvas"], dim=1)), (trace.z, torch.stack(ref["z"], dim=1))]
    if trace.x is not None:
        pairs += [(trace.mu, torch.stack(ref["mu"], dim=1)), (trace.logvar, torch.stack(ref["logvar"], dim=1))]
    return max(max_rel_diff(a, b) for a, b in pairs)


def traversal_agreement(grid: np.ndarray, ref: dict) -> float:
    """Largest relative difference between the final canvases sigma(c_T) of explore.traversal's
    grid for one dimension (1, K, H, W) and of a plain re-decode."""
    return max_rel_diff(torch.from_numpy(grid[0]), torch.sigmoid(ref["canvas"][-1]))


def train_step(model: DRAW, optimizer, x: torch.Tensor, noise: torch.Tensor, plain: bool, bf16: bool = False) -> float:
    """One optimisation step as draw.train does it (clip at 10, Adam); returns the loss.
    bf16: the forward pass under bfloat16 autocast."""
    with torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
        loss = plain_loss(model, x, noise) if plain else model.loss(x, noise)[0]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    optimizer.step()
    return loss.item()


def training_agreement(model: DRAW, x: torch.Tensor, noise: torch.Tensor) -> tuple[float, float, float, float]:
    """One optimisation step of each from the same weights on the same batch and noise: (project
    loss, reference loss, their relative difference, and the relative difference of the losses
    after the Adam update). The first three are the check: the loss each step computes. The last
    is noisier than it looks: Adam's first update is lr * sign(g), and on a trained model float32
    gradients through 64 steps differ from float64 by a few percent in any implementation, so
    the signs of the near-zero ones differ too."""
    losses, after = [], []
    for plain in (False, True):
        m = copy.deepcopy(model)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        losses.append(train_step(m, opt, x, noise, plain))
        with torch.no_grad():
            after.append(plain_loss(m, x, noise).item())
    (ours, ref), (a, b) = losses, after
    return ours, ref, abs(ours - ref) / abs(ref), abs(a - b) / abs(b)


# ---- timing ------------------------------------------------------------------------------------


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def side_by_side(fns: dict, runs: int, warmup: int = 3) -> dict[str, list[float]]:
    """Seconds per call of each function, interleaved so that all see the same machine load."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            times[k].append(timed(fn))
    return times


def p95(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]


def ms(x: float) -> str:
    return f"{1000 * x:.1f} ms"


# ---- the app -----------------------------------------------------------------------------------

APP_EDIT_SCRIPT = r"""
import json, statistics, sys, time
from streamlit.runtime.scriptrunner.script_cache import ScriptCache
from streamlit.testing.v1 import AppTest
from draw.bench import peak_rss
compiling = []  # AppTest compiles the page afresh on every run (a server compiles it once): timed apart
get_bytecode = ScriptCache.get_bytecode
def timed_get_bytecode(self, path):
    t0 = time.perf_counter()
    try:
        return get_bytecode(self, path)
    finally:
        compiling.append(time.perf_counter() - t0)
ScriptCache.get_bytecode = timed_get_bytecode
at = AppTest.from_file(sys.argv[1], default_timeout=120)
at.run()
if at.exception:
    print(json.dumps({"error": str(at.exception[0].message)})); sys.exit()
edit = None  # the latent-edit control: a number input or slider whose label mentions z / latent
for w in list(at.slider) + list(at.number_input):
    label = (w.label or "").lower()
    if ("latent" in label or "z_" in label or "value" in label) and isinstance(w.value, float):
        edit = w
        break
if edit is None:
    print(json.dumps({"error": "no latent-edit widget found"})); sys.exit()
lo, hi = float(getattr(edit, "min", -3.0) or -3.0), float(getattr(edit, "max", 3.0) or 3.0)
runs, times, compile_times = int(sys.argv[2]), [], []
for i in range(runs):
    value = lo + (hi - lo) * (i + 1) / (runs + 1)  # a new value every run: no edit is served from a cache
    edit.set_value(round(value, 1))
    compiling.clear()
    t0 = time.perf_counter()
    at.run()
    times.append(time.perf_counter() - t0)
    compile_times.append(sum(compiling))
    if at.exception:
        print(json.dumps({"error": str(at.exception[0].message)})); sys.exit()
print(json.dumps({"median": statistics.median(times), "p95": sorted(times)[int(0.95 * (len(times) - 1))],
                  "compile": statistics.median(compile_times), "widget": edit.label, "peak_rss": peak_rss()}))
"""

LOAD_SCRIPT = r"""
import sys, torch
from draw import checkpoint
from draw.bench import peak_rss
from draw.trace import reconstruct
model, _ = checkpoint.load(sys.argv[1])
reconstruct(model, torch.zeros(1, model.cfg.height, model.cfg.width))
print(peak_rss())
"""


def peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM). Not ru_maxrss: Linux carries that
    over from the parent across fork + exec, so a child of a big process would report the parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_python(script: str, *args: str, timeout: float = 150) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    return out.stdout.strip().splitlines()[-1]


# ---- the report --------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    reference: str
    ours: str
    ratio: str
    target: str
    met: str
    check: str = ""


def load_model(path: str | None) -> tuple[DRAW, str]:
    if path and Path(path, checkpoint.WEIGHTS).is_file():
        return checkpoint.load(path)[0], str(path)
    torch.manual_seed(0)
    return DRAW(DrawConfig()).eval(), "random weights, default DrawConfig"


def bench_trace(model: DRAW, runs: int) -> Row:
    c = model.cfg
    x = (torch.rand(1, c.height, c.width, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    eps = torch.randn(1, c.T, c.z_size, generator=torch.Generator().manual_seed(0))  # reconstruct's seed 0
    agree = trace_agreement(reconstruct(model, x, seed=0), plain_trace(model, x, eps))
    times = side_by_side(
        {"ref": lambda: plain_trace(model, x, eps), "ours": lambda: reconstruct(model, x, seed=0)}, runs
    )
    ref, ours = times["ref"], times["ours"]
    r, o = statistics.median(ref), statistics.median(ours)
    return Row(
        f"trace, T={c.T}, batch 1 (median / p95 of {runs})",
        f"{ms(r)} / {ms(p95(ref))}",
        f"{ms(o)} / {ms(p95(ours))}",
        f"{r / o:.2f}x",
        "<= 10 ms and >= 4x",
        "yes" if o <= 0.010 and r / o >= 4 else "no",
        f"max rel. diff {agree:.1e}",
    )


def bench_traversal(model: DRAW, runs: int) -> Row:
    c = model.cfg
    x = (torch.rand(1, c.height, c.width, generator=torch.Generator().manual_seed(1)) > 0.7).float()
    eps = torch.randn(1, c.T, c.z_size, generator=torch.Generator().manual_seed(0))
    trace, ref_trace = reconstruct(model, x, seed=0), plain_trace(model, x, eps)
    step = c.T // 2  # trace index; the page's t = step + 1
    values = tuple(torch.linspace(-3, 3, 11).tolist())
    z_step = trace.z[:, step].repeat(11, 1)
    z_step[:, 0] = torch.tensor(values)
    agree = traversal_agreement(
        explore.traversal(model, trace, step + 1, [0], values), plain_traversal(model, ref_trace, eps, step, z_step)
    )
    times = side_by_side(
        {
            "ref": lambda: plain_traversal(model, ref_trace, eps, step, z_step),
            "ours": lambda: explore.traversal(model, trace, step + 1, [0], values),
        },
        runs,
    )
    ref, ours = times["ref"], times["ours"]
    r, o = statistics.median(ref), statistics.median(ours)
    return Row(
        f"traversal of 11 from step {step} of {c.T} (median of {runs})",
        ms(r),
        ms(o),
        f"{r / o:.2f}x",
        "<= 20 ms",
        "yes" if o <= 0.020 else "no",
        f"max rel. diff {agree:.1e}",
    )


def bench_training(model: DRAW, steps: int, batch: int = 128) -> list[Row]:
    """Training on the CPU: the plain loop against the project's eager step and against its step
    compiled with torch.compile (`draw.train --compile`), images/s each, interleaved."""
    c = model.cfg
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, c.height, c.width, generator=g) > 0.7).float()
    noise = torch.randn(batch, c.T, c.z_size, generator=g)
    ours_loss, ref_loss, rel, rel_after = training_agreement(model.train(), x, noise)
    copies = {k: copy.deepcopy(model) for k in ("plain", "eager", "compiled")}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in copies.items()}
    runs = {  # each one optimisation step, returning its loss
        "plain": lambda: train_step(copies["plain"], opts["plain"], x, noise, plain=True),
        "eager": lambda: train_step(copies["eager"], opts["eager"], x, noise, plain=False),
        "compiled": lambda: train_step(copies["compiled"], opts["compiled"], x, noise, plain=False),
    }
    copies["compiled"].compile_step()
    started = time.perf_counter()
    try:
        compiled_loss = runs["compiled"]()  # compiles, then steps from the weights the others start from
    except torch._dynamo.exc.BackendCompilerFailed as e:
        compiled_loss, compile_error = None, str(e).splitlines()[0]
        del runs["compiled"]
    compile_seconds = time.perf_counter() - started
    times = side_by_side(runs, steps, warmup=1)
    model.eval()
    rate = {k: batch / statistics.median(v) for k, v in times.items()}
    name = f"training, batch {batch} (images/s, median of {steps} steps)"
    target = ">= 1.5x, loss within 1e-4"
    rows = [
        Row(
            name,
            f"{rate['plain']:.0f}",
            f"{rate['eager']:.0f}",
            f"{rate['eager'] / rate['plain']:.2f}x",
            target,
            "yes" if rate["eager"] / rate["plain"] >= 1.5 and rel <= 1e-4 else "no",
            f"loss of 1 step {ours_loss:.4f} vs {ref_loss:.4f} (rel. {rel:.1e}); after its update rel. {rel_after:.1e}",
        )
    ]
    name = (
        f"training with the step compiled (`draw.train --compile`), batch {batch} (images/s, median of {steps} steps)"
    )
    if compiled_loss is None:
        return rows + [Row(name, f"{rate['plain']:.0f}", f"not measurable: {compile_error}", "-", target, "-")]
    speedup, rel = rate["compiled"] / rate["plain"], abs(compiled_loss - ref_loss) / abs(ref_loss)
    return rows + [
        Row(
            name,
            f"{rate['plain']:.0f}",
            f"{rate['compiled']:.0f}",
            f"{speedup:.2f}x",
            target,
            "yes" if speedup >= 1.5 and rel <= 1e-4 else "no",
            f"loss of 1 step {compiled_loss:.4f} vs {ref_loss:.4f} (rel. {rel:.1e}); compiling took"
            f" {compile_seconds:.0f} s, once per process (not in the images/s)",
        )
    ]


def bench_gpu_training(model: DRAW, batch: int, steps: int) -> list[Row]:
    """Training on a CUDA GPU at one batch size: the plain loop, the project's eager step, its
    CUDA-graphed step (what draw.train uses there) and bfloat16 autocast, images/s each."""
    from draw import train  # the graphed step lives with the training loop

    c, device = model.cfg, torch.device("cuda")
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, c.height, c.width, generator=g) > 0.7).float().to(device)
    noise = torch.randn(batch, c.T, c.z_size, generator=g).to(device)
    model = copy.deepcopy(model).to(device).train()
    copies = {k: copy.deepcopy(model) for k in ("plain", "eager", "graph", "bf16")}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in copies.items()}
    train.set_capturable(opts["graph"], True)
    graphed = train.GraphedStep(copies["graph"], opts["graph"], clip=10.0, batch=batch)
    runs = {  # each one optimisation step, returning its loss
        "plain": lambda: train_step(copies["plain"], opts["plain"], x, noise, plain=True),
        "eager": lambda: train_step(copies["eager"], opts["eager"], x, noise, plain=False),
        "graph": lambda: graphed(x, noise)[0],
        "bf16": lambda: train_step(copies["bf16"], opts["bf16"], x, noise, plain=False, bf16=True),
    }
    first = {k: fn() for k, fn in runs.items()}  # from the same weights: the loss each variant computes
    times = {k: [] for k in runs}
    for _ in range(steps):  # interleaved like side_by_side, with the GPU synchronised around each
        for k, fn in runs.items():
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t0)
    rate = {k: batch / statistics.median(v) for k, v in times.items()}
    rows = []
    for k, label in (("eager", "eager"), ("graph", "CUDA graph"), ("bf16", "bf16 autocast, eager")):
        rel = abs(first[k] - first["plain"]) / abs(first["plain"])
        rows.append(
            Row(
                f"GPU training, batch {batch}, {label} (images/s, median of {steps})",
                f"{rate['plain']:.0f}",
                f"{rate[k]:.0f}",
                f"{rate[k] / rate['plain']:.2f}x",
                "loss within 1e-4",
                "yes" if rel <= 1e-4 else "no",
                f"loss of 1 step {first[k]:.4f} vs {first['plain']:.4f} (rel. {rel:.1e})",
            )
        )
    return rows


def bench_app(runs: int) -> Row:
    name = f"app rerun after a latent edit (AppTest, median of {runs})"
    if not APP.is_file():
        return Row(name, "-", "app not found", "-", "<= 150 ms", "-")
    try:
        result = json.loads(run_python(APP_EDIT_SCRIPT, str(APP), str(runs), timeout=170))
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
        return Row(name, "-", f"app not measurable: {e}", "-", "<= 150 ms", "-")
    if "error" in result:
        return Row(name, "-", f"app not measurable: {result['error']}", "-", "<= 150 ms", "-")
    o = result["median"]
    row = Row(name, "-", f"{ms(o)} (p95 {ms(result['p95'])})", "-", "<= 150 ms", "yes" if o <= 0.150 else "no")
    row.check = (
        f"widget '{result['widget']}'; of which {ms(result['compile'])} compiling the page, which AppTest does on "
        f"every run and a server once; app process peak RSS {result['peak_rss'] / 2**20:.0f} MB"
    )
    return row


def bench_memory(model_path: str) -> Row:
    name = "peak RSS, process with the model loaded and one trace run"
    try:
        rss = int(run_python(LOAD_SCRIPT, model_path))
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
        return Row(name, "-", f"failed: {e}", "-", "<= 400 MB", "-")
    mb = rss / 2**20
    met = "yes" if mb <= 400 else "no"
    return Row(name, "-", f"{mb:.0f} MB", "-", "<= 400 MB", met, "VmHWM of a fresh process that loads it like the app")


def machine() -> dict[str, str]:
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return {
        "date": datetime.datetime.now().isoformat(timespec="minutes"),
        "cpu cores (os.cpu_count)": str(os.cpu_count()),
        "torch threads used": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load average (1, 5, 15 min) at start": load,
    }


def report(rows: list[Row], info: dict[str, str], notes: list[str]) -> str:
    lines = ["# Benchmarks", "", "`python -m draw.bench`, each row measured side by side in one run.", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", *table(rows, "reference (plain loop)", "target")]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def table(rows: list[Row], reference: str, target: str) -> list[str]:
    """The rows as a markdown table, one line each."""
    lines = [
        f"| measure | {reference} | project | ratio | {target} | met | agreement / note |",
        "|---|---|---|---|---|---|---|",
    ]
    return lines + [
        f"| {r.name} | {r.reference} | {r.ours} | {r.ratio} | {r.target} | {r.met} | {r.check} |" for r in rows
    ]


GPU_HEADING = "## GPU"


def gpu_report(rows: list[Row], info: dict[str, str], notes: list[str]) -> str:
    lines = [
        GPU_HEADING,
        "",
        "`python -m draw.bench --gpu`, each batch size's rows measured side by side in one run.",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", *table(rows, "reference (plain loop, eager)", "check"), ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def split_gpu(text: str) -> tuple[str, str]:
    """(results.md before its GPU section, the GPU section or ""): each mode rewrites its own part."""
    head, found, tail = text.partition("\n" + GPU_HEADING + "\n")
    return head.rstrip("\n") + "\n", GPU_HEADING + "\n" + tail if found else ""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="model to time (default: the T=64 one)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for every row (0: torch's default)")
    p.add_argument("--runs", type=int, default=50, help="timed runs for the trace row")
    p.add_argument("--train-steps", type=int, default=5, help="timed optimisation steps per side")
    p.add_argument("--app-runs", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="few repeats, no file written")
    p.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results.md"))
    p.add_argument("--note", action="append", default=[], help="a line added to the report's notes")
    p.add_argument(
        "--gpu", action="store_true", help="time training on a CUDA GPU instead (batch 256 and 1024, 20 steps each)"
    )
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the CLIs and the app do; for the reference too
    if args.quick:
        args.runs, args.train_steps, args.app_runs = 5, 1, 3
    model, source = load_model(args.checkpoint)
    info = {"model": source, **machine()}
    if args.gpu:
        return main_gpu(args, model, info)
    rows = []
    for bench in (  # each gives a list of rows
        lambda: [bench_trace(model, args.runs)],
        lambda: [bench_traversal(model, max(20, args.runs // 2) if not args.quick else 5)],
        lambda: bench_training(model, args.train_steps),
        lambda: [bench_app(args.app_runs)],
        lambda: [bench_memory(args.checkpoint)],
    ):
        for row in bench():
            rows.append(row)
            print(f"{row.name}: reference {row.reference} | project {row.ours} | {row.ratio} | met: {row.met}", end="")
            print(f" | {row.check}")
    gpu = split_gpu(Path(args.out).read_text())[1] if Path(args.out).is_file() else ""
    write_report(args, report(rows, info, args.note) + ("\n" + gpu if gpu else ""))


def main_gpu(args: argparse.Namespace, model: DRAW, info: dict[str, str]) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("error: --gpu needs a CUDA GPU")
    info["gpu"] = torch.cuda.get_device_name()
    rows = []
    for batch in (256, 1024):
        for row in bench_gpu_training(model, batch, 5 if args.quick else 20):
            rows.append(row)
            print(f"{row.name}: reference {row.reference} | project {row.ours} | {row.ratio} | {row.check}")
    cpu = split_gpu(Path(args.out).read_text())[0] if Path(args.out).is_file() else "# Benchmarks\n"
    write_report(args, cpu + "\n" + gpu_report(rows, info, args.note))


def write_report(args: argparse.Namespace, text: str) -> None:
    if not args.quick:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
