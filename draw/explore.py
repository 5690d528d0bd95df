"""What the explorer computes, as plain functions: no Streamlit here, so tests call them directly.

Checkpoint listing, traces for one input, latent edits and traversals (both on top of
`draw.trace.redecode`), window geometry per step, exports (GIF, PNG, JSON) and the page state
that lives in the URL.

Steps: the page speaks the paper's t = 1..T (t = 0 is the blank canvas before any step); a Trace
indexes its steps from 0, so step t is trace index t - 1 and canvas index t.
"""

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from draw import checkpoint, images
from draw.config import DrawConfig
from draw.model import DRAW
from draw.trace import Trace, decode_only, final_canvas, generate, reconstruct, redecode

CHECKPOINTS_ENV = "DRAW_CHECKPOINTS"
REPO_ROOT = Path(__file__).resolve().parent.parent
TRAVERSAL_VALUES = tuple(np.linspace(-3, 3, 7).round(2).tolist())
READ_COLOUR = (230, 60, 60)  # read box: red, as in the paper's figures
WRITE_COLOUR = (60, 200, 90)  # write box: green
MAX_EDIT = 4.0  # largest |z_t[d]| an edit may set, in prior standard deviations


# ---- checkpoints -------------------------------------------------------------------------------


def checkpoints_dir() -> Path:
    """$DRAW_CHECKPOINTS, else the repository's checkpoints/."""
    value = os.environ.get(CHECKPOINTS_ENV)
    return Path(value).expanduser() if value else REPO_ROOT / "checkpoints"


@dataclass(frozen=True)
class CheckpointEntry:
    name: str  # directory name, used in the URL
    path: Path
    cfg: DrawConfig | None  # None when config.json is unreadable
    metadata: dict = field(default_factory=dict)
    error: str | None = None  # why it cannot be used; None when its config reads

    @property
    def test_nll(self) -> str:
        """The recorded test bound, with its Monte Carlo standard error when evaluate measured one."""
        nll, se = self.metadata.get("test_nll_nats"), self.metadata.get("test_nll_se_nats")
        if not (isinstance(nll, int | float) and math.isfinite(nll)):
            return "not measured"
        error = f" ± {se:.3f}" if isinstance(se, int | float) and math.isfinite(se) else ""
        return f"{nll:.2f}{error} nats"

    def describe(self) -> str:
        """One line for a person: variant, size and test NLL."""
        if self.cfg is None:
            return f"unusable: {self.error}"
        c = self.cfg
        kind = (
            f"attention (read {c.read_n}x{c.read_n}, write {c.write_n}x{c.write_n})" if c.attention else "no attention"
        )
        return f"{kind}, T={c.T}, z={c.z_size}, LSTM {c.enc_size}/{c.dec_size}; test NLL {self.test_nll}"


def list_checkpoints(root: str | os.PathLike) -> list[CheckpointEntry]:
    """Every sub-directory of root holding a model.safetensors or config.json, sorted by name.
    Reads configs only; weights that fail to load are reported by the caller of `load`."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not ((d / checkpoint.WEIGHTS).exists() or (d / checkpoint.INFO).exists()):
            continue
        try:
            cfg, metadata = checkpoint.read_info(d)
            out.append(CheckpointEntry(d.name, d, cfg, metadata))
        except checkpoint.CheckpointError as e:
            out.append(CheckpointEntry(d.name, d, None, {}, str(e)))
    return out


def weights_version(entry: CheckpointEntry) -> float:
    """Modification time of the weights, so a cache reloads a checkpoint re-exported by training."""
    try:
        return (entry.path / checkpoint.WEIGHTS).stat().st_mtime
    except OSError:
        return 0.0


# ---- traces ------------------------------------------------------------------------------------


def prepare_input(x: np.ndarray, cfg: DrawConfig) -> torch.Tensor:
    """A grey (H, W) image in [0, 1] -> binarized (1, cfg.height, cfg.width): the models were
    trained on binarized MNIST, so they read the same kind of image."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape != (cfg.height, cfg.width):
        x = np.asarray(Image.fromarray(x, mode="F").resize((cfg.width, cfg.height), Image.BILINEAR))
    return torch.from_numpy(images.binarize(x))[None]


