"""Drawing primitives of the built-in crests: outlines, emblems, the font, a fabric texture (no randomness here)."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFont


def shield(x0, y0, x1, y1, steps=24):
    """Classic heater-shield polygon inside a box: straight sides, arcs meeting in a point."""
    w, mx = x1 - x0, (x0 + x1) / 2
    side, h = y0 + 0.4 * (y1 - y0), 0.6 * (y1 - y0)
    r = (w * w / 4 + h * h) / w                      # arc centred level with `side`, through the bottom point
    end = math.atan2(h, r - w / 2)
    right = [(x1, y0)] + [(x1 - r + r * math.cos(t), side + r * math.sin(t)) for t in np.linspace(0, end, steps)]
    left = [(2 * mx - x, y) for x, y in reversed(right)]
    return right + left[1:]


def hexagon(x0, y0, x1, y1):
    """Pointy-top hexagon inside a box."""
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    return [(cx + rx * math.sin(a), cy - ry * math.cos(a)) for a in np.arange(6) * math.pi / 3]


def shape(d: ImageDraw.ImageDraw, shape: str, box, fill):
    """Draw a filled crest outline of kind `shape` in `box`."""
    x0, y0, x1, y1 = box
    if shape == "shield":
        d.polygon(shield(*box), fill=fill)
    elif shape == "roundel":
        d.ellipse(box, fill=fill)
    elif shape == "hexagon":
        d.polygon(hexagon(*box), fill=fill)
    elif shape == "square":
        d.rounded_rectangle(box, radius=0.18 * (x1 - x0), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def star(cx, cy, r, points=5):
    """Star polygon centred on (cx, cy)."""
    angles = np.arange(2 * points) * math.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, r, 0.42 * r)
    return [(cx + q * math.sin(a), cy - q * math.cos(a)) for q, a in zip(radii, angles)]


def paint(img: Image.Image, mask: Image.Image, col, boxes) -> None:
    """Paint colour `col` on the rectangles `boxes` (x0, y0, x1, y1), only inside `mask` (a crest's inner area)."""
    band = Image.new("L", img.size, 0)
    bd = ImageDraw.Draw(band)
    for box in boxes:
        bd.rectangle(box, fill=255)
    img.paste(col, (0, 0), ImageChops.multiply(mask, band))


def emblem(img: Image.Image, mask: Image.Image, e: str, col, cx, cy, r):
    """Draw emblem `e` centred on (cx, cy) with radius r; `mask` is the inner area (for stripes and crosses)."""
    d, s = ImageDraw.Draw(img), img.size[0]
    if e == "stripes":
        paint(img, mask, col, [(x - 0.2 * r, 0, x + 0.2 * r, s) for x in np.arange(-3, 4, 2) * 0.41 * r + cx])
    elif e == "cross":
        paint(img, mask, col, [(cx - 0.3 * r, 0, cx + 0.3 * r, s), (0, cy - 0.3 * r, s, cy + 0.3 * r)])
    elif e == "star":
        d.polygon(star(cx, cy, r), fill=col)
    elif e == "cannon":
        d.polygon([(cx - 1.2 * r, cy - 0.05 * r), (cx + 1.1 * r, cy - 0.35 * r),
                   (cx + 1.15 * r, cy + 0.1 * r), (cx - 1.15 * r, cy + 0.3 * r)], fill=col)
        d.ellipse((cx + 0.95 * r, cy - 0.45 * r, cx + 1.35 * r, cy + 0.2 * r), fill=col)
        for x in (-0.6, 0.3):
            d.ellipse((cx + (x - 0.3) * r, cy + 0.2 * r, cx + (x + 0.3) * r, cy + 0.8 * r), fill=col)
    elif e == "bird":
        d.polygon([(cx - 1.1 * r, cy - 0.8 * r), (cx, cy + 0.1 * r), (cx + 1.1 * r, cy - 0.8 * r),
                   (cx + 0.3 * r, cy + 0.7 * r), (cx - 0.3 * r, cy + 0.7 * r)], fill=col)
        d.ellipse((cx - 0.25 * r, cy - 0.45 * r, cx + 0.25 * r, cy + 0.05 * r), fill=col)
    elif e == "chevron":
        d.line([(cx - r, cy + 0.5 * r), (cx, cy - 0.5 * r), (cx + r, cy + 0.5 * r)], fill=col, width=int(0.7 * r),
               joint="curve")
    elif e == "ball":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=col)
        d.polygon(star(cx, cy, 0.45 * r, 5)[::2], fill=(30, 30, 30))
    else:
        raise ValueError(f"unknown emblem {e!r}")


@lru_cache(maxsize=None)
def font(px: int):
    """Pillow's built-in font at `px` pixels (no font file needed)."""
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, OSError):
        return ImageFont.load_default()


@lru_cache(maxsize=4)
def weave(size: int) -> np.ndarray:
    """A fabric-like texture (twice the image size, to crop from): threads in both directions and some noise."""
    y, x = np.mgrid[:2 * size, :2 * size].astype(np.float32)
    noise = np.random.default_rng(size).normal(0, 0.05, (2 * size, 2 * size)).astype(np.float32)
    return 0.85 + 0.08 * np.sin(x * 2.1) * np.sin(y * 2.1) + 0.05 * np.sin((x + y) * 0.9) + noise
