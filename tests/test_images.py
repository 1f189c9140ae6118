import io

import numpy as np
import pytest
from PIL import Image

from marrowdiff.images import ImageReadError, decode_rgb

from .conftest import encode


def _save(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP"])
def test_rgb_formats(fmt, cells):
    cell = cells(1, 32)[0]
    out = decode_rgb(encode(cell, fmt))
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    if fmt in ("PNG", "BMP", "TIFF"):
        np.testing.assert_array_equal(out, cell)


def test_grey_and_palette_become_rgb():
    grey = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    out = decode_rgb(_save(grey, "PNG"))
    assert out.shape == (8, 8, 3) and (out[..., 0] == out[..., 2]).all()
    palette = grey.convert("P")
    assert decode_rgb(_save(palette, "GIF")).shape == (8, 8, 3)
    bilevel = grey.convert("1")
    assert set(np.unique(decode_rgb(_save(bilevel, "PNG")))) <= {0, 255}


def test_sixteen_bit_grey_is_scaled_not_clipped():
    values = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    out = decode_rgb(_save(Image.fromarray(values), "PNG"))
    assert out[0, 1, 0] == 128 and out[1, 0, 0] == 255 and out[0, 0, 0] == 0


def test_float_tiff_in_unit_range():
    values = np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)
    out = decode_rgb(_save(Image.fromarray(values, mode="F"), "TIFF"))
    assert out[1, 0, 0] == 255 and out[0, 1, 0] == 128


def test_alpha_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red-ish, bottom half transparent
    out = decode_rgb(_save(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert tuple(out[0, 0]) == (200, 0, 0)
    assert tuple(out[3, 3]) == (255, 255, 255)
    grey_alpha = Image.fromarray(rgba[..., [0, 3]], "LA")
    assert tuple(decode_rgb(_save(grey_alpha, "PNG"))[3, 3]) == (255, 255, 255)


def test_cmyk_jpeg():
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))
    out = decode_rgb(_save(cmyk, "JPEG"))
    assert out.shape == (8, 8, 3) and out[0, 0, 0] > 200 and out[0, 0, 1] < 60


def test_exif_orientation_is_applied_clockwise():
    pixels = np.zeros((16, 32, 3), np.uint8)  # 32 wide, 16 high: red left half, blue right
    pixels[:, :16, 0] = 255
    pixels[:, 16:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to display
    out = decode_rgb(_save(Image.fromarray(pixels), "JPEG", exif=exif, quality=95))
    assert out.shape == (32, 16, 3)
    # clockwise, the left edge becomes the top: red above, blue below (counter-clockwise: the
    # reverse; no rotation: the wrong shape)
    top, bottom = out[4, 8].astype(int), out[-4, 8].astype(int)
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"not an image at all", "not an image format"),
        (b"", "not an image format"),
    ],
)
def test_garbage_is_a_clear_error(data, fragment):
    with pytest.raises(ImageReadError, match=fragment):
        decode_rgb(data)


def test_truncated_jpeg_is_a_clear_error(cells):
    data = encode(cells(1, 64)[0], "JPEG")
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        decode_rgb(data[: len(data) // 2])


def test_huge_images_are_refused_before_decoding():
    data = _save(Image.new("L", (2000, 2000)), "PNG")
    with pytest.raises(ImageReadError, match="over the limit"):
        decode_rgb(data, max_pixels=1_000_000)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_an_animated_or_multi_page_image_is_refused_not_cut_to_its_first_frame(fmt):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue", "green")]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageReadError, match="3 frames"):
        decode_rgb(buf.getvalue())
