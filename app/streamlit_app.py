"""DRAW Explorer: watch a DRAW model draw, scrub its attention, edit its latents.

    streamlit run app/streamlit_app.py

A thin page: widgets in small *_ui functions, the work in draw/explore.py and draw/images.py,
the figures in app/figures.py. Checkpoints come from $DRAW_CHECKPOINTS (default: checkpoints/),
MNIST test digits from $DRAW_DATA_DIR when it is set.
"""

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `streamlit run` adds app/ only

import numpy as np  # noqa: E402
import streamlit as st  # noqa: E402
import torch  # noqa: E402

from app import figures  # noqa: E402
from app.sketch import sketch_ui  # noqa: E402
from draw import data, explore, images  # noqa: E402
from draw.checkpoint import CheckpointError, load  # noqa: E402
from draw.explore import CheckpointEntry, Edit, ViewState  # noqa: E402

MAX_UPLOAD_MB = 10
NOTHING = "(nothing)"  # the compare box's "no second model"; None would read "Choose an option"
EDIT_DIMS_DEFAULT = 2
TRAVERSAL_DIMS_DEFAULT = 5
DIMS_HELP = (
    "Preselected: the dimensions that matter most at step t, those with the most KL when reconstructing, "
    "those whose nudge moves the final drawing most when generating. Most of z_t is unused by the attention models."
)

# The page runs batch-1 traces: one thread each. A second thread per op made them several times
# slower on a 2-core machine with other work running (see benchmarks/results.md).
torch.set_num_threads(1)
torch.set_flush_denormal(True)  # subnormal filter tails are slow and make no difference (see draw/train.py)


# ---- cached work (keyed by plain values; nothing returned is mutated) ---------------------------
# Traces and figures are kept with st.cache_resource: shared read-only, never copied. st.cache_data
# would pickle each one when stored and unpickle a copy on every rerun that reads it.


@st.cache_resource(show_spinner="Loading checkpoint…", max_entries=16)
def load_model(path: str, version: float):
    """(model, None) or (None, reason). `version` (the weights' mtime) reloads a re-exported one."""
    try:
        model, _ = load(path)
        return model, None
    except CheckpointError as e:
        return None, str(e)


@st.cache_resource(show_spinner="Reading MNIST test digits…")
def load_test_digits(root: str):
    """(images, labels, None) or (None, None, reason)."""
    try:
        x, y = data.load_mnist(root, "test")
        return x, y, None
    except (data.DataError, OSError) as e:
        return None, None, str(e)


@st.cache_resource(max_entries=32, show_spinner=False)
def cached_trace(path: str, version: float, mode: str, seed: int, x: np.ndarray | None):
    model, _ = load_model(path, version)
    return explore.make_trace(model, mode, seed, x)


@st.cache_resource(max_entries=32, show_spinner=False)
def cached_edit(path: str, version: float, mode: str, seed: int, x: np.ndarray | None, edit: tuple):
    model, _ = load_model(path, version)
    trace = cached_trace(path, version, mode, seed, x)
    return explore.apply_edit(model, trace, Edit(*edit))


@st.cache_resource(max_entries=64, show_spinner=False)
def cached_top_dims(path: str, version: float, mode: str, seed: int, x: np.ndarray | None, zt: int, k: int):
    model, _ = load_model(path, version)
    return explore.top_dims(model, cached_trace(path, version, mode, seed, x), zt, k)


@st.cache_resource(max_entries=32, show_spinner=False)
def cached_busiest_step(path: str, version: float, mode: str, seed: int, x: np.ndarray | None):
    model, _ = load_model(path, version)
    return explore.busiest_step(model, cached_trace(path, version, mode, seed, x))


@st.cache_resource(max_entries=16, show_spinner=False)
def cached_traversal(path: str, version: float, mode: str, seed: int, x: np.ndarray | None, zt, dims, closed):
    model, _ = load_model(path, version)
    trace = cached_trace(path, version, mode, seed, x)
    return explore.traversal(model, trace, zt, list(dims), closed_loop=closed)


