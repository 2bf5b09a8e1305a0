"""The one image pipeline: every mode and every kind of bad file, checked pixel by pixel on tiny images."""
from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from logoapp import images
from logoapp.images import ImageError, decode, header, to_channels


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(width: int, height: int, depth: int, colour: int, rows: bytes | None = None) -> bytes:
    """A PNG written by hand, so the header can say anything (16-bit modes, absurd sizes)."""
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    body = zlib.compress(rows if rows is not None else b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + ihdr + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def noise(size=24, mode="RGB", seed=0) -> Image.Image:
    a = np.random.default_rng(seed).integers(0, 256, (size, size, len(mode)), dtype=np.uint8)
    return Image.fromarray(a if len(mode) > 1 else a[..., 0], mode)


# ---------------------------------------------------------------- files that are not usable images

@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"just some notes\nnot a picture\n", "text file"),
    (b"<!DOCTYPE html>\n<html><head><title>404</title></head><body>Not found</body></html>", "HTML page"),
    (b"<html><body>login</body></html>", "HTML page"),
    (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>', "SVG"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="5" height="5"/></svg>', "SVG"),
    (b"PK\x03\x04" + bytes(40), "zip archive"),
    (bytes(range(256)) * 4, "not an image"),
])
def test_non_images_refused_with_reason(data, reason):
    with pytest.raises(ImageError) as e:
        decode(data, 32, 4)
    assert reason in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(ImageError):
        header(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"])
def test_truncated_files_refused(fmt):
    data = encode(noise(48), fmt)
    for cut in (16, len(data) // 2, len(data) - len(data) // 8):
        with pytest.raises(ImageError) as e:
            decode(data[:cut], 32, 4)
        assert str(e.value)


def test_truncated_png_and_jpeg_say_truncated():
    for fmt in ("PNG", "JPEG"):
        data = encode(noise(64), fmt)
        with pytest.raises(ImageError, match="truncated"):
            decode(data[:len(data) // 2], 32, 3)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        decode(tmp_path / "nope.png", 32, 4)
    with pytest.raises(ImageError, match="cannot read"):
        decode(tmp_path, 32, 4)


def test_file_over_byte_limit_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_BYTES", 100)
    p = tmp_path / "big.png"
    p.write_bytes(encode(noise(32)))
    with pytest.raises(ImageError, match="too large"):
        decode(p, 32, 4)


@pytest.mark.parametrize("w, h, reason", [
    (20000, 20000, "too large"),        # 400 Mpx: Pillow's own decompression-bomb limit
    (9000, 7000, "9000x7000"),          # 63 Mpx: under Pillow's limit, over ours
    (1, 200_000_000, "too large"),
])
def test_huge_header_refused_without_decoding(w, h, reason, monkeypatch):
    data = raw_png(w, h, 8, 2)
    assert len(data) < 200
    loads = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(1) or real_load(self))
    for fn in (lambda: decode(data, 32, 4), lambda: header(data)):
        with pytest.raises(ImageError) as e:
            fn()
        assert reason in str(e.value)
    assert loads == []  # refused from the header: no pixel buffer was ever allocated


# ---------------------------------------------------------------- modes

def test_output_shape_and_dtype_for_both_channel_counts():
    img = noise(50, "RGBA")
    for c in (3, 4):
        a = decode(img, 20, c)
        assert a.shape == (20, 20, c) and a.dtype == np.uint8 and a.flags.c_contiguous


def test_same_picture_from_path_bytes_and_pil(tmp_path):
    img = noise(40, "RGBA", seed=3)
    p = tmp_path / "x.png"
    img.save(p)
    a = decode(p, 32, 4)
    assert np.array_equal(a, decode(p.read_bytes(), 32, 4))
    assert np.array_equal(a, decode(bytearray(p.read_bytes()), 32, 4))
    assert np.array_equal(a, decode(Image.open(p), 32, 4))
    assert np.array_equal(a, decode(str(p), 32, 4))


def test_no_resize_keeps_pixels_exactly():
    img = noise(16, "RGBA", seed=1)
    assert np.array_equal(decode(encode(img), 16, 4), np.asarray(img))
    rgb = noise(16, "RGB", seed=2)
    a = decode(encode(rgb), 16, 4)
    assert np.array_equal(a[..., :3], np.asarray(rgb)) and (a[..., 3] == 255).all()


def test_16bit_grey_is_scaled_not_clipped():
    v = np.linspace(0, 65535, 16 * 16).astype(">u2").reshape(16, 16)
    rows = b"".join(b"\0" + r.tobytes() for r in v)
    a = decode(raw_png(16, 16, 16, 0, rows), 16, 3)
    assert np.array_equal(a[..., 0], (v.astype(np.uint32) >> 8).astype(np.uint8))
    assert a[..., 0].max() == 255 and len(np.unique(a[..., 0])) > 200  # clipping would leave nearly all 255
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()


def test_16bit_grey_via_pillow_mode_i16():
    v = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    img = Image.frombytes("I;16", (64, 64), v.astype("<u2").tobytes())
    data = encode(img)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    a = decode(data, 64, 4)
    assert np.array_equal(a[..., 0], (v >> 8).astype(np.uint8))
    assert (a[..., 3] == 255).all()


@pytest.mark.parametrize("colour, n", [(2, 3), (6, 4), (4, 2)])  # 16-bit RGB, RGBA, grey+alpha
def test_16bit_colour_pngs_keep_the_high_byte(colour, n):
    rng = np.random.default_rng(colour)
    v = rng.integers(0, 65536, (8, 8, n)).astype(">u2")
    rows = b"".join(b"\0" + r.tobytes() for r in v)
    a = decode(raw_png(8, 8, 16, colour, rows), 8, 4)
    hi = (v.astype(np.uint32) >> 8).astype(np.uint8)
    if n == 3:
        assert np.array_equal(a[..., :3], hi) and (a[..., 3] == 255).all()
    elif n == 4:
        assert np.array_equal(a, hi)
    else:
        assert np.array_equal(a[..., 0], hi[..., 0]) and np.array_equal(a[..., 3], hi[..., 1])


def test_float_tiff_is_stretched_to_8bit():
    v = np.linspace(-5.0, 1000.0, 16 * 16, dtype=np.float32).reshape(16, 16)
    a = decode(encode(Image.fromarray(v, "F"), "TIFF"), 16, 3)
    assert a[0, 0, 0] == 0 and a[-1, -1, 0] == 255
    assert np.all(np.diff(a[..., 0].ravel().astype(int)) >= 0)


def test_cmyk_jpeg_becomes_rgb():
    img = Image.new("CMYK", (24, 24), (0, 255, 255, 0))  # pure red in CMYK
    data = encode(img, "JPEG", quality=95)
    assert header(data).mode == "CMYK"
    a = decode(data, 24, 3)
    assert np.abs(a.astype(int) - [255, 0, 0]).max() <= 8


def test_palette_png_with_transparency_becomes_rgba():
    p = Image.new("P", (10, 10), 0)
    p.putpalette([0, 255, 0, 255, 0, 0] + [0] * 762)
    p.paste(1, (0, 0, 5, 10))  # left half index 1 (red, opaque), right half index 0 (transparent)
    data = encode(p, transparency=0)
    h = header(data)
    assert h.mode == "P" and h.alpha
    a = decode(data, 10, 4)
    assert (a[:, 5:, 3] == 0).all()
    assert (a[:, :5] == [255, 0, 0, 255]).all()
    rgb = decode(data, 10, 3)  # composited onto white
    assert (rgb[:, 5:] == 255).all() and (rgb[:, :5] == [255, 0, 0]).all()


def test_palette_png_without_transparency_is_rgb():
    p = Image.new("P", (6, 6), 1)
    p.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    assert not header(encode(p)).alpha
    assert (decode(encode(p), 6, 4) == [10, 20, 30, 255]).all()


def test_rgb_png_with_transparent_colour_gets_alpha():
    img = Image.new("RGB", (6, 6), (1, 2, 3))
    img.paste((9, 9, 9), (0, 0, 3, 6))
    data = encode(img, transparency=(1, 2, 3))
    assert header(data).alpha
    a = decode(data, 6, 4)
    assert (a[:, 3:, 3] == 0).all() and (a[:, :3] == [9, 9, 9, 255]).all()


def test_la_and_l_images():
    la = decode(encode(Image.new("LA", (8, 8), (100, 50))), 8, 4)
    assert (la == [100, 100, 100, 50]).all()
    assert header(encode(Image.new("LA", (8, 8)))).alpha
    grey = decode(encode(Image.new("L", (8, 8), 77)), 8, 4)
    assert (grey == [77, 77, 77, 255]).all()
    assert not header(encode(Image.new("L", (8, 8)))).alpha
    one_bit = decode(encode(Image.new("1", (8, 8), 1)), 8, 3)
    assert (one_bit == 255).all()


def test_one_pixel_image_fills_the_square():
    a = decode(encode(Image.new("RGB", (1, 1), (10, 200, 30))), 32, 4)
    assert a.shape == (32, 32, 4) and (a == [10, 200, 30, 255]).all()


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    assert (decode(data, 8, 3) == [255, 0, 0]).all()


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 20, 20))  # blue on the left, red on the right
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    a = decode(data, 20, 3).astype(int)
    assert np.abs(a[:6].mean((0, 1)) - [0, 0, 255]).max() < 20    # left side ends up on top
    assert np.abs(a[-6:].mean((0, 1)) - [255, 0, 0]).max() < 20
    plain = decode(encode(img, "JPEG", quality=95), 20, 3).astype(int)
    assert np.abs(plain[:, :6].mean((0, 1)) - [0, 0, 255]).max() < 20  # without the tag: unrotated


def test_exif_rotation_leaves_the_callers_image_alone():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    img = Image.open(io.BytesIO(encode(img, "JPEG", exif=exif.tobytes())))
    assert decode(img, 20, 3).shape == (20, 20, 3)
    assert img.size == (40, 20) and img.getexif().get(0x0112) == 6


def test_resize_does_not_bleed_colour_from_transparent_pixels():
    a = np.zeros((64, 64, 4), np.uint8)
    a[..., 1] = 255                    # invisible green everywhere
    a[:, :31] = [255, 0, 0, 255]       # opaque red on the left
    out = decode(Image.fromarray(a, "RGBA"), 7, 4)
    visible = out[..., 3] > 0
    assert visible.any() and (out[..., 3] < 255).any()
    assert (out[visible][:, 1] <= 2).all()  # no green halo around the red


@pytest.mark.parametrize("src, size", [(61, 24), (24, 61), (140, 64), (224, 140), (33, 33)])
def test_resize_is_pillows_bilinear_filter(src, size):
    """Opaque images: torch's uint8 kernel gives Pillow's antialiased BILINEAR, to within one level of rounding."""
    a = np.asarray(noise(src, "RGB", seed=src))
    ours = images.resize(np.ascontiguousarray(a), size).astype(int)
    ref = np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR)).astype(int)
    assert ours.shape == (size, size, 3) and np.abs(ours - ref).max() <= 1


