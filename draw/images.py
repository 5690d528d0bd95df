"""Any picture of a digit -> a 28x28 MNIST-like image the model can read, and images -> files.

MNIST digits are white ink on black, scaled so the longer side of the digit is 20 pixels and
shifted so its centre of mass sits at the centre of a 28x28 frame (LeCun et al.). `to_mnist`
does the same to an upload or a mouse drawing; `load_image` opens untrusted bytes safely.
"""

import base64
import io
import warnings

import numpy as np
from PIL import Image, ImageDraw, ImageSequence, UnidentifiedImageError

MAX_BYTES = 10 * 1024 * 1024  # an upload larger than this is refused before decoding
MAX_PIXELS = 16_000_000  # width * height; a decompression bomb is refused before decoding
MIN_SIDE = 8  # smaller images hold no digit worth reading
SIZE = 28  # MNIST frame
DIGIT_BOX = 20  # MNIST scales the digit's longer side to this
INK = 0.1  # grey level above which a pixel counts as part of the digit when cropping


class ImageError(ValueError):
    """An image that cannot be turned into a digit; the message is meant for the user."""


def load_image(data: bytes) -> np.ndarray:
    """Decode image bytes (PNG, JPEG, GIF, BMP, ...) to ink in [0, 1], (H, W) float32, white ink on
    black. Transparency counts as background; an animated image gives its first frame."""
    if not data:
        raise ImageError("the file is empty")
    if len(data) > MAX_BYTES:
        raise ImageError(f"the file is {len(data) / 1e6:.1f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))  # reads the header only
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"the image is {w}x{h} pixels; the limit is {MAX_PIXELS:,} pixels")
            if min(w, h) < MIN_SIDE:
                raise ImageError(f"the image is {w}x{h} pixels; a digit needs at least {MIN_SIDE}x{MIN_SIDE}")
            im = next(ImageSequence.Iterator(im))  # first frame of an animation
            im.load()
            return _ink(im)
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"not a readable image ({type(e).__name__})") from e
    except (OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError, MemoryError) as e:
        raise ImageError(f"the image could not be decoded ({type(e).__name__}: {e})") from e


def _ink(im: Image.Image) -> np.ndarray:
    """Grey level of a decoded image in [0, 1], inverted when needed so the digit is bright."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        grey = np.asarray(im, dtype=np.float64)
        grey = np.nan_to_num(grey, nan=0.0, posinf=0.0, neginf=0.0)
        alpha = None
    else:
        has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
        rgba = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.float64) / 255.0
        grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])
        alpha = rgba[..., 3] if has_alpha else None
    lo, hi = grey.min(), grey.max()
    grey = (grey - lo) / (hi - lo) if hi > lo else np.zeros_like(grey)
    if alpha is not None and alpha.min() < 1:
        # Strokes drawn on a transparent sheet: whatever is opaque and unlike the sheet's colour.
        background = np.average(grey, weights=1 - alpha + 1e-9)
        ink = alpha * np.abs(grey - background)
        ink = alpha if ink.max() < 0.1 else ink / ink.max()
    else:
        border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
        ink = 1 - grey if border.mean() > 0.5 else grey  # dark ink on light paper -> invert
    return ink.astype(np.float32)


def to_mnist(ink: np.ndarray) -> np.ndarray:
    """Crop to the digit, scale its longer side to 20 px, centre its mass in 28x28. (H, W) in
    [0, 1] -> (28, 28) float32 in [0, 1]. ImageError when there is no digit to find."""
    ink = np.clip(np.nan_to_num(np.asarray(ink, dtype=np.float32)), 0, 1)
    if ink.ndim != 2:
        raise ImageError(f"expected a 2-D grey image, got shape {ink.shape}")
    rows, cols = np.nonzero(ink > INK)
    if len(rows) == 0:
        raise ImageError("the image is blank: no digit found")
    ink = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = ink.shape
    scale = DIGIT_BOX / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = Image.fromarray(ink, mode="F").resize(
        (new_w, new_h), Image.Resampling.BOX if scale < 1 else Image.BILINEAR
    )
    digit = np.clip(np.asarray(resized, dtype=np.float32), 0, 1)
    if digit.max() > 0:
        digit = digit / digit.max()  # a thin stroke shrunk by averaging is still full ink
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    top, left = (SIZE - new_h) // 2, (SIZE - new_w) // 2
    out[top : top + new_h, left : left + new_w] = digit
    return _centre_mass(out)


def _centre_mass(img: np.ndarray) -> np.ndarray:
    """Shift by whole pixels so the centre of mass lands as close to the middle as fits."""
    mass = img.sum()
    if mass == 0:
        return img
    ys, xs = np.indices(img.shape)
    cy, cx = (ys * img).sum() / mass, (xs * img).sum() / mass
    rows, cols = np.nonzero(img)
    dy = int(np.clip(round((SIZE - 1) / 2 - cy), -rows.min(), SIZE - 1 - rows.max()))
    dx = int(np.clip(round((SIZE - 1) / 2 - cx), -cols.min(), SIZE - 1 - cols.max()))
    return np.roll(img, (dy, dx), axis=(0, 1))


def upload_to_mnist(data: bytes) -> np.ndarray:
    """Image bytes -> (28, 28) float32 in [0, 1]; ImageError with a readable reason otherwise."""
    return to_mnist(load_image(data))


def data_url_to_bytes(url: str) -> bytes:
    """The bytes of a `data:image/png;base64,...` URL (what a browser canvas exports)."""
    head, sep, body = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise ImageError("not a base64 data URL")
    try:
        return base64.b64decode(body, validate=True)
    except ValueError as e:
        raise ImageError(f"bad base64 in data URL ({e})") from e


def binarize(x: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Grey -> {0, 1}: the models were trained on binarized MNIST."""
    return (np.asarray(x) > threshold).astype(np.float32)


