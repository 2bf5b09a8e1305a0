"""Embedded "football crest" dataset: made-up club crests, varied like a scraped image set."""
from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from functools import lru_cache
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

VERSION = 1  # bump when the drawing or the variation changes, so cached sets are regenerated


class Club(NamedTuple):
    """One made-up club: how its crest is drawn."""
    name: str
    shape: str            # shield | roundel | hexagon | square
    rings: tuple          # border colours, outermost first
    fill: tuple           # main colour inside the rings
    emblem: str           # star | cannon | bird | ball | stripes | cross | chevron
    ink: tuple            # emblem colour
    initials: str
    text: tuple           # initials colour


RED, WHITE, GOLD = (205, 16, 32), (250, 250, 250), (214, 170, 40)

CLUBS: list[Club] = [
    # the look-alike pair first: both mostly red with white/gold, like Arsenal vs Liverpool
    Club("ashford-athletic", "shield", (WHITE, RED), RED, "cannon", WHITE, "AA", WHITE),
    Club("redbridge-rovers", "square", (WHITE, RED), RED, "bird", WHITE, "RR", WHITE),
    Club("kingsport-united", "hexagon", (WHITE, (20, 50, 150)), (20, 50, 150), "star", GOLD, "KU", WHITE),
    Club("millbrook-city", "roundel", ((20, 30, 60), WHITE), (110, 175, 230), "ball", WHITE, "MC", (20, 30, 60)),
    Club("hollowmere-town", "square", ((20, 20, 20),), (245, 200, 20), "stripes", (20, 20, 20), "HT", (245, 200, 20)),
    Club("westcliff-wanderers", "shield", ((240, 240, 240),), (20, 120, 60), "cross", WHITE, "WW", GOLD),
    Club("thornbury-albion", "roundel", ((15, 25, 70), WHITE, (15, 25, 70)), WHITE, "chevron", (15, 25, 70), "TA",
         (15, 25, 70)),
    Club("carrow-county", "hexagon", ((120, 20, 50),), (120, 20, 50), "stripes", (100, 180, 230), "CC", WHITE),
    Club("eastleigh-harriers", "square", ((250, 120, 20), (30, 30, 30)), (30, 30, 30), "bird", (250, 120, 20), "EH",
         (250, 120, 20)),
    Club("stonehaven-dynamo", "roundel", ((240, 240, 240),), (90, 40, 140), "star", WHITE, "SD", WHITE),
]


def class_names(n: int | None = None) -> list[str]:
    """Names of the first `n` built-in clubs (all if None); the red look-alike pair comes first."""
    if n is None: n = len(CLUBS)
    if not 1 <= n <= len(CLUBS): raise ValueError(f"n must be between 1 and {len(CLUBS)}, got {n}")
    return [c.name for c in CLUBS[:n]]


def _shield(x0, y0, x1, y1, steps=24):
    """Classic heater-shield polygon inside a box: straight sides, arcs meeting in a point."""
    w, mx = x1 - x0, (x0 + x1) / 2
    side, h = y0 + 0.4 * (y1 - y0), 0.6 * (y1 - y0)
    r = (w * w / 4 + h * h) / w                      # arc centred level with `side`, through the bottom point
    end = math.atan2(h, r - w / 2)
    right = [(x1, y0)] + [(x1 - r + r * math.cos(t), side + r * math.sin(t)) for t in np.linspace(0, end, steps)]
    left = [(2 * mx - x, y) for x, y in reversed(right)]
    return right + left[1:]


def _hexagon(x0, y0, x1, y1):
    """Pointy-top hexagon inside a box."""
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    return [(cx + rx * math.sin(a), cy - ry * math.cos(a)) for a in np.arange(6) * math.pi / 3]


def _shape(d: ImageDraw.ImageDraw, shape: str, box, fill):
    """Draw a filled crest outline of kind `shape` in `box`."""
    x0, y0, x1, y1 = box
    if shape == "shield": d.polygon(_shield(*box), fill=fill)
    elif shape == "roundel": d.ellipse(box, fill=fill)
    elif shape == "hexagon": d.polygon(_hexagon(*box), fill=fill)
    elif shape == "square": d.rounded_rectangle(box, radius=0.18 * (x1 - x0), fill=fill)
    else: raise ValueError(f"unknown shape {shape!r}")


def _star(cx, cy, r, points=5):
    """Star polygon centred on (cx, cy)."""
    angles = np.arange(2 * points) * math.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, r, 0.42 * r)
    return [(cx + q * math.sin(a), cy - q * math.cos(a)) for q, a in zip(radii, angles)]


