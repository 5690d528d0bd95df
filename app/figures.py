"""Plotly figures of traces. Each builder takes computed arrays and returns a figure; none runs
the model. The scrubber is one figure with a frame per step and its own slider and play button,
so moving in time happens in the browser without a Streamlit rerun."""

import base64
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from draw import explore
from draw.config import DrawConfig
from draw.trace import Trace

READ = "rgb({},{},{})".format(*explore.READ_COLOUR)
WRITE = "rgb({},{},{})".format(*explore.WRITE_COLOUR)
BAR_COLOURS = ("#4c78a8", "#f58518")
PANEL_PX = 190


@dataclass(frozen=True)
class ModelView:
    """One model's drawing as the figures need it."""

    name: str
    cfg: DrawConfig
    trace: Trace  # batch 1

    @property
    def T(self) -> int:
        return self.trace.steps


def _typed(a) -> dict | list:
    """A numpy array as a plotly.js typed array (float32, base64), the form Plotly itself sends:
    validating and serialising it costs one string, not a Python object per number."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.size == 0:
        return []
    spec = {"dtype": "f4", "bdata": base64.b64encode(a).decode("ascii")}
    if a.ndim > 1:
        spec["shape"] = ",".join(map(str, a.shape))
    return spec


def _grey(z, zmin=0.0, zmax=1.0, colorscale="gray", hover="%{z:.2f}") -> dict:
    return dict(
        type="heatmap",
        z=_typed(z),
        zmin=zmin,
        zmax=zmax,
        colorscale=colorscale,
        showscale=False,
        hovertemplate=f"x=%{{x}} y=%{{y}}: {hover}<extra></extra>",
    )


def _square(box, colour: str) -> dict:
    """The outline of box (x0, y0, x1, y1); an empty outline when box is None."""
    x0, y0, x1, y1 = box if box is not None else (np.nan,) * 4
    return dict(
        type="scatter",
        x=_typed([x0, x1, x1, x0, x0]),
        y=_typed([y0, y0, y1, y1, y0]),
        mode="lines",
        line=dict(color=colour, width=2),
        hoverinfo="skip",
        showlegend=False,
    )


def _trail(centres: np.ndarray | None, t: int, colour: str, on: bool) -> dict:
    pts = centres[:t] if (on and centres is not None and t > 0) else np.empty((0, 2))
    return dict(
        type="scatter",
        x=_typed(pts[:, 0]),
        y=_typed(pts[:, 1]),
        mode="lines+markers",
        line=dict(color=colour, width=1),
        marker=dict(size=3, color=colour),
        opacity=0.7,
        hoverinfo="skip",
        showlegend=False,
    )


def _marker(t: int, top: float) -> dict:
    return dict(
        type="scatter",
        x=[t, t],
        y=[0, top * 1.05],
        mode="lines",
        line=dict(color="black", width=2, dash="dot"),
        hoverinfo="skip",
        showlegend=False,
    )


def _columns(mode: str, attention: bool) -> list[str]:
    if attention:
        read = ["input x + read box", "read glimpse of x"]
        write = ["canvas σ(c_t) + write box", "write patch w_t"]
    else:
        read = ["input x (read whole)", "read: all of x"]
        write = ["canvas σ(c_t)", "write: whole-canvas update"]
    return read + write if mode == "reconstruct" else write


def _cells(mode: str) -> list[int]:
    """Which column each of _row_steps' traces goes into (1-based)."""
    return [1, 1, 1, 2, 3, 3, 3, 4] if mode == "reconstruct" else [1, 1, 1, 2]