@st.cache_resource(max_entries=8, show_spinner=False)
def scrubber_figure(drawing_id: str, t0: int, trail: bool, _views: tuple):
    """The scrubber of one drawing (identified by drawing_id), built once: a latent edit or another
    tab reruns the page without rebuilding its T + 1 frames. Shared read-only: st.plotly_chart
    serialises a copy."""
    return figures.scrubber(list(_views), t0, trail)


# ---- state: URL <-> session ---------------------------------------------------------------------


def restore_from_url(configs: dict, n_test: int | None) -> None:
    """On a session's first run, put the URL's state into the widgets' keys."""
    if "_url_read" in st.session_state:
        return
    state, notes = explore.parse_state(st.query_params.to_dict(), configs, n_test)
    ss = st.session_state
    ss.update(
        model=state.model,
        compare=state.compare or NOTHING,
        mode=state.mode,
        seed=state.seed,
        source=state.source if (state.source != "test" or n_test) else "draw",
        index=state.index,
        t=state.t,
        zt=state.zt,
        resample=state.resample,
        closed=state.closed,
        edit_dims=[d for d, _ in state.edits],
        **{f"edit_v_{d}": v for d, v in state.edits},
    )
    if state.dims:
        ss["dims"] = list(state.dims)
    ss["_url_notes"] = notes
    ss["_url_read"] = True


def current_state() -> ViewState:
    ss = st.session_state
    dims = tuple(ss.get("edit_dims", []))
    traversal_dims = tuple(ss.get("dims", []))
    return ViewState(
        model=ss.get("model"),
        compare=None if ss.get("compare") == NOTHING else ss.get("compare"),
        mode=ss.get("mode", "generate"),
        seed=int(ss.get("seed", 0)),
        source=ss.get("source", "test"),
        index=int(ss.get("index", 0)),
        t=ss.get("t"),
        zt=None if ss.get("zt") == ss.get("_zt_default") else ss.get("zt"),
        edits=ss.get("_edits", tuple((d, round(float(ss[f"edit_v_{d}"]), 2)) for d in dims if f"edit_v_{d}" in ss)),
        resample=ss.get("resample"),
        closed=bool(ss.get("closed", False)),
        dims=() if list(traversal_dims) == list(ss.get("_dims_default", [])) else traversal_dims,
    )


def reset_edits() -> None:
    ss = st.session_state
    ss.pop("_edits", None)
    for d in ss.get("edit_dims", []):
        ss.pop(f"edit_v_{d}", None)
    ss["edit_dims"] = []
    ss["resample"] = None


def resample_latent() -> None:
    st.session_state["resample"] = (st.session_state.get("resample") or 0) + 1


def new_sample() -> None:
    st.session_state["seed"] = (int(st.session_state.get("seed", 0)) + 1) % explore.MAX_SEED
    st.session_state["t"] = None
    reset_edits()


# ---- sidebar ------------------------------------------------------------------------------------


def model_ui(entries: list[CheckpointEntry], usable: dict) -> tuple[str, str | None]:
    st.sidebar.header("Model")
    names = list(usable)
    if st.session_state.get("model") not in names:
        st.session_state["model"] = names[0]
    name = st.sidebar.selectbox("Checkpoint", names, key="model", on_change=reset_edits)
    st.sidebar.caption(usable[name][0].describe())
    others = [NOTHING] + [n for n in names if n != name]
    if st.session_state.get("compare") not in others:
        st.session_state["compare"] = NOTHING
    compare = st.sidebar.selectbox(
        "Compare side by side with",
        others,
        key="compare",
        help="Draw the same input with a second model: attention traces strokes, no attention sharpens a blur.",
    )
    if compare == NOTHING:
        compare = None
    else:
        st.sidebar.caption(usable[compare][0].describe())
    broken = [e for e in entries if e.name not in usable]
    if broken:
        with st.sidebar.expander(f"⚠️ {len(broken)} checkpoint(s) unusable"):
            for e in broken:
                st.markdown(f"**{e.name}**: {e.error}")
    return name, compare