def test_translucent_resize_is_a_premultiplied_resize():
    """Against the exact sum in float64 (same filter, no rounding on the way): only rounding differs. Pillow's own
    premultiplied resize is close too, a little darker at soft edges (it truncates when un-premultiplying)."""
    import torch
    import torch.nn.functional as F
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (90, 90, 4), dtype=np.uint8)
    a[..., 3] = np.where(rng.random((90, 90)) < 0.4, 0, a[..., 3])  # holes of invisible colour
    ours = images.resize(a, 40).astype(int)
    x = torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)[None]
    x[:, :3] *= x[:, 3:] / 255
    y = F.interpolate(x, size=(40, 40), mode="bilinear", antialias=True)[0].permute(1, 2, 0).numpy()
    exact = np.concatenate([y[..., :3] * 255 / np.maximum(y[..., 3:], 1e-9), y[..., 3:]], -1)
    pil = np.asarray(Image.fromarray(a, "RGBA").resize((40, 40), Image.BILINEAR)).astype(int)
    assert np.abs(ours[..., 3] - exact[..., 3]).max() <= 1
    for least_alpha in (32, 64, 128):  # 8-bit premultiplied colour loses precision as alpha falls
        seen = exact[..., 3] >= least_alpha
        err = np.abs(ours[seen][:, :3] - exact[seen][:, :3])
        pil_err = np.abs(pil[seen][:, :3] - exact[seen][:, :3])
        assert err.max() <= pil_err.max() and err.mean() <= pil_err.mean()  # at least as exact as Pillow
    assert err.max() <= 2 and err.mean() < 0.6  # alpha >= 128: within rounding


