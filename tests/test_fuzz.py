"""Fuzzing the image pipeline: any bytes either decode to a (32, 32, 4) uint8 array or raise ImageError."""
from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from logoapp.images import ImageError, decode, header


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (12, 12, 4), dtype=np.uint8), "RGBA")
    rgb = rgba.convert("RGB")
    out = []
    for img, fmt, kw in [(rgba, "PNG", {}), (rgb, "JPEG", {"quality": 90}), (rgb, "JPEG", {"progressive": True}),
                         (rgba.convert("P"), "GIF", {}), (rgb, "BMP", {}), (rgba, "WEBP", {}), (rgb, "TIFF", {}),
                         (rgba.convert("LA"), "PNG", {}), (rgba.convert("P"), "PNG", {"transparency": 0})]:
        b = io.BytesIO()
        img.save(b, fmt, **kw)
        out.append(b.getvalue())
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    b = io.BytesIO()
    frames[0].save(b, "GIF", save_all=True, append_images=frames[1:], duration=40)
    out.append(b.getvalue())
    return out


SEEDS = _seeds()


def check(data: bytes) -> None:
    try:
        a = decode(data, 32, 4)
    except ImageError as e:
        assert str(e)
        return
    assert isinstance(a, np.ndarray) and a.shape == (32, 32, 4) and a.dtype == np.uint8
    h = header(data)  # whatever decodes also has a readable header
    assert h.width >= 1 and h.height >= 1


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == "overwrite" and data:
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos:pos + len(chunk)] = chunk
    return bytes(data)


FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mutated())
def test_mutated_images(data):
    check(data)


@settings(FUZZ, max_examples=100)
@given(st.binary(max_size=1024))
def test_random_bytes(data):
    check(data)


@settings(FUZZ, max_examples=60)
@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"RIFF\0\0\0\0WEBP", b"II*\0",
                        b"MM\0*", b"P6\n", b"\0\0\1\0"]), st.binary(max_size=512))
def test_magic_prefix_then_garbage(magic, rest):
    check(magic + rest)


def test_seeds_decode():
    for s in SEEDS:
        assert decode(s, 32, 4).shape == (32, 32, 4)