def input_ui(test_digits) -> tuple[str, np.ndarray | None, str]:
    """Mode and input. Returns (mode, grey 28x28 image or None, a caption for the input)."""
    st.sidebar.header("What to draw")
    mode = st.sidebar.radio(
        "Mode",
        explore.MODES,
        key="mode",
        horizontal=True,
        format_func=str.capitalize,
        on_change=reset_edits,
        help="Generate: every z_t from the prior N(0, I). Reconstruct: the encoder reads a digit and infers z_t.",
    )
    st.sidebar.number_input(
        "Seed" if mode == "generate" else "Noise seed (ε of z = μ + σε)",
        0,
        explore.MAX_SEED,
        key="seed",
        on_change=reset_edits,
    )
    if mode == "generate":
        st.sidebar.button("New sample", on_click=new_sample, width="stretch")
        return mode, None, ""
    x_all, y_all, data_error = test_digits
    sources = ["test", "draw", "upload"] if x_all is not None else ["draw", "upload"]
    labels = {"test": "MNIST test digit", "draw": "Draw with the mouse", "upload": "Upload an image"}
    if st.session_state.get("source") not in sources:
        st.session_state["source"] = sources[0]
    source = st.sidebar.radio("Digit", sources, key="source", format_func=labels.get, on_change=reset_edits)
    if x_all is None:
        st.sidebar.caption(
            f"MNIST test digits: {data_error}"
            if data_error
            else "MNIST test digits appear here when $DRAW_DATA_DIR names an MNIST directory."
        )
    if source == "test":
        return mode, *test_digit_ui(x_all, y_all)
    if source == "draw":
        st.subheader("Draw a digit")
        pad, preview = st.columns([1, 2])
        with pad:
            url = sketch_ui()
        if not url:
            with preview:
                st.info("Draw a digit on the black pad, then release the mouse: DRAW reconstructs it.")
            return mode, None, ""
        return mode, *converted(lambda: images.upload_to_mnist(images.data_url_to_bytes(url)), preview, "your drawing")
    upload = st.sidebar.file_uploader(
        "Image of a digit",
        type=["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"],
        max_upload_size=MAX_UPLOAD_MB,
    )
    if upload is None:
        st.info("Upload an image of a digit in the sidebar (any colours: it is converted to 28×28 like MNIST).")
        return mode, None, ""
    return mode, *converted(lambda: images.upload_to_mnist(upload.getvalue()), st.container(), upload.name)


def test_digit_ui(x_all: np.ndarray, y_all: np.ndarray) -> tuple[np.ndarray, str]:
    n = len(x_all)
    if st.session_state.get("index", 0) >= n:
        st.session_state["index"] = 0

    def jump_to_label():
        label = st.session_state["label"]
        if label is None:
            return
        i = int(st.session_state.get("index", 0))
        hits = np.flatnonzero(y_all == label)
        later = hits[hits > i]
        st.session_state["index"] = int(later[0] if len(later) else hits[0])
        st.session_state["label"] = None  # so choosing the same label again goes on to the next one
        reset_edits()

    c1, c2 = st.sidebar.columns(2)
    c1.number_input(f"Index (0–{n - 1})", 0, n - 1, key="index", on_change=reset_edits)
    c2.selectbox(
        "Next with label",
        [None, *range(10)],
        key="label",
        format_func=lambda v: "—" if v is None else str(v),
        on_change=jump_to_label,
    )
    i = int(st.session_state["index"])
    return x_all[i], f"MNIST test digit #{i} (label {int(y_all[i])})"


def converted(convert, where, name: str) -> tuple[np.ndarray | None, str]:
    """Run an image conversion; show the 28x28 result, or the reason it failed."""
    try:
        x = convert()
    except images.ImageError as e:
        where.error(f"Could not use {name}: {e}.")
        return None, ""
    where.image(
        images.grey_to_rgb(images.binarize(x), 6),
        caption=f"{name} as the model reads it: 28×28, binarized",
        width=168,
    )
    return x, name


# ---- main view ----------------------------------------------------------------------------------