def test_premultiply_is_exact():
    a = np.random.default_rng(4).integers(0, 256, (17, 13, 4), dtype=np.uint8)
    want = np.asarray(Image.fromarray(a, "RGBA").convert("RGBa"))
    assert np.array_equal(images._premultiply(a), want)
    x = np.stack(np.meshgrid(np.arange(256), np.arange(256)), -1).reshape(-1, 2)  # every colour x alpha pair
    full = np.zeros((256 * 256, 1, 4), np.uint8)
    full[:, 0, 0], full[:, 0, 3] = x[:, 0], x[:, 1]
    assert np.array_equal(images._premultiply(full)[:, 0, 0], (x[:, 0] * x[:, 1] + 127) // 255)


def test_big_jpeg_draft_decoding_matches_full_decode_closely():
    a = np.zeros((400, 400, 3), np.uint8)
    a[:200] = (200, 40, 40)
    a[200:] = (40, 40, 200)
    data = encode(Image.fromarray(a), "JPEG", quality=95)
    out = decode(data, 20, 3).astype(int)
    assert np.abs(out[:8].mean((0, 1)) - [200, 40, 40]).max() < 10
    assert np.abs(out[12:].mean((0, 1)) - [40, 40, 200]).max() < 10


def test_header_reads_without_decoding(monkeypatch):
    data = encode(noise(30, "RGBA"))
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("header() decoded pixels"))
    h = header(data)
    assert (h.width, h.height, h.mode, h.format, h.alpha) == (30, 30, "RGBA", "PNG", True)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_decode_leaves_no_open_files(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    p = tmp_path / "a.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    q = tmp_path / "b.png"
    noise(8).save(q)
    r = tmp_path / "c.png"
    r.write_bytes(encode(noise(64))[:300])
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        for src in (p, q):
            decode(src, 8, 3)
            header(src)
        with pytest.raises(ImageError):
            decode(r, 8, 3)
    assert len(os.listdir("/proc/self/fd")) <= before


# ---------------------------------------------------------------- channel helpers

def test_to_channels():
    rgba = np.array([[[255, 0, 0, 255], [0, 0, 0, 0], [0, 0, 255, 128]]], np.uint8)
    rgb = to_channels(rgba, 3)
    assert rgb.tolist() == [[[255, 0, 0], [255, 255, 255], [127, 127, 255]]]
    back = to_channels(rgb, 4)
    assert np.array_equal(back[..., :3], rgb) and (back[..., 3] == 255).all()
    assert to_channels(rgba, 4) is not rgba or rgba.flags.c_contiguous
