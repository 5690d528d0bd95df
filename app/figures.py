"""Plotly figures of traces. Each builder takes computed arrays and returns a figure; none runs
the model. The scrubber is one figure with a frame per step and its own slider and play button,
so moving in time happens in the browser without a Streamlit rerun."""

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


def _grey(z, zmin=0.0, zmax=1.0, colorscale="gray", hover="%{z:.2f}") -> go.Heatmap:
    return go.Heatmap(
        z=np.asarray(z, dtype=np.float32).round(3),
        zmin=zmin,
        zmax=zmax,
        colorscale=colorscale,
        showscale=False,
        hovertemplate=f"x=%{{x}} y=%{{y}}: {hover}<extra></extra>",
    )


def _square(box, colour: str) -> go.Scatter:
    """The outline of box (x0, y0, x1, y1); an empty trace when box is None."""
    x0, y0, x1, y1 = (float(v) for v in box) if box is not None else (np.nan,) * 4
    return go.Scatter(
        x=[x0, x1, x1, x0, x0],
        y=[y0, y0, y1, y1, y0],
        mode="lines",
        line=dict(color=colour, width=2),
        hoverinfo="skip",
        showlegend=False,
    )


def _trail(centres: np.ndarray | None, t: int, colour: str, on: bool) -> go.Scatter:
    pts = centres[:t] if (on and centres is not None and t > 0) else np.empty((0, 2))
    return go.Scatter(
        x=pts[:, 0],
        y=pts[:, 1],
        mode="lines+markers",
        line=dict(color=colour, width=1),
        marker=dict(size=3, color=colour),
        opacity=0.7,
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


def _panels(v: ModelView, geo: explore.Windows, t: int, trail: bool) -> list:
    """The traces of one model's row at step t (0..T, clamped to its T), in a fixed order so frames
    can replace them one for one."""
    tr, T = v.trace, v.T
    t = min(t, T)
    s = t - 1  # trace index of step t
    out = []
    patch = tr.write_patch[0].numpy()
    patch_max = float(np.abs(patch).max()) or 1.0
    if tr.mode == "reconstruct":
        out.append(_grey(tr.x[0].numpy()))
        out.append(_square(geo.read_box[s] if t and geo.read_box is not None else None, READ))
        out.append(_trail(geo.read_centre, t, READ, trail))
        glimpse = tr.read_glimpse[0, :, 0].numpy()  # (T, N, N) glimpses of x
        out.append(_grey(glimpse[s] if t else np.zeros_like(glimpse[0]), 0, float(glimpse.max()) or 1.0))
    out.append(_grey(tr.canvas_prob[0, t].numpy()))
    out.append(_square(geo.write_box[s] if t and geo.write_box is not None else None, WRITE))
    out.append(_trail(geo.write_centre, t, WRITE, trail))
    out.append(
        _grey(
            patch[s] if t else np.zeros_like(patch[0]),
            -patch_max,
            patch_max,
            "RdBu",
            hover="%{z:.2f}",
        )
    )
    return out


def _slim(trace):
    """The part of a trace a frame changes; Plotly merges it into the full trace."""
    if trace.type == "heatmap":
        return go.Heatmap(z=trace.z)
    return go.Scatter(x=trace.x, y=trace.y)


def _cells(mode: str) -> list[int]:
    """Which column each of _panels' traces goes into (1-based)."""
    return [1, 1, 1, 2, 3, 3, 3, 4] if mode == "reconstruct" else [1, 1, 1, 2]


def scrubber(views: list[ModelView], t0: int, trail: bool = False, play_ms: int = 90) -> go.Figure:
    """Rows of panels (one per model) and a bottom row of the per-step summary (KL_t, or canvas
    change when generating), all moved together by the figure's own slider and play button."""
    mode = views[0].trace.mode
    cols = _columns(mode, True)
    T = max(v.T for v in views)
    t0 = max(0, min(t0, T))
    geos = [explore.windows(v.trace, v.cfg) for v in views]
    titles = [c for v in views for c in _columns(mode, v.cfg.attention)]
    summary = "KL_t per step (nats): click a bar to open there" if mode == "reconstruct" else "ink moved per step"
    fig = make_subplots(
        rows=len(views) + 1,
        cols=len(cols),
        specs=[[{}] * len(cols)] * len(views) + [[{"colspan": len(cols)}] + [None] * (len(cols) - 1)],
        subplot_titles=titles + [summary],
        vertical_spacing=0.09 / max(1, len(views)),
        horizontal_spacing=0.04,
        row_heights=[1.0] * len(views) + [0.7],
    )
    moving = []  # indices of traces that frames replace
    for r, (v, geo) in enumerate(zip(views, geos, strict=True), start=1):
        for panel, c in zip(_panels(v, geo, t0, trail), _cells(mode), strict=True):
            moving.append(len(fig.data))
            fig.add_trace(panel, row=r, col=c)
        images = (1, 3) if mode == "reconstruct" else (1,)  # columns showing a whole image
        for c in range(1, len(cols) + 1):
            # Image panels keep the image's extent, so a box or trail running off it is clipped.
            x_range = [-0.5, v.cfg.width - 0.5] if c in images else None
            y_range = [v.cfg.height - 0.5, -0.5] if c in images else None
            fig.update_xaxes(visible=False, row=r, col=c, constrain="domain", range=x_range)
            fig.update_yaxes(
                visible=False,
                row=r,
                col=c,
                autorange="reversed" if y_range is None else False,
                range=y_range,
                scaleanchor=f"x{(r - 1) * len(cols) + c}",
            )
    bottom = len(views) + 1
    summaries = [explore.step_summary(v.trace) for v in views]
    top = max(float(s.max()) for s in summaries) or 1.0
    for i, (v, s) in enumerate(zip(views, summaries, strict=True)):
        fig.add_trace(
            go.Bar(
                x=np.arange(1, v.T + 1),
                y=s,
                name=v.name,
                marker_color=BAR_COLOURS[i % 2],
                hovertemplate="t=%{x}: %{y:.3f}<extra>" + v.name + "</extra>",
            ),
            row=bottom,
            col=1,
        )
    for r, v in enumerate(views, start=1):  # the model's name down the left of its row
        domain = fig.get_subplot(r, 1).yaxis.domain
        fig.add_annotation(
            text=f"<b>{v.name}</b>",
            x=-0.01,
            y=sum(domain) / 2,
            xref="paper",
            yref="paper",
            xanchor="right",
            textangle=-90,
            showarrow=False,
            font=dict(size=13),
        )
    bar_top = fig.get_subplot(bottom, 1).yaxis.domain[1]
    marker_index = len(fig.data)
    fig.add_trace(_marker(t0, top), row=bottom, col=1)
    moving.append(marker_index)
    fig.update_xaxes(title_text="step t", range=[0.5, T + 0.5], row=bottom, col=1)
    fig.update_yaxes(range=[0, top * 1.08], fixedrange=True, row=bottom, col=1)

    # Frames carry only what changes (z of the images, x/y of the lines); the input image is static.
    static = {row * len(_cells(mode)) for row in range(len(views))} if mode == "reconstruct" else set()
    moving = [i for k, i in enumerate(moving) if k not in static]
    frames = []
    for t in range(T + 1):
        data = [p for v, geo in zip(views, geos, strict=True) for p in _panels(v, geo, t, trail)]
        data = [_slim(p) for k, p in enumerate(data) if k not in static]
        frames.append(go.Frame(name=str(t), data=data + [_slim(_marker(t, top))], traces=moving))
    fig.frames = frames
    anim = dict(mode="immediate", frame=dict(duration=play_ms, redraw=True), transition=dict(duration=0))
    step_anim = {**anim, "frame": dict(duration=0, redraw=True)}
    fig.update_layout(
        height=PANEL_PX * len(views) + 360,
        margin=dict(l=40, r=10, t=40, b=110),
        barmode="group",
        showlegend=len(views) > 1,
        legend=dict(
            orientation="h", yanchor="top", y=bar_top - 0.01, x=1, xanchor="right", bgcolor="rgba(255,255,255,0.7)"
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
    return fig


def _marker(t: int, top: float) -> go.Scatter:
    return go.Scatter(
        x=[t, t],
        y=[0, top * 1.05],
        mode="lines",
        line=dict(color="black", width=2, dash="dot"),
        hoverinfo="skip",
        showlegend=False,
    )


def bar_trace_indices(fig: go.Figure) -> set[int]:
    """Curve numbers of the per-step bars (for telling a bar click from other clicks)."""
    return {i for i, d in enumerate(fig.data) if d.type == "bar"}


def kl_heatmap(views: list[ModelView]) -> go.Figure:
    """KL per step and latent dimension, one panel per model: which dimensions carry information
    at which step."""
    fig = make_subplots(rows=1, cols=len(views), subplot_titles=[v.name for v in views], horizontal_spacing=0.14)
    for i, v in enumerate(views, start=1):
        kl = v.trace.kl[0].numpy().T  # (Z, T)
        right = fig.get_subplot(1, i).xaxis.domain[1]
        fig.add_trace(
            go.Heatmap(
                z=kl,
                x=np.arange(1, v.T + 1),
                colorscale="Viridis",
                colorbar=dict(title="nats", x=right + 0.01, xanchor="left", thickness=14),
                hovertemplate="t=%{x}, dim %{y}: %{z:.3f} nats<extra></extra>",
            ),
            row=1,
            col=i,
        )
        fig.update_xaxes(title_text="step t", row=1, col=i)
        fig.update_yaxes(title_text="latent dimension", row=1, col=i)
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def images_row(panels: list[tuple[str, np.ndarray]], diff_last: bool = False, height: int = 260) -> go.Figure:
    """Greyscale images side by side with titles; the last one on a red/blue scale when diff_last."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels], horizontal_spacing=0.03)
    for i, (_, img) in enumerate(panels, start=1):
        if diff_last and i == len(panels):
            m = float(np.abs(img).max()) or 1.0
            fig.add_trace(_grey(img, -m, m, "RdBu_r", hover="%{z:+.2f}"), row=1, col=i)
        else:
            fig.add_trace(_grey(img), row=1, col=i)
        fig.update_xaxes(visible=False, row=1, col=i, constrain="domain")
        fig.update_yaxes(visible=False, row=1, col=i, autorange="reversed", scaleanchor=f"x{i}")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def traversal_grid(grid: np.ndarray, dims: list[int], values: tuple[float, ...]) -> go.Figure:
    """(D, V, H, W) final canvases tiled into one image, a row per dimension, a column per value."""
    D, V, H, W = grid.shape
    pad = 2
    tiled = np.full((D * (H + pad) - pad, V * (W + pad) - pad), 0.5, dtype=np.float32)
    for i in range(D):
        for j in range(V):
            tiled[i * (H + pad) : i * (H + pad) + H, j * (W + pad) : j * (W + pad) + W] = grid[i, j]
    fig = go.Figure(_grey(tiled, hover="%{z:.2f}"))
    fig.update_xaxes(
        tickvals=[j * (W + pad) + W / 2 for j in range(V)],
        ticktext=[f"{v:+g}σ" for v in values],
        side="top",
        constrain="domain",
    )
    fig.update_yaxes(
        tickvals=[i * (H + pad) + H / 2 for i in range(D)],
        ticktext=[f"dim {d}" for d in dims],
        autorange="reversed",
        scaleanchor="x",
    )
    fig.update_layout(height=min(900, 80 + 70 * D), margin=dict(l=10, r=10, t=30, b=10))
    return fig
