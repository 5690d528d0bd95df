"""Upload and drawing conversion: any picture of a digit -> 28x28 MNIST-like, or a clear error."""

import base64
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageDraw

from draw import images
from draw.images import ImageError


def png(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def seven(size=(200, 140), ink=0, paper=255, mode="L", width=14) -> Image.Image:
    """A hand-drawn-looking 7, off-centre, dark on light by default."""
    im = Image.new(mode, size, paper)
    d = ImageDraw.Draw(im)
    d.line([(20, 30), (110, 30), (50, 170)], fill=ink, width=width)
    return im


def check_digit(x: np.ndarray) -> None:
    assert x.shape == (28, 28) and x.dtype == np.float32
    assert np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1 and x.max() > 0.5
    rows, cols = np.nonzero(x > images.INK)
    assert rows.max() - rows.min() < 22 and cols.max() - cols.min() < 22  # scaled to ~20 px
    ys, xs = np.indices(x.shape)
    cy, cx = (ys * x).sum() / x.sum(), (xs * x).sum() / x.sum()
    assert abs(cy - 13.5) <= 1.5 and abs(cx - 13.5) <= 1.5  # centre of mass in the middle


def test_dark_on_light_digit_is_inverted_cropped_and_centred():
    x = images.upload_to_mnist(png(seven()))
    check_digit(x)
    assert x[0, 0] == 0  # background is black, like MNIST


def test_polarity_does_not_matter():
    a = images.upload_to_mnist(png(seven(ink=0, paper=255)))
    b = images.upload_to_mnist(png(seven(ink=255, paper=0)))
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("mode", ["RGB", "CMYK", "1", "P", "I", "F"])
def test_colour_and_odd_modes(mode):
    base = seven(mode="RGB", ink=(10, 20, 200), paper=(250, 240, 230))
    im = base.convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    check_digit(images.upload_to_mnist(png(im, fmt)))


def test_16_bit_grey():
    arr = (np.asarray(seven(), dtype=np.uint16) * 257).astype(np.uint16)
    im = Image.fromarray(arr)
    assert im.mode == "I;16"
    check_digit(images.upload_to_mnist(png(im)))


@pytest.mark.parametrize("ink", [(0, 0, 0, 255), (255, 255, 255, 255)])
def test_transparent_background(ink):
    im = Image.new("RGBA", (120, 160), (0, 0, 0, 0))
    ImageDraw.Draw(im).line([(20, 20), (100, 20), (40, 150)], fill=ink, width=12)
    check_digit(images.upload_to_mnist(png(im)))


def test_palette_with_transparency():
    im = seven().convert("P")
    check_digit(images.upload_to_mnist(png(im, transparency=255)))


def test_animated_gif_gives_first_frame():
    first, second = seven(), Image.new("L", (200, 140), 255)
    ImageDraw.Draw(second).ellipse([40, 40, 160, 120], outline=0, width=14)
    data = png(first, "GIF", save_all=True, append_images=[second], duration=100)
    np.testing.assert_allclose(images.upload_to_mnist(data), images.upload_to_mnist(png(first, "GIF")), atol=1e-5)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a readable image"),
        (png(Image.new("L", (1, 1), 0)), "1x1"),
        (png(Image.new("L", (40, 40), 200)), "blank"),
        (png(seven())[:200], "could not be decoded"),
    ],
)
def test_bad_uploads_give_clear_errors(data, message):
    with pytest.raises(ImageError, match=message):
        images.upload_to_mnist(data)


def test_decompression_bomb_is_refused_before_decoding():
    bomb = png(Image.new("1", (5000, 4000), 0))  # 20 Mpx in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match="limit"):
        images.load_image(bomb)


def test_oversized_file_is_refused():
    with pytest.raises(ImageError, match="MB"):
        images.load_image(b"\0" * (images.MAX_BYTES + 1))


def test_data_url_round_trip():
    data = png(seven())
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert images.data_url_to_bytes(url) == data
    for bad in ["", "data:image/png,abc", "http://x", "data:image/png;base64,@@@"]:
        with pytest.raises(ImageError):
            images.data_url_to_bytes(bad)


def test_binarize_threshold():
    np.testing.assert_array_equal(images.binarize(np.array([0.2, 0.5, 0.51, 1.0])), [0, 0, 1, 1])


@settings(max_examples=40, deadline=None)
@given(
    arr=arrays(np.uint8, st.tuples(st.integers(8, 48), st.integers(8, 48))),
    mode=st.sampled_from(["L", "RGB", "RGBA", "LA"]),
    fmt=st.sampled_from(["PNG", "BMP", "GIF"]),
)
def test_any_image_converts_or_fails_cleanly(arr, mode, fmt):
    """Whatever the pixels, the result is a valid 28x28 image in [0, 1] or an ImageError."""
    im = Image.fromarray(arr, mode="L").convert(mode)
    if fmt != "PNG" and mode in ("RGBA", "LA"):
        im = im.convert("RGB")
    try:
        x = images.upload_to_mnist(png(im, fmt))
    except ImageError:
        return
    assert x.shape == (28, 28) and x.dtype == np.float32
    assert np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1


@settings(max_examples=40, deadline=None)
# No subnormal values: they are not ink, and code run earlier in this process may flush them to zero
# (torch.set_flush_denormal, as the app and the CLIs do), which hypothesis refuses to generate under.
@given(
    ink=arrays(
        np.float32,
        st.tuples(st.integers(1, 60), st.integers(1, 60)),
        elements=st.floats(0, 1, width=32, allow_subnormal=False),
    )
)
def test_to_mnist_properties(ink):
    try:
        x = images.to_mnist(ink)
    except ImageError:
        assert (ink <= images.INK).all()
        return
    assert x.shape == (28, 28) and np.isfinite(x).all() and 0 <= x.min() and x.max() <= 1
    rows, cols = np.nonzero(x)
    assert rows.max() - rows.min() < 21 and cols.max() - cols.min() < 21


def test_gif_and_png_writers():
    frames = [np.full((10, 12, 3), v, np.uint8) for v in (0, 128, 255)]
    im = Image.open(io.BytesIO(images.to_gif(frames)))
    assert im.n_frames == 3 and im.size == (12, 10)
    assert Image.open(io.BytesIO(images.to_png(frames[1]))).size == (12, 10)
    with pytest.raises(ValueError):
        images.to_gif([])