def to_png(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def to_gif(frames: list[np.ndarray], ms_per_frame: int = 80, hold_last_ms: int = 1500) -> bytes:
    """(H, W, 3) uint8 frames -> a looping animated GIF; the last frame is held a while."""
    if not frames:
        raise ValueError("no frames")
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    durations = [ms_per_frame] * (len(images) - 1) + [hold_last_ms]
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
    return buf.getvalue()


def grey_to_rgb(img: np.ndarray, scale: int = 1) -> np.ndarray:
    """(H, W) in [0, 1] -> (H * scale, W * scale, 3) uint8, nearest-neighbour enlarged."""
    g = (np.clip(np.asarray(img, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8)
    g = g.repeat(scale, 0).repeat(scale, 1)
    return np.stack([g, g, g], axis=-1)


def draw_box(rgb: np.ndarray, box, scale: int, colour: tuple[int, int, int], width: int = 2) -> np.ndarray:
    """A copy of rgb with the square (x0, y0, x1, y1), in 0-based pixel-centre coordinates of the
    unscaled image, outlined. Parts outside the image are clipped by PIL."""
    im = Image.fromarray(rgb)
    x0, y0, x1, y1 = ((float(v) + 0.5) * scale for v in box)
    ImageDraw.Draw(im).rectangle([x0, y0, x1, y1], outline=colour, width=width)
    return np.asarray(im)


def hstack(images: list[np.ndarray], pad: int = 4, fill: int = 255) -> np.ndarray:
    """Place (H_i, W_i, 3) images left to right, top-aligned, with a gap between them."""
    h = max(i.shape[0] for i in images)
    w = sum(i.shape[1] for i in images) + pad * (len(images) - 1)
    out = np.full((h, w, 3), fill, dtype=np.uint8)
    x = 0
    for i in images:
        out[: i.shape[0], x : x + i.shape[1]] = i
        x += i.shape[1] + pad
    return out


def vstack(images: list[np.ndarray], pad: int = 4, fill: int = 255) -> np.ndarray:
    """Place images top to bottom, left-aligned, with a gap between them."""
    return hstack([i.transpose(1, 0, 2) for i in images], pad, fill).transpose(1, 0, 2)


def label(text: str, width: int, height: int = 16) -> np.ndarray:
    """A white strip (height, width, 3) uint8 with text in black at its left, for captions."""
    im = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(im).text((2, 2), text, fill="black")
    return np.asarray(im)