def scrubber_ui(views: list[figures.ModelView], trail: bool, drawing_id: str) -> None:
    T = max(v.T for v in views)
    t = st.session_state.get("t")
    t0 = T if t is None else min(int(t), T)
    fig = scrubber_figure(drawing_id, t0, trail, tuple(views))
    event = st.plotly_chart(
        fig,
        key="scrubber",
        on_select="rerun",
        selection_mode="points",
        config={"displaylogo": False, "toImageButtonOptions": {"filename": "draw_view"}},
    )
    bars = figures.bar_trace_indices(fig)
    points = [p for p in (event.selection.points if event else []) if p.get("curve_number") in bars]
    if points:
        clicked = int(round(points[-1]["x"]))
        if clicked != st.session_state.get("_clicked"):
            st.session_state["_clicked"] = clicked
            st.session_state["t"] = clicked
            st.rerun()


def kl_ui(views: list[figures.ModelView]) -> None:
    if views[0].trace.mode == "generate":
        st.info(
            "When generating, every z_t comes from the prior, so there is no posterior and KL is zero at every "
            "step. The bars above show how much ink each step moved instead; switch to *Reconstruct* to see "
            "which latent dimensions carry information at which step."
        )
        return
    st.caption("KL(q(z_t|·) ‖ N(0, I)) per step and latent dimension: bright cells are where information flows.")
    st.plotly_chart(figures.kl_heatmap(views), key="kl_heatmap")


def edit_ui(view: figures.ModelView, run_edit, top_dims, busiest_step) -> None:
    tr, T, Z = view.trace, view.T, view.cfg.z_size
    st.caption(
        f"Change z_t of **{view.name}** at one step and redraw from there. Values are in prior standard "
        "deviations (the prior is N(0, I)); steps before t are unchanged."
    )
    ss = st.session_state
    if ss.get("zt") is None or ss["zt"] > T or ss["zt"] == ss.get("_zt_default"):
        ss["zt"] = ss["_zt_default"] = busiest_step()  # follows the drawing until moved
    c1, c2 = st.columns([2, 1])
    zt = c1.slider("Step t whose latent is edited", 1, T, key="zt", on_change=reset_edits)
    if tr.mode == "reconstruct":
        c2.radio(
            "Later latents",
            [False, True],
            key="closed",
            horizontal=True,
            format_func=lambda c: "closed loop: re-inferred" if c else "open loop: kept",
            help="Open loop keeps z_{t+1..T} as they were; closed loop lets the encoder infer them again "
            "from the edited canvas (with the same noise).",
        )
    kl = tr.kl[0, zt - 1]
    if not st.session_state.get("edit_dims"):
        st.session_state["edit_dims"] = top_dims(zt, EDIT_DIMS_DEFAULT)
    dims = st.multiselect(
        "Dimensions of z_t to move",
        list(range(Z)),
        key="edit_dims",
        format_func=lambda d: f"dim {d}" + (f" (KL {float(kl[d]):.2f})" if tr.mode == "reconstruct" else ""),
        max_selections=8,
        help=DIMS_HELP,
    )

    def start(d: int) -> float:
        """Where the slider of z_t[d] starts: the drawn value, rounded to its 0.1 step and clipped."""
        return float(np.clip(round(float(tr.z[0, zt - 1, d]), 1), -explore.MAX_EDIT, explore.MAX_EDIT))

    cols = st.columns(max(1, min(4, len(dims))))
    for i, d in enumerate(dims):
        key = f"edit_v_{d}"
        if key not in st.session_state:
            st.session_state[key] = start(d)
        was = float(tr.z[0, zt - 1, d])
        cols[i % len(cols)].slider(
            f"z_t[{d}]  (was {was:+.2f})", -explore.MAX_EDIT, explore.MAX_EDIT, step=0.1, key=key
        )
    b1, b2, _ = st.columns([1, 1, 3])
    b1.button("Resample z_t", on_click=resample_latent, help="Draw all of z_t again from the prior.")
    b2.button("Reset edits", on_click=reset_edits)
    # A slider left where it started is not an edit.
    moved = tuple(
        (d, round(float(st.session_state[f"edit_v_{d}"]), 2))
        for d in dims
        if abs(st.session_state[f"edit_v_{d}"] - start(d)) > 1e-6
    )
    st.session_state["_edits"] = moved
    state = current_state()
    edit = Edit(zt, moved, state.resample, state.closed and tr.mode == "reconstruct")
    with st.spinner("Redrawing from step t…"):
        edited = run_edit(edit)
    before, after = tr.canvas_prob[0, -1].numpy(), edited.canvas_prob[0, -1].numpy()
    note = f"resampled (seed {edit.resample}), " if edit.resample is not None else ""
    st.plotly_chart(
        figures.images_row(
            [
                ("original final canvas", before),
                ("edited final canvas", after),
                ("difference: red added, blue removed", after - before),
            ],
            diff_last=True,
        ),
        key="edit_result",
    )
    if edit.is_noop:
        st.caption("Move a slider or press *Resample z_t* to edit; the difference then shows what changed.")
    else:
        st.caption(f"{note}{len(moved)} dimension(s) moved; mean |difference| = {np.abs(after - before).mean():.4f}")
    scrub = st.expander("Scrub the edited drawing", key="edit_scrub_open", on_change="rerun")
    if scrub.open:  # built only when open: T + 1 frames of a drawing that each edit replaces
        with scrub:
            st.plotly_chart(
                figures.scrubber([figures.ModelView(f"{view.name} (edited)", view.cfg, edited)], T),
                key="edit_scrubber",
            )