def _row_steps(v: ModelView, trail: bool) -> list[list[dict]]:
    """The traces of one model's row at each step t = 0..T, in a fixed order (see _cells) so
    frames can replace them one for one. The input image is the same dict at every step."""
    tr, geo = v.trace, explore.windows(v.trace, v.cfg)
    canvas = tr.canvas_prob[0].numpy()  # (T+1, H, W)
    patch = tr.write_patch[0].numpy()  # (T, N, N), or (T, H, W) without attention
    patch_max = float(np.abs(patch).max()) or 1.0
    if tr.mode == "reconstruct":
        x = _grey(tr.x[0].numpy())
        glimpse = tr.read_glimpse[0, :, 0].numpy()  # (T, N, N) glimpses of x
        glimpse_max = float(glimpse.max()) or 1.0
    steps = []
    for t in range(v.T + 1):
        s = t - 1  # trace index of step t
        row = []
        if tr.mode == "reconstruct":
            row += [
                x,
                _square(geo.read_box[s] if t and geo.read_box is not None else None, READ),
                _trail(geo.read_centre, t, READ, trail),
                _grey(glimpse[s] if t else np.zeros_like(glimpse[0]), 0, glimpse_max),
            ]
        row += [
            _grey(canvas[t]),
            _square(geo.write_box[s] if t and geo.write_box is not None else None, WRITE),
            _trail(geo.write_centre, t, WRITE, trail),
            _grey(patch[s] if t else np.zeros_like(patch[0]), -patch_max, patch_max, "RdBu"),
        ]
        steps.append(row)
    return steps


def _two_lines(name: str, longest: int = 18) -> str:
    """A name longer than `longest` characters broken after its underscore nearest the middle, so
    that a label running down one row of panels stays beside that row."""
    cuts = [i for i, ch in enumerate(name) if ch == "_"]
    if len(name) <= longest or not cuts:
        return name
    cut = min(cuts, key=lambda i: abs(i - len(name) / 2)) + 1
    return f"{name[:cut]}<br>{name[cut:]}"


def _slim(trace: dict) -> dict:
    """The part of a trace a frame changes; Plotly merges it into the full trace."""
    keys = ("type", "z") if trace["type"] == "heatmap" else ("type", "x", "y")
    return {k: trace[k] for k in keys}


def _axis(k: int, letter: str) -> str:
    """Layout key of subplot k's axis (1-based): xaxis, xaxis2, ..."""
    return f"{letter}axis" if k == 1 else f"{letter}axis{k}"


def _ref(k: int) -> dict:
    """A trace's axes in subplot k."""
    return dict(xaxis="x" if k == 1 else f"x{k}", yaxis="y" if k == 1 else f"y{k}")