def _emblem(img: Image.Image, mask: Image.Image, club: Club, s: int):
    """Draw the club's emblem, centred a little below the middle; `mask` is the inner area."""
    d, e, col = ImageDraw.Draw(img), club.emblem, club.ink
    cx, cy, r = 0.5 * s, 0.58 * s, 0.17 * s
    if e in ("stripes", "cross"):
        band = Image.new("L", img.size, 0)
        bd = ImageDraw.Draw(band)
        if e == "stripes":
            for x in np.arange(-3, 4, 2) * 0.07 * s + cx: bd.rectangle((x - 0.035 * s, 0, x + 0.035 * s, s), fill=255)
        else:
            bd.rectangle((cx - 0.05 * s, 0, cx + 0.05 * s, s), fill=255)
            bd.rectangle((0, cy - 0.05 * s, s, cy + 0.05 * s), fill=255)
        img.paste(col, (0, 0), ImageChops.multiply(mask, band))
    elif e == "star": d.polygon(_star(cx, cy, r), fill=col)
    elif e == "cannon":
        d.polygon([(cx - 1.2 * r, cy - 0.05 * r), (cx + 1.1 * r, cy - 0.35 * r),
                   (cx + 1.15 * r, cy + 0.1 * r), (cx - 1.15 * r, cy + 0.3 * r)], fill=col)
        d.ellipse((cx + 0.95 * r, cy - 0.45 * r, cx + 1.35 * r, cy + 0.2 * r), fill=col)
        for x in (-0.6, 0.3): d.ellipse((cx + (x - 0.3) * r, cy + 0.2 * r, cx + (x + 0.3) * r, cy + 0.8 * r), fill=col)
    elif e == "bird":
        d.polygon([(cx - 1.1 * r, cy - 0.8 * r), (cx, cy + 0.1 * r), (cx + 1.1 * r, cy - 0.8 * r),
                   (cx + 0.3 * r, cy + 0.7 * r), (cx - 0.3 * r, cy + 0.7 * r)], fill=col)
        d.ellipse((cx - 0.25 * r, cy - 0.45 * r, cx + 0.25 * r, cy + 0.05 * r), fill=col)
    elif e == "chevron":
        d.line([(cx - r, cy + 0.5 * r), (cx, cy - 0.5 * r), (cx + r, cy + 0.5 * r)], fill=col, width=int(0.12 * s),
               joint="curve")
    elif e == "ball":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=col)
        d.polygon(_star(cx, cy, 0.45 * r, 5)[::2], fill=(30, 30, 30))
    else: raise ValueError(f"unknown emblem {e!r}")


@lru_cache(maxsize=None)
def _font(px: int):
    """Pillow's built-in font at `px` pixels (no font file needed)."""
    try: return ImageFont.load_default(size=px)
    except (TypeError, OSError): return ImageFont.load_default()


def template(club_index: int, size: int = 140) -> Image.Image:
    """The clean, centred, upright RGBA crest of a club (the "ideal" image every sample is made from)."""
    return _template(club_index, size).copy()


@lru_cache(maxsize=64)
def _template(club_index: int, size: int) -> Image.Image:
    """Draw a club's crest at 2x and downsample it, for anti-aliased edges (cached; don't modify)."""
    club, s = CLUBS[club_index], 2 * size
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    box = (0.15 * s, 0.1 * s, 0.85 * s, 0.9 * s) if club.shape == "shield" else (0.13 * s, 0.13 * s, 0.87 * s, 0.87 * s)
    w = 0.035 * s
    for j, col in enumerate(club.rings + (club.fill,)):
        _shape(d, club.shape, (box[0] + j * w, box[1] + j * w, box[2] - j * w, box[3] - j * w), col)
    n = len(club.rings)
    mask = Image.new("L", img.size, 0)
    _shape(ImageDraw.Draw(mask), club.shape, (box[0] + n * w, box[1] + n * w, box[2] - n * w, box[3] - n * w), 255)
    _emblem(img, mask, club, s)
    d.text((0.5 * s, 0.3 * s), club.initials, fill=club.text, font=_font(int(0.15 * s)), anchor="mm",
           stroke_width=max(1, s // 140), stroke_fill=club.fill)
    return img.resize((size, size), Image.LANCZOS)


def _affine(rng: np.random.Generator, size: int):
    """Random inverse affine coefficients (output -> input) for PIL, about the image centre."""
    u = rng.random()
    if u < 0.15: angle = 180 + rng.normal(0, 8)            # upside down
    elif u < 0.29: angle = rng.uniform(0, 360)              # any angle
    else: angle = float(np.clip(rng.normal(0, 6), -15, 15))  # nearly upright
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    shear = np.array([[1, rng.normal(0, 0.05)], [0, 1]])
    sc = rng.uniform(0.75, 1.1)
    scale = np.diag([sc * math.exp(rng.normal(0, 0.03)), sc])
    flip = np.diag([-1.0 if rng.random() < 0.2 else 1.0, 1.0])
    m = rot @ shear @ scale @ flip
    shift = np.clip(rng.normal(0, 2.5, 2), -10, 10) * size / 140
    inv = np.linalg.inv(m)
    c = np.array([size / 2, size / 2])
    off = c - inv @ (c + shift)
    return (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1])


def crest(club_index: int, seed: int, i: int, size: int = 140) -> Image.Image:
    """Image `i` of club `club_index`: its template rotated, sheared, scaled, shifted, recoloured; deterministic."""
    if not 0 <= club_index < len(CLUBS): raise IndexError(f"no club {club_index}")
    rng = np.random.default_rng([seed, club_index, i])
    img = _template(club_index, size).transform((size, size), Image.AFFINE, _affine(rng, size),
                                                resample=Image.BICUBIC, fillcolor=(0, 0, 0, 0))
    x = np.asarray(img, dtype=np.float32)
    gain = (1 + rng.normal(0, 0.04, 3)) * (1 + rng.normal(0, 0.05))
    x[..., :3] *= gain
    img = Image.fromarray(np.clip(x + 0.5, 0, 255).astype(np.uint8), "RGBA")
    if rng.random() < 0.2:
        img = img.convert("RGBa").filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0) * size / 140)).convert("RGBA")
    return img