def traversal_ui(view: figures.ModelView, run_traversal, top_dims) -> None:
    Z = view.cfg.z_size
    zt = int(st.session_state["zt"])
    st.caption(
        f"Final canvases of **{view.name}** with one dimension of z_t (t = {zt}, chosen in *Edit latents*) "
        "swept over −3σ…+3σ while the rest of z stays as drawn. One batched redraw."
    )
    default = top_dims(zt, TRAVERSAL_DIMS_DEFAULT)
    if st.session_state.get("dims") in (None, st.session_state.get("_dims_default")) or any(
        d >= Z for d in st.session_state["dims"]
    ):
        st.session_state["dims"] = default
    st.session_state["_dims_default"] = default
    dims = st.multiselect(
        "Dimensions (rows)",
        list(range(Z)),
        key="dims",
        format_func=lambda d: f"dim {d}",
        max_selections=12,
        help=DIMS_HELP,
    )
    if not dims:
        st.info("Choose at least one dimension.")
        return
    with st.spinner(f"Redrawing {len(dims) * len(explore.TRAVERSAL_VALUES)} variations…"):
        grid = run_traversal(zt, tuple(dims))
    st.plotly_chart(figures.traversal_grid(grid, dims, explore.TRAVERSAL_VALUES), key="traversal")


def export_ui(views: list[figures.ModelView], drawing_id: str) -> None:
    T = max(v.T for v in views)
    t = st.session_state.get("t")
    t = T if t is None else min(int(t), T)
    pairs = [(v.trace, v.cfg) for v in views]
    names = [v.name for v in views]
    st.caption(
        "The GIF plays steps 0…T with the read (red) and write (green) boxes; the PNG shows one step "
        "the same way. The camera icon on the figure above saves exactly what it shows."
    )
    c1, c2, c3 = st.columns(3)
    with c1:
        saved = st.session_state.get("_gif")
        if saved is None or saved[0] != drawing_id:
            if st.button("Make animated GIF"):
                bar = st.progress(0.0, text="Rendering frames…")
                gif = explore.animation_gif(
                    pairs, progress=lambda f: bar.progress(f, text="Rendering frames…"), names=names
                )
                bar.empty()
                saved = st.session_state["_gif"] = (drawing_id, gif)
        if saved is not None and saved[0] == drawing_id:
            st.download_button("Download GIF", saved[1], file_name="draw.gif", mime="image/gif", on_click="ignore")
    with c2:
        png_t = st.number_input("Step t of the PNG", 0, T, value=t, key=f"png_t_{t}")
        st.download_button(
            f"Download PNG of step {png_t}",
            data=lambda: images.to_png(explore.view_image(pairs, png_t, names=names)),
            file_name=f"draw_t{png_t}.png",
            mime="image/png",
            on_click="ignore",
        )
    with c3:
        st.download_button(
            "Download trace JSON",
            data=lambda: explore.trace_to_json(views[0].trace, views[0].cfg, views[0].name),
            file_name=f"{views[0].name}_trace.json",
            mime="application/json",
            on_click="ignore",
        )