def make_trace(model: DRAW, mode: str, seed: int, x: np.ndarray | None = None) -> Trace:
    """One drawing: from the prior (mode 'generate') or of x (mode 'reconstruct'), batch 1."""
    if mode == "generate":
        return generate(model, 1, seed=seed)
    if mode == "reconstruct":
        if x is None:
            raise ValueError("reconstruct needs an image")
        return reconstruct(model, prepare_input(x, model.cfg), seed=seed)
    raise ValueError(f"mode must be 'generate' or 'reconstruct', got {mode!r}")


def step_summary(trace: Trace) -> np.ndarray:
    """Per step t = 1..T: KL_t in nats (reconstruct), or how much ink step t moved on the canvas,
    mean |sigma(c_t) - sigma(c_{t-1})| (generate, where the KL is zero by construction). (T,)"""
    if trace.mode == "reconstruct":
        return trace.kl_per_step[0].numpy()
    p = trace.canvas_prob[0]
    return (p[1:] - p[:-1]).abs().flatten(1).mean(1).numpy()


def busiest_step(model: DRAW, trace: Trace) -> int:
    """The step t (1-based) the latent editor opens on: the one with the most KL when
    reconstructing; when generating, where the KL is zero, the one whose latent moves the
    finished drawing most (`latent_influence`)."""
    kl = trace.kl_per_step[0]
    score = kl if float(kl.max()) > 0 else latent_influence(model, trace)
    return int(score.argmax()) + 1