def scrubber(views: list[ModelView], t0: int, trail: bool = False, play_ms: int = 90) -> go.Figure:
    """Rows of panels (one per model) and a bottom row of the per-step summary (KL_t, or canvas
    change when generating), all moved together by the figure's own slider and play button.

    Built as plain dicts with typed arrays and validated once by go.Figure: T + 1 frames of
    graph objects built one by one took about half a second for T = 64."""
    mode = views[0].trace.mode
    n_cols = len(_columns(mode, True))
    T = max(v.T for v in views)
    t0 = max(0, min(t0, T))
    titles = [c for v in views for c in _columns(mode, v.cfg.attention)]
    summary = "KL_t per step (nats): click a bar to open there" if mode == "reconstruct" else "ink moved per step"
    layout = make_subplots(
        rows=len(views) + 1,
        cols=n_cols,
        specs=[[{}] * n_cols] * len(views) + [[{"colspan": n_cols}] + [None] * (n_cols - 1)],
        subplot_titles=titles + [summary],
        vertical_spacing=0.09 / max(1, len(views)),
        horizontal_spacing=0.04,
        row_heights=[1.0] * len(views) + [0.7],
    ).layout.to_plotly_json()
    steps = [_row_steps(v, trail) for v in views]
    cells = [r * n_cols + c for r in range(len(views)) for c in _cells(mode)]  # subplot of each panel
    data = [{**p, **_ref(k)} for p, k in zip(_panels_at(views, steps, t0), cells, strict=True)]
    images = (1, 3) if mode == "reconstruct" else (1,)  # columns showing a whole image
    for r, v in enumerate(views):
        for c in range(1, n_cols + 1):
            k = r * n_cols + c
            layout[_axis(k, "x")].update(visible=False, constrain="domain")
            layout[_axis(k, "y")].update(visible=False, autorange="reversed", scaleanchor=_ref(k)["xaxis"])
            if c in images:  # image panels keep the image's extent, so a box or trail running off it is clipped
                layout[_axis(k, "x")]["range"] = [-0.5, v.cfg.width - 0.5]
                layout[_axis(k, "y")].update(autorange=False, range=[v.cfg.height - 0.5, -0.5])
        domain = layout[_axis(r * n_cols + 1, "y")]["domain"]  # the model's name down the left of its row
        layout["annotations"].append(
            dict(
                text=f"<b>{_two_lines(v.name)}</b>",
                x=-0.01,
                y=sum(domain) / 2,
                xref="paper",
                yref="paper",
                xanchor="right",
                textangle=-90,
                showarrow=False,
                font=dict(size=13),
            )
        )
    bottom = len(views) * n_cols + 1
    summaries = [explore.step_summary(v.trace) for v in views]
    top = max(float(s.max()) for s in summaries) or 1.0
    for i, (v, s) in enumerate(zip(views, summaries, strict=True)):
        data.append(
            dict(
                type="bar",
                x=np.arange(1, v.T + 1),
                y=_typed(s),
                name=v.name,
                marker_color=BAR_COLOURS[i % 2],
                hovertemplate="t=%{x}: %{y:.3f}<extra>" + v.name + "</extra>",
                **_ref(bottom),
            )
        )
    data.append({**_marker(t0, top), **_ref(bottom)})
    layout[_axis(bottom, "x")].update(title=dict(text="step t"), range=[0.5, T + 0.5])
    layout[_axis(bottom, "y")].update(range=[0, top * 1.08], fixedrange=True)

    # Frames carry only what changes (z of the images, x/y of the lines); the input image is static.
    static = {r * len(_cells(mode)) for r in range(len(views))} if mode == "reconstruct" else set()
    moving = [i for i in range(len(cells)) if i not in static] + [len(data) - 1]
    frames = [
        dict(
            name=str(t),
            data=[_slim(p) for i, p in enumerate(_panels_at(views, steps, t)) if i not in static]
            + [_slim(_marker(t, top))],
            traces=moving,
        )
        for t in range(T + 1)
    ]
    anim = dict(mode="immediate", frame=dict(duration=play_ms, redraw=True), transition=dict(duration=0))
    step_anim = {**anim, "frame": dict(duration=0, redraw=True)}
    layout.update(
        height=PANEL_PX * len(views) + 360,
        margin=dict(l=40, r=10, t=40, b=110),
        barmode="group",
        showlegend=len(views) > 1,
        legend=dict(
            orientation="h",
            yanchor="top",
            y=layout[_axis(bottom, "y")]["domain"][1] - 0.01,
            x=1,
            xanchor="right",
            bgcolor="rgba(255,255,255,0.7)",
        ),
        sliders=[
            dict(
                active=t0,
                currentvalue=dict(prefix="step t = ", font=dict(size=14)),
                x=0.12,
                len=0.88,
                y=0,
                yanchor="top",
                pad=dict(t=50, b=10),
                steps=[dict(label=str(t), method="animate", args=[[str(t)], step_anim]) for t in range(T + 1)],
            )
        ],
        updatemenus=[
            dict(
                type="buttons",
                direction="left",
                x=0.12,
                y=0,
                xanchor="right",
                yanchor="top",
                pad=dict(t=75, r=10),
                showactive=False,
                buttons=[
                    dict(label="▶ play", method="animate", args=[None, {**anim, "fromcurrent": True}]),
                    dict(label="❚❚ pause", method="animate", args=[[None], step_anim]),
                ],
            )
        ],
    )
    return go.Figure(data=data, layout=layout, frames=frames)


def _panels_at(views: list[ModelView], steps: list[list[list[dict]]], t: int) -> list[dict]:
    """Every model's panels at step t, each model clamped to its own T."""
    return [p for v, rows in zip(views, steps, strict=True) for p in rows[min(t, v.T)]]


def bar_trace_indices(fig: go.Figure) -> set[int]:
    """Curve numbers of the per-step bars (for telling a bar click from other clicks)."""
    return {i for i, d in enumerate(fig.data) if d.type == "bar"}


