"""A mouse (or touch) drawing pad: an inline st.components.v2 component, no package and no
network. White strokes on a black 280x280 canvas, like MNIST; on each pen-up it sends the canvas
as a PNG data URL, which the page turns into 28x28 with draw.images like any upload."""

import streamlit as st

HTML = """
<div class="pad">
  <canvas width="280" height="280" aria-label="drawing pad: draw a digit"></canvas>
  <button type="button">Clear</button>
</div>
"""

CSS = """
.pad { display: flex; flex-direction: column; gap: 6px; align-items: flex-start; }
canvas { background: #000; border-radius: 6px; touch-action: none; cursor: crosshair; width: 210px; height: 210px; }
button { font: inherit; padding: 2px 12px; border-radius: 6px; border: 1px solid #bbb; background: #fff; }
"""

JS = """
export default function (component) {
  const { setStateValue, parentElement } = component;
  const canvas = parentElement.querySelector("canvas");
  const button = parentElement.querySelector("button");
  if (canvas.dataset.ready) return;
  canvas.dataset.ready = "1";
  const ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  ctx.strokeStyle = "#fff"; ctx.lineWidth = 22; ctx.lineCap = "round"; ctx.lineJoin = "round";
  let drawing = false;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  };
  canvas.addEventListener("pointerdown", (e) => {
    drawing = true; canvas.setPointerCapture(e.pointerId);
    const [x, y] = at(e); ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x + 0.1, y); ctx.stroke();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const [x, y] = at(e); ctx.lineTo(x, y); ctx.stroke();
  });
  const up = () => {
    if (!drawing) return;
    drawing = false; setStateValue("png", canvas.toDataURL("image/png"));
  };
  canvas.addEventListener("pointerup", up);
  canvas.addEventListener("pointercancel", up);
  button.addEventListener("click", () => { clear(); setStateValue("png", null); });
}
"""

_pad = st.components.v2.component("draw_explorer_sketch", html=HTML, css=CSS, js=JS)


def sketch_ui(key: str = "sketch") -> str | None:
    """Draw the pad; the PNG data URL of what was drawn, or None when it is blank."""
    result = _pad(key=key, default={"png": None}, on_png_change=lambda: None, width=260, height=260)
    return result.get("png")