def latent_influence(model: DRAW, trace: Trace, probes: int = 16, seed: int = 0) -> torch.Tensor:
    """How far each step's latent moves the finished drawing of the trace's first image, (T,): the
    Frobenius norm of the Jacobian d sigma(c_T) / d z_t, in canvas intensity per prior standard
    deviation. Estimated as sqrt(mean |J_t^T v|^2) over `probes` random directions v (Hutchinson),
    from one decoder-only redraw with the trace's latents (batch `probes`) and one backward pass:
    0.06-0.2 s for the T = 64 checkpoints on a CPU. The model's own gradients are left untouched."""
    c = model.cfg
    v = torch.randn(probes, c.height, c.width, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode(False), torch.enable_grad():
        z = trace.z[:1].expand(probes, -1, -1).clone().requires_grad_()  # (P, T, Z), a tensor autograd can use
        _, dec, canvas, _ = model.initial_state(probes)
        canvas = decode_only(model, dec, canvas, z)
        (grad,) = torch.autograd.grad((torch.sigmoid(canvas) * v.to(canvas)).sum(), z)
    return grad.square().sum(-1).mean(0).sqrt().detach()


def top_dims(model: DRAW, trace: Trace, step: int, k: int) -> list[int]:
    """The k dimensions of z_t that matter most at step t (1-based), in increasing order: those with
    the most KL when reconstructing; when generating, where the KL is zero by construction, those
    whose nudge by one prior standard deviation moves the final canvas sigma(c_T) most (all Z
    nudges in one batched decoder-only redraw: ~40-100 ms for the T = 64 checkpoints on a CPU)."""
    _check_step(trace, step)
    score = trace.kl[0, step - 1]
    if float(score.max()) <= 0:
        z = trace.z[0, step - 1] + torch.eye(trace.z.shape[-1])  # (Z, Z): row d nudges dimension d
        last = torch.sigmoid(final_canvas(model, trace.select(0), step - 1, z))
        score = (last - trace.canvas_prob[0, -1]).abs().flatten(1).mean(1)
    return sorted(torch.argsort(score, descending=True)[:k].tolist())


# ---- window geometry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Windows:
    """Per step t = 1..T, numpy: read/write squares (T, 4) as (x0, y0, x1, y1) and centres (T, 2)
    as (x, y), 0-based pixel coordinates. None for a model without attention."""

    read_box: np.ndarray | None
    write_box: np.ndarray | None
    read_centre: np.ndarray | None
    write_centre: np.ndarray | None


def windows(trace: Trace, cfg: DrawConfig) -> Windows:
    """Window geometry of item 0 of the trace, from the attention parameters it recorded."""
    if trace.read_window is None:
        return Windows(None, None, None, None)
    rw, ww = trace.read_window, trace.write_window
    return Windows(
        read_box=trace.read_box(cfg.read_n)[0].numpy(),
        write_box=trace.write_box(cfg.write_n)[0].numpy(),
        read_centre=torch.stack([rw.gx[0] - 1, rw.gy[0] - 1], -1).numpy(),
        write_centre=torch.stack([ww.gx[0] - 1, ww.gy[0] - 1], -1).numpy(),
    )


# ---- latent edits and traversals ---------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """Set z_t[d] = value (in prior standard deviations: the prior is N(0, I)) for each (d, value),
    after optionally redrawing all of z_t from the prior with `resample` as seed."""

    step: int  # paper's t, 1..T
    values: tuple[tuple[int, float], ...] = ()
    resample: int | None = None
    closed_loop: bool = False

    @property
    def is_noop(self) -> bool:
        return not self.values and self.resample is None


def edited_latent(trace: Trace, edit: Edit) -> torch.Tensor:
    """z_t of item 0 with the edit applied, (1, Z). ValueError for a dimension out of range or a
    value that is not finite or beyond MAX_EDIT prior standard deviations."""
    _check_step(trace, edit.step)
    Z = trace.z.shape[-1]
    for d, v in edit.values:
        if not 0 <= d < Z:
            raise ValueError(f"dimension {d} is outside 0..{Z - 1}")
        if not (math.isfinite(v) and abs(v) <= MAX_EDIT):
            raise ValueError(f"z_t[{d}] = {v} is not a finite value within ±{MAX_EDIT} prior standard deviations")
    z = trace.z[0, edit.step - 1].clone()
    if edit.resample is not None:
        z = torch.randn(z.shape, generator=torch.Generator().manual_seed(edit.resample))
    for d, v in edit.values:
        z[d] = v
    return z[None]


def apply_edit(model: DRAW, trace: Trace, edit: Edit) -> Trace:
    """The trace redrawn from step t with the edited z_t. Open loop keeps the later latents;
    closed loop (reconstruct only) lets the encoder infer them again."""
    _check_step(trace, edit.step)
    closed = edit.closed_loop and trace.x is not None
    return redecode(model, trace.select(0), edit.step - 1, edited_latent(trace, edit), closed_loop=closed)


def traversal(
    model: DRAW,
    trace: Trace,
    step: int,
    dims: list[int],
    values: tuple[float, ...] = TRAVERSAL_VALUES,
    closed_loop: bool = False,
) -> np.ndarray:
    """Final canvases sigma(c_T) with z_t[d] swept over values, one row per dimension, all in one
    batched redraw: (len(dims), len(values), H, W). Open loop only the decoder runs (final_canvas);
    closed loop the encoder re-infers the later latents (redecode)."""
    _check_step(trace, step)
    if not dims:
        raise ValueError("choose at least one dimension")
    edited_latent(trace, Edit(step, tuple((d, float(v)) for d in dims for v in values)))  # validates
    base = trace.z[0, step - 1]
    z = base.repeat(len(dims) * len(values), 1)
    for i, d in enumerate(dims):
        for j, v in enumerate(values):
            z[i * len(values) + j, d] = v
    if closed_loop and trace.x is not None:
        last = redecode(model, trace.select(0), step - 1, z, closed_loop=True).canvas[:, -1]
    else:
        last = final_canvas(model, trace.select(0), step - 1, z)
    return torch.sigmoid(last).numpy().reshape(len(dims), len(values), *last.shape[-2:])


def _check_step(trace: Trace, step: int) -> None:
    if not 1 <= step <= trace.steps:
        raise ValueError(f"step must be in 1..{trace.steps}, got {step}")


# ---- exports -----------------------------------------------------------------------------------


def step_image(trace: Trace, cfg: DrawConfig, t: int, scale: int = 6) -> np.ndarray:
    """RGB picture of step t (0..T): [input with the read box,] canvas sigma(c_t) with the write box."""
    geo = windows(trace, cfg)
    canvas = images.grey_to_rgb(trace.canvas_prob[0, t].numpy(), scale)
    if t > 0 and geo.write_box is not None:
        canvas = images.draw_box(canvas, geo.write_box[t - 1], scale, WRITE_COLOUR)
    if trace.x is None:
        return canvas
    x = images.grey_to_rgb(trace.x[0].numpy(), scale)
    if t > 0 and geo.read_box is not None:
        x = images.draw_box(x, geo.read_box[t - 1], scale, READ_COLOUR)
    return images.hstack([x, canvas])


def view_image(
    traces: list[tuple[Trace, DrawConfig]], t: int, scale: int = 6, names: list[str] | None = None
) -> np.ndarray:
    """Several models at step t (clamped to each one's T), one row each, each under a caption
    with its name (when given) and the step."""
    rows = []
    for i, (tr, cfg) in enumerate(traces):
        s = min(t, tr.steps)
        img = step_image(tr, cfg, s, scale)
        text = f"{names[i]}  t = {s}/{tr.steps}" if names else f"t = {s}/{tr.steps}"
        rows.append(images.vstack([images.label(text, img.shape[1]), img], pad=0))
    return images.vstack(rows, pad=8)


def animation_gif(
    traces: list[tuple[Trace, DrawConfig]],
    scale: int = 4,
    ms_per_frame: int = 60,
    progress: Callable[[float], None] | None = None,
    names: list[str] | None = None,
) -> bytes:
    """The drawing(s) as an animated GIF, steps 0..T with the boxes drawn. `progress(fraction)` is
    called after each frame."""
    T = max(tr.steps for tr, _ in traces)
    frames = []
    for t in range(T + 1):
        frames.append(view_image(traces, t, scale, names))
        if progress is not None:
            progress((t + 1) / (T + 1))
    return images.to_gif(frames, ms_per_frame)


def trace_to_json(trace: Trace, cfg: DrawConfig, name: str, decimals: int = 4) -> str:
    """Item 0 of a trace with its model config, as JSON (windows in pixel units, KL in nats)."""

    def arr(a: torch.Tensor) -> list:
        return np.round(a[0].double().numpy(), decimals).tolist()

    out = {"checkpoint": name, "config": cfg.to_dict(), "mode": trace.mode, "steps": trace.steps}
    for f in fields(trace):
        v = getattr(trace, f.name)
        if f.name == "mode" or v is None:
            continue
        out[f.name] = {k: arr(a) for k, a in v._asdict().items()} if hasattr(v, "_asdict") else arr(v)
    return json.dumps(out, separators=(",", ":"))


# ---- page state in the URL ---------------------------------------------------------------------

MODES = ("generate", "reconstruct")
SOURCES = ("test", "draw", "upload")
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class ViewState:
    model: str | None = None  # checkpoint name; None: the first usable one
    compare: str | None = None  # a second checkpoint drawn beside the first
    mode: str = "generate"
    seed: int = 0
    source: str = "test"  # reconstruct from: MNIST test digit, mouse drawing, upload
    index: int = 0  # MNIST test digit
    t: int | None = None  # step the scrubber opens at; None: the last
    zt: int | None = None  # step whose latent is edited and traversed; None: the page's default
    edits: tuple[tuple[int, float], ...] = ()  # (dimension, value in prior std) at step zt
    resample: int | None = None  # seed that redrew z_zt from the prior
    closed: bool = False  # closed-loop edits (reconstruct only)
    dims: tuple[int, ...] = ()  # dimensions in the traversal grid; () means the page's default


def _int(text: str, lo: int, hi: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if not lo <= v <= hi:
        raise ValueError(f"{v} is outside {lo}..{hi}")
    return v


def _edits(text: str, z_size: int) -> tuple[tuple[int, float], ...]:
    out = {}
    for item in filter(None, text.split(",")):
        d, _, v = item.partition(":")
        value = float(v)
        if not math.isfinite(value) or abs(value) > MAX_EDIT:
            raise ValueError(f"{value} is outside -{MAX_EDIT}..{MAX_EDIT}")
        out[_int(d, 0, z_size - 1)] = round(value, 2)
    return tuple(sorted(out.items()))


def parse_state(
    params: dict[str, str | list[str]], configs: dict[str, DrawConfig], n_test: int | None
) -> tuple[ViewState, list[str]]:
    """Read the URL's query parameters against the usable checkpoints (name -> config) and the
    number of MNIST test digits (None: no data). Anything malformed, out of range or unknown falls
    back to its default, with a note saying so."""
    notes: list[str] = []
    known = {f.name for f in fields(ViewState)}
    for key in sorted(set(params) - known):
        notes.append(f"{key}: not a setting of this page; ignored")
    get = {k: (v[-1] if isinstance(v, list) else v) for k, v in params.items() if k in known}
    s = ViewState(model=next(iter(configs), None))

    def take(key, parse):
        nonlocal s
        if key not in get:
            return
        try:
            s = replace(s, **{key: parse(str(get[key]))})
        except (ValueError, TypeError, KeyError) as e:
            notes.append(f"{key}={get[key]!r}: {e}; using the default")

    def choice(options):
        def parse(v):
            if v not in options:
                raise ValueError(f"expected one of {', '.join(options)}")
            return v

        return parse

    take("model", choice(tuple(configs)))
    take("compare", choice(tuple(configs)))
    take("mode", choice(MODES))
    take("seed", lambda v: _int(v, 0, MAX_SEED))
    take("source", choice(SOURCES))
    if s.source == "test" and n_test is None and "source" in get:
        notes.append("source=test: no MNIST directory is configured ($DRAW_DATA_DIR)")
    if n_test:
        take("index", lambda v: _int(v, 0, n_test - 1))
    elif "index" in get:
        notes.append("index: ignored, no MNIST directory is configured ($DRAW_DATA_DIR)")
    cfg = configs.get(s.model)
    T, Z = (cfg.T, cfg.z_size) if cfg else (1, 1)
    take("t", lambda v: _int(v, 0, T))
    take("zt", lambda v: _int(v, 1, T))
    take("edits", lambda v: _edits(v, Z))
    take("resample", lambda v: _int(v, 0, MAX_SEED))
    take("closed", lambda v: {"1": True, "0": False, "true": True, "false": False}[v.lower()])
    take("dims", lambda v: tuple(dict.fromkeys(_int(d, 0, Z - 1) for d in filter(None, v.split(",")))))
    if s.compare == s.model:
        s = replace(s, compare=None)
    return s, notes


def state_to_params(s: ViewState) -> dict[str, str]:
    """The query parameters that reproduce s; fields at their default are left out."""
    default = ViewState()
    if s.mode == "generate":  # the digit fields do not apply
        s = replace(s, source=default.source, index=default.index, closed=default.closed)
    out = {}
    for f in fields(ViewState):
        v = getattr(s, f.name)
        if v == getattr(default, f.name) and f.name != "model":
            continue
        if v is None:
            continue
        if f.name == "edits":
            out["edits"] = ",".join(f"{d}:{x:g}" for d, x in v)
        elif f.name == "dims":
            out["dims"] = ",".join(map(str, v))
        elif isinstance(v, bool):
            out[f.name] = "1" if v else "0"
        else:
            out[f.name] = str(v)
    return out