def _batch(k: int, seed: int, idxs: list, size: int, folder: str) -> int:
    """Write images `idxs` of club `k` into `folder`; returns how many."""
    name = CLUBS[k].name
    for i in idxs: crest(k, seed, i, size).save(os.path.join(folder, f"{name}_{i:04d}.png"), compress_level=1)
    return len(idxs)


def _params(n_classes, per_class, size, seed) -> dict:
    """What a generated folder was made from (stored in its `.complete` marker)."""
    return dict(version=VERSION, classes=class_names(n_classes), per_class=per_class, size=size, seed=seed)


def is_complete(out: str | Path, params: dict | None = None) -> bool:
    """Whether `out` holds a finished set (made with `params`, when given)."""
    f = Path(out) / ".complete"
    try: found = json.loads(f.read_text())
    except (OSError, ValueError): return False
    return params is None or found == params


def generate(out: str | Path, n_classes: int | None = None, per_class: int = 300, size: int = 140,
             seed: int = 0, progress: Callable[[int, int], object] | None = None) -> Path:
    """Write `out/<club>/<club>_<i:04d>.png` for the first `n_classes` clubs; reuses a matching finished set."""
    out = Path(out)
    if per_class < 1 or size < 16: raise ValueError(f"need per_class >= 1 and size >= 16, got {per_class}, {size}")
    params = _params(n_classes, per_class, size, seed)
    if is_complete(out, params): return out
    if out.exists() and any(out.iterdir()) and not is_complete(out):
        raise FileExistsError(f"{out} exists and is not a generated crest set; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        _fill(tmp, params, progress)
        (tmp / ".complete").write_text(json.dumps(params, indent=1))
        _swap(tmp, out, params)
    finally:
        if tmp.exists(): shutil.rmtree(tmp, ignore_errors=True)
    return out


def _fill(folder: Path, params: dict, progress) -> None:
    """Generate every image of `params` into `folder`, in parallel when worth it."""
    n, per, size, seed = len(params["classes"]), params["per_class"], params["size"], params["seed"]
    jobs = []
    for k in range(n):
        d = folder / CLUBS[k].name
        d.mkdir()
        jobs += [(k, seed, list(range(j, min(j + 50, per))), size, str(d)) for j in range(0, per, 50)]
    total, done = n * per, 0
    if progress: progress(0, total)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for count in _run(jobs, 1 if total < 400 else min(cores, len(jobs))):
        done += count
        if progress: progress(done, total)


def _run(jobs: list, workers: int):
    """Run `_batch` jobs, yielding image counts as they finish; in a process pool when `workers` > 1."""
    left = set(range(len(jobs)))
    if workers > 1:
        ctx = mp.get_context("fork") if sys.platform.startswith("linux") else None  # fork: no __main__ guard needed
        try:
            with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
                futs = {ex.submit(_batch, *job): j for j, job in enumerate(jobs)}
                try:
                    for f in as_completed(futs):
                        count = f.result()
                        left.discard(futs[f])
                        yield count
                finally:
                    for f in futs: f.cancel()  # stop early on errors or Ctrl-C
        except (BrokenProcessPool, OSError, RuntimeError): pass  # no usable pool here: finish in this process
    for j in sorted(left): yield _batch(*jobs[j])


def _swap(tmp: Path, out: Path, params: dict) -> None:
    """Move the finished `tmp` folder to `out`, replacing an empty or stale generated set."""
    if out.exists():
        if is_complete(out, params): return          # someone else finished the same set meanwhile
        shutil.rmtree(out) if any(out.iterdir()) else out.rmdir()
    try: tmp.rename(out)
    except OSError:
        if not is_complete(out, params): raise


def default_dataset(root: str | Path | None = None, progress: Callable[[int, int], object] | None = None) -> Path:
    """The embedded default set (all clubs, 300 each, 140px, seed 0), generated once and then reused."""
    if root is None:
        from .config import cache_dir
        root = cache_dir() / "crests-v1"
    return generate(root, n_classes=None, per_class=300, size=140, seed=0, progress=progress)