def main() -> None:
    st.set_page_config(page_title="DRAW Explorer", page_icon="✏️", layout="wide")
    st.title("DRAW Explorer")
    st.caption(
        "DRAW (Gregor et al. 2015) builds an image over T steps: at each step it **reads** a patch of the input "
        "through a grid of Gaussian filters (red box), and **writes** a patch onto the canvas (green box). "
        "Press ▶ or drag the slider under the figure to watch it draw."
    )

    root = explore.checkpoints_dir()
    entries = explore.list_checkpoints(root)
    usable = {}
    for e in entries:
        if e.cfg is None:
            continue
        model, error = load_model(str(e.path), explore.weights_version(e))
        if model is None:
            entries[entries.index(e)] = CheckpointEntry(e.name, e.path, e.cfg, e.metadata, error)
        else:
            usable[e.name] = (e, model)
    if not usable:
        st.error(f"No usable checkpoint in {root}. Train one with `python -m draw.train` or set $DRAW_CHECKPOINTS.")
        for e in entries:
            st.markdown(f"- **{e.name}**: {e.error}")
        st.stop()

    data_root = data.data_dir()
    test_digits = load_test_digits(str(data_root)) if data_root else (None, None, None)
    n_test = len(test_digits[0]) if test_digits[0] is not None else None
    restore_from_url({n: e.cfg for n, (e, _) in usable.items()}, n_test)
    notes = st.session_state.pop("_url_notes", [])  # shown once, on the run that read the URL
    if notes:
        st.warning("Parts of this link could not be used:\n" + "\n".join(f"- {n}" for n in notes))

    name, compare = model_ui(entries, usable)
    mode, x, x_name = input_ui(test_digits)
    trail = st.sidebar.checkbox("Trail of attention centres", key="trail")
    st.query_params.from_dict(explore.state_to_params(current_state()))
    if mode == "reconstruct" and x is None:
        return

    seed = int(st.session_state["seed"])
    keys = {}  # model name -> the arguments of its cached trace
    for n in [name, compare] if compare else [name]:
        e, _ = usable[n]
        keys[n] = (str(e.path), explore.weights_version(e), mode, seed, x)
    with st.spinner("Drawing…"):
        views = [figures.ModelView(n, usable[n][0].cfg, cached_trace(*k)) for n, k in keys.items()]
    drawing_id = hashlib.sha1(
        repr([k[:4] for k in keys.values()]).encode() + (b"" if x is None else x.tobytes())
    ).hexdigest()

    if mode == "reconstruct":
        nll = ", ".join(
            f"{v.name}: −log p(x|z) {float(v.trace.recon_nats[0]):.1f} + KL {float(v.trace.kl_per_step.sum()):.1f} nats"
            for v in views
        )
        st.markdown(f"Reconstructing **{x_name}** — {nll}")
    else:
        st.markdown(
            f"Generating from the prior with seed **{seed}**: there is no input, so the encoder and its read "
            "window are idle and only the canvas and the write window are shown."
        )
    scrubber_ui(views, trail, drawing_id)
    tabs_ui(views, keys[name], drawing_id)


@st.fragment
def tabs_ui(views: list[figures.ModelView], key: tuple, drawing_id: str) -> None:
    """Edits, traversal, KL heatmap and exports of the first model. A fragment: in the browser a
    change in here reruns only this part of the page, never the scrubber above it."""
    tab_edit, tab_trav, tab_kl, tab_export = st.tabs(["Edit latents", "Latent traversal", "KL heatmap", "Export"])

    def top_dims(zt: int, k: int) -> list[int]:
        return cached_top_dims(*key, zt, k)

    with tab_edit:
        edit_ui(
            views[0],
            lambda edit: cached_edit(*key, (edit.step, edit.values, edit.resample, edit.closed_loop)),
            top_dims,
            lambda: cached_busiest_step(*key),
        )
    with tab_trav:
        traversal_ui(
            views[0], lambda zt, dims: cached_traversal(*key, zt, dims, bool(st.session_state.get("closed"))), top_dims
        )
    with tab_kl:
        kl_ui(views)
    with tab_export:
        export_ui(views, drawing_id)
    st.query_params.from_dict(explore.state_to_params(current_state()))


main()