def kl_heatmap(views: list[ModelView]) -> go.Figure:
    """KL per step and latent dimension, one panel per model: which dimensions carry information
    at which step."""
    layout = _row_layout([v.name for v in views], spacing=0.14)
    data = []
    for k, v in enumerate(views, start=1):
        data.append(
            dict(
                type="heatmap",
                z=_typed(v.trace.kl[0].numpy().T),  # (Z, T)
                x=np.arange(1, v.T + 1),
                colorscale="Viridis",
                colorbar=dict(title="nats", x=layout[_axis(k, "x")]["domain"][1] + 0.01, xanchor="left", thickness=14),
                hovertemplate="t=%{x}, dim %{y}: %{z:.3f} nats<extra></extra>",
                **_ref(k),
            )
        )
        layout[_axis(k, "x")]["title"] = dict(text="step t")
        layout[_axis(k, "y")]["title"] = dict(text="latent dimension")
    layout.update(height=360, margin=dict(l=10, r=10, t=40, b=10))
    return go.Figure(data=data, layout=layout)


def _row_layout(titles: list[str], spacing: float) -> dict:
    """One row of equal subplots with a title over each, laid out as make_subplots does (by hand:
    make_subplots takes about 10 ms, and the figures using this are rebuilt on every rerun)."""
    n = len(titles)
    width = (1 - spacing * (n - 1)) / n
    layout = {"annotations": []}
    for k, title in enumerate(titles, start=1):
        x0 = (k - 1) * (width + spacing)
        layout[_axis(k, "x")] = dict(anchor=_ref(k)["yaxis"], domain=[x0, x0 + width])
        layout[_axis(k, "y")] = dict(anchor=_ref(k)["xaxis"], domain=[0.0, 1.0])
        layout["annotations"].append(
            dict(text=title, x=x0 + width / 2, y=1.0, xref="paper", yref="paper", xanchor="center", yanchor="bottom")
            | dict(showarrow=False, font=dict(size=16))
        )
    return layout


def images_row(panels: list[tuple[str, np.ndarray]], diff_last: bool = False, height: int = 260) -> go.Figure:
    """Greyscale images side by side with titles; the last one on a red/blue scale when diff_last."""
    layout = _row_layout([t for t, _ in panels], spacing=0.03)
    data = []
    for k, (_, img) in enumerate(panels, start=1):
        if diff_last and k == len(panels):
            m = float(np.abs(img).max()) or 1.0
            data.append({**_grey(img, -m, m, "RdBu_r", hover="%{z:+.2f}"), **_ref(k)})
        else:
            data.append({**_grey(img), **_ref(k)})
        layout[_axis(k, "x")].update(visible=False, constrain="domain")
        layout[_axis(k, "y")].update(visible=False, autorange="reversed", scaleanchor=_ref(k)["xaxis"])
    layout.update(height=height, margin=dict(l=10, r=10, t=40, b=10))
    return go.Figure(data=data, layout=layout)


def traversal_grid(grid: np.ndarray, dims: list[int], values: tuple[float, ...]) -> go.Figure:
    """(D, V, H, W) final canvases tiled into one image, a row per dimension, a column per value."""
    D, V, H, W = grid.shape
    pad = 2
    tiled = np.full((D * (H + pad) - pad, V * (W + pad) - pad), 0.5, dtype=np.float32)
    for i in range(D):
        for j in range(V):
            tiled[i * (H + pad) : i * (H + pad) + H, j * (W + pad) : j * (W + pad) + W] = grid[i, j]
    layout = dict(
        xaxis=dict(
            tickvals=[j * (W + pad) + W / 2 for j in range(V)],
            ticktext=[f"{v:+g}σ" for v in values],
            side="top",
            constrain="domain",
        ),
        yaxis=dict(
            tickvals=[i * (H + pad) + H / 2 for i in range(D)],
            ticktext=[f"dim {d}" for d in dims],
            autorange="reversed",
            scaleanchor="x",
        ),
        height=min(900, 80 + 70 * D),
        margin=dict(l=10, r=10, t=30, b=10),
    )
    return go.Figure(data=[_grey(tiled)], layout=layout)
