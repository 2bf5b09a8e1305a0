"""Embedded "football crest" dataset: made-up club crests, varied like a scraped image set."""
from __future__ import annotations

import hashlib
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
from PIL import Image, ImageDraw, ImageFilter

from . import heraldry

VERSION = 2  # bump when the drawing or the variation changes, so cached sets are regenerated


class Club(NamedTuple):
    """One made-up club: its identity (colours, emblem, initials) and the shapes of its designs."""
    name: str
    shape: str            # shield | roundel | hexagon | square: the classic design's outline
    rings: tuple          # border colours, outermost first
    fill: tuple           # main colour inside the rings
    emblem: str           # star | cannon | bird | ball | stripes | cross | chevron
    ink: tuple            # emblem colour
    initials: str
    text: tuple           # initials colour
    alt: tuple            # other outlines a design may take (P["outlines"] picks one per design)
    year: int             # founding year, on some badges


CRIMSON, SCARLET = (190, 10, 40), (225, 30, 30)  # the look-alike pair's two reds
WHITE, GOLD = (250, 250, 250), (214, 170, 40)
NAVY = (15, 25, 70)

CLUBS: list[Club] = [
    # the look-alike pair first: both mostly red with white, like Arsenal vs Liverpool
    Club("ashford-athletic", "shield", (WHITE, CRIMSON), CRIMSON, "cannon", WHITE, "AA", WHITE, ("roundel", "shield"),
         1886),
    Club("redbridge-rovers", "square", (WHITE, SCARLET), SCARLET, "stripes", WHITE, "RR", WHITE, ("hexagon", "square"),
         1892),
    Club("kingsport-united", "hexagon", (WHITE, (20, 50, 150)), (20, 50, 150), "star", GOLD, "KU", WHITE,
         ("shield", "roundel"), 1878),
    Club("millbrook-city", "roundel", ((20, 30, 60), WHITE), (110, 175, 230), "ball", WHITE, "MC", (20, 30, 60),
         ("square", "hexagon"), 1880),
    Club("hollowmere-town", "square", ((20, 20, 20),), (245, 200, 20), "stripes", (20, 20, 20), "HT", (245, 200, 20),
         ("roundel", "shield"), 1901),
    Club("westcliff-wanderers", "shield", ((240, 240, 240),), (20, 120, 60), "cross", WHITE, "WW", GOLD,
         ("hexagon", "roundel"), 1895),
    Club("thornbury-albion", "roundel", (NAVY, WHITE, NAVY), WHITE, "chevron", NAVY, "TA", NAVY, ("shield", "square"),
         1879),
    Club("carrow-county", "hexagon", ((230, 80, 160),), (230, 80, 160), "stripes", WHITE, "CC", WHITE,
         ("square", "roundel"), 1874),
    Club("eastleigh-harriers", "square", ((250, 120, 20), (30, 30, 30)), (30, 30, 30), "bird", (250, 120, 20), "EH",
         (250, 120, 20), ("shield", "hexagon"), 1899),
    Club("stonehaven-dynamo", "roundel", ((240, 240, 240),), (130, 40, 190), "star", WHITE, "SD", WHITE,
         ("hexagon", "square"), 1907),
]
LAYOUTS = ("classic", "away", "badge", "halves")  # design d: layout LAYOUTS[d], outline (shape, *alt)[P["outlines"][d]]
BACKGROUNDS = ("none", "solid", "gradient", "fabric", "shirt")
# How often each variation turns up (the recipe of the built-in set, chosen by measuring the model ladder on it)
P = dict(designs=(0.62, 0.22, 0.08, 0.08), outlines=(0, 0, 1, 0), background=(0.88, 0.03, 0.03, 0.03, 0.03),
         stars=0.4, year=0.4, sponsor=0.5, turn=(0.1, 0.1), zoom=(0.75, 1.1), shift=5, shirt=0.42, occlude=0.45,
         small=0.12, small_px=(0.3, 0.5), blur=0.12, blur_px=(0.8, 1.8), grey=0.05, gain=0.06, bright=0.08)
SPONSORS = ("ACME", "NOVA", "ZEST", "VOLT", "ORBIT", "KITE", "LUMA", "PIXEL", "BOLT", "FJORD")
SKIN = ((224, 172, 140), (198, 134, 96), (141, 85, 54), (242, 204, 178))


def class_names(n: int | None = None) -> list[str]:
    """Names of the first `n` built-in clubs (all if None); the red look-alike pair comes first."""
    if n is None: n = len(CLUBS)
    if not 1 <= n <= len(CLUBS): raise ValueError(f"n must be between 1 and {len(CLUBS)}, got {n}")
    return [c.name for c in CLUBS[:n]]


def design(club_index: int, d: int) -> tuple[str, str]:
    """(outline, layout) of design `d` of a club."""
    c = CLUBS[club_index]
    return (c.shape, *c.alt)[P["outlines"][d]], LAYOUTS[d]


def template(club_index: int, size: int = 140, d: int = 0) -> Image.Image:
    """The clean, centred, upright RGBA crest of design `d` of a club (the 'ideal' its samples are made from)."""
    return _template(club_index, d, size).copy()


def _palette(club: Club, layout: str) -> tuple:
    """(rings, fill, ink, text) of a layout: the away design puts the main colour round a field of the second."""
    if layout != "away": return club.rings, club.fill, club.ink, club.text
    field = club.rings[0] if club.rings[0] != club.fill else club.ink
    return (club.fill,), field, club.fill, club.fill


@lru_cache(maxsize=128)
def _template(club_index: int, d: int, size: int) -> Image.Image:
    """Draw a design at 2x and downsample it, for anti-aliased edges (cached; don't modify)."""
    club, s = CLUBS[club_index], 2 * size
    shape, layout = design(club_index, d)
    rings, fill, ink, text = _palette(club, layout)
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    dr = ImageDraw.Draw(img)
    box = (0.15 * s, 0.1 * s, 0.85 * s, 0.9 * s) if shape == "shield" else (0.13 * s, 0.13 * s, 0.87 * s, 0.87 * s)
    w = (0.07 if layout == "badge" else 0.035) * s   # the anniversary badge has a thick ring
    for j, col in enumerate(rings + (fill,)):
        heraldry.shape(dr, shape, (box[0] + j * w, box[1] + j * w, box[2] - j * w, box[3] - j * w), col)
    n = len(rings)
    mask = Image.new("L", img.size, 0)
    heraldry.shape(ImageDraw.Draw(mask), shape, (box[0] + n * w, box[1] + n * w, box[2] - n * w, box[3] - n * w), 255)
    font, words = heraldry.font(int(0.15 * s)), (0.3 * s, club.initials, text)
    if layout == "halves":      # the upper part in the second colour, the initials on it in the first
        heraldry.paint(img, mask, rings[0] if rings[0] != fill else ink, [(0, 0, s, 0.42 * s)])
        words = (0.3 * s, club.initials, fill)
    elif layout == "badge":     # a band across the middle carrying the initials
        heraldry.paint(img, mask, ink, [(0, 0.55 * s, s, 0.75 * s)])
        words = (0.65 * s, club.initials, fill)
    cx, cy, r = {"classic": (0.5, 0.58, 0.17), "away": (0.5, 0.52, 0.24), "badge": (0.5, 0.36, 0.12),
                 "halves": (0.5, 0.65, 0.15)}[layout]
    heraldry.emblem(img, mask, club.emblem, ink, cx * s, cy * s, r * s)
    if layout != "away":
        dr.text((0.5 * s, words[0]), words[1], fill=words[2], font=font, anchor="mm", stroke_width=max(1, s // 140),
                stroke_fill=fill if words[2] != fill else ink)
    return img.resize((size, size), Image.LANCZOS)


def _extras(img: Image.Image, club: Club, rng: np.random.Generator) -> None:
    """Per-image additions to a crest: its stars above, its founding year on a ribbon below."""
    s, d = img.size[0], ImageDraw.Draw(img)
    if rng.random() < P["stars"]:
        n = 1 + club.year % 3
        for j in range(n):
            d.polygon(heraldry.star(s * (0.5 + (j - (n - 1) / 2) * 0.1), 0.065 * s, 0.045 * s), fill=GOLD)
    if rng.random() < P["year"]:
        d.rectangle((0.3 * s, 0.87 * s, 0.7 * s, 0.98 * s), fill=club.ink)
        d.text((0.5 * s, 0.925 * s), str(club.year), fill=club.fill, font=heraldry.font(max(6, int(0.09 * s))),
               anchor="mm")


def _affine(rng: np.random.Generator, size: int, zoom: float = 1.0, centre=(0.0, 0.0)):
    """Random inverse affine coefficients (output -> input) for PIL, about the image centre (moved by `centre`)."""
    u = rng.random()
    if u < P["turn"][0]: angle = 180 + rng.normal(0, 8)           # upside down
    elif u < sum(P["turn"]): angle = rng.uniform(0, 360)           # any angle
    else: angle = float(np.clip(rng.normal(0, 6), -15, 15))  # nearly upright
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    shear = np.array([[1, rng.normal(0, 0.05)], [0, 1]])
    sc = rng.uniform(*P["zoom"]) * zoom
    scale = np.diag([sc * math.exp(rng.normal(0, 0.03)), sc])
    flip = np.diag([-1.0 if rng.random() < 0.2 else 1.0, 1.0])
    m = rot @ shear @ scale @ flip
    jitter = np.clip(rng.normal(0, P["shift"], 2), -3.5 * P["shift"], 3.5 * P["shift"])
    shift = (jitter * zoom + np.asarray(centre)) * size / 140
    inv = np.linalg.inv(m)
    c = np.array([size / 2, size / 2])
    off = c - inv @ (c + shift)
    return (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1])


def _colour(rng: np.random.Generator, club: Club) -> tuple:
    """A background colour: neutral, one of the club's own, or anything."""
    u = rng.random()
    if u < 0.4: return tuple(int(v) for v in np.clip(rng.integers(20, 245) + rng.normal(0, 8, 3), 0, 255))
    if u < 0.6: return (club.fill, *club.rings)[rng.integers(1 + len(club.rings))]
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _background(kind: str, rng: np.random.Generator, club: Club, size: int) -> np.ndarray:
    """(size, size, 3) float background of a kind other than none and shirt."""
    c0 = np.asarray(_colour(rng, club), np.float32)
    if kind == "solid": return np.broadcast_to(c0, (size, size, 3))
    if kind == "gradient":
        a = rng.uniform(0, 2 * math.pi)
        y, x = np.mgrid[:size, :size].astype(np.float32) / size - 0.5
        t = np.clip(0.5 + x * math.cos(a) + y * math.sin(a), 0, 1)[..., None]
        return c0 + t * (np.asarray(_colour(rng, club), np.float32) - c0)
    i, j = rng.integers(0, size, 2)
    return c0 * heraldry.weave(size)[i:i + size, j:j + size, None]


def _shirt(rng: np.random.Generator, club: Club, size: int) -> tuple[Image.Image, float, tuple]:
    """A football shirt on a plain backdrop, with a sponsor word: (image, crest zoom, crest centre offset)."""
    s, u = size, rng.random()
    kit = club.fill if u < 0.5 else club.rings[0] if u < 0.7 else _colour(rng, club)
    trim = club.ink if kit != club.ink else club.fill
    img = Image.new("RGB", (s, s), _colour(rng, club))
    d, z, dx = ImageDraw.Draw(img), rng.uniform(0.9, 1.25), rng.normal(0, 0.03)
    pts = [(0.36, 0.08), (0.22, 0.12), (0.0, 0.32), (0.1, 0.48), (0.22, 0.4), (0.22, 1.1), (0.78, 1.1), (0.78, 0.4),
           (0.9, 0.48), (1.0, 0.32), (0.78, 0.12), (0.64, 0.08), (0.5, 0.16)]
    xy = [(s * (0.5 + (x - 0.5) * z + dx), s * (0.1 + (y - 0.1) * z)) for x, y in pts]
    d.polygon(xy, fill=kit)
    d.line([xy[0], xy[-1], xy[-2]], fill=trim, width=max(1, s // 35))
    if rng.random() < P["sponsor"]:
        d.text((s * (0.5 + dx), s * (0.1 + 0.52 * z)), SPONSORS[rng.integers(len(SPONSORS))], fill=trim,
               font=heraldry.font(max(6, int(0.1 * s * z))), anchor="mm")
    left = rng.random() < 0.6   # on the chest, left (as worn) or in the middle
    centre = (((0.64 if left else 0.5) - 0.5) * z + dx) * 140, (0.12 + 0.22 * z - 0.5) * 140
    return img, P["shirt"] * z, centre


def _occlude(img: Image.Image, rng: np.random.Generator) -> None:
    """Something in front of the crest: a thumb, a sticker or a caption bar."""
    s, d, u = img.size[0], ImageDraw.Draw(img), rng.random()
    col = SKIN[rng.integers(len(SKIN))] if u < 0.5 else tuple(int(v) for v in rng.integers(0, 256, 3))
    if u < 0.5:     # a thumb from the bottom or a side
        x, w = rng.uniform(0.1, 0.9) * s, rng.uniform(0.18, 0.3) * s
        d.ellipse((x - w / 2, rng.uniform(0.78, 0.9) * s, x + w / 2, 1.4 * s), fill=col + (255,))
    elif u < 0.75:  # a round sticker
        x, y, r = *(rng.uniform(0.2, 0.8, 2) * s), rng.uniform(0.08, 0.16) * s
        d.ellipse((x - r, y - r, x + r, y + r), fill=col + (255,))
    else:           # a caption bar across the top or bottom
        h = rng.uniform(0.1, 0.2) * s
        y = 0 if rng.random() < 0.5 else s - h
        d.rectangle((0, y, s, y + h), fill=col + (255,))


class Look(NamedTuple):
    """The main variations drawn for one image."""
    design: int           # index into LAYOUTS (and the club's outlines)
    background: str       # one of BACKGROUNDS
    occluded: bool        # a thumb, sticker or caption bar in front
    copy: str             # "" | "small" (shrunk and scaled back up) | "blurred"


def look(club_index: int, seed: int, i: int) -> Look:
    """The variations of image `i` of a club (drawn from their own random stream: cheap to ask for)."""
    rng = np.random.default_rng([seed, club_index, i, 1])
    d = int(rng.choice(len(LAYOUTS), p=P["designs"]))
    kind = BACKGROUNDS[rng.choice(len(BACKGROUNDS), p=P["background"])]
    occluded, u = bool(rng.random() < P["occlude"]), rng.random()
    return Look(d, kind, occluded, "small" if u < P["small"] else "blurred" if u < P["small"] + P["blur"] else "")


def crest(club_index: int, seed: int, i: int, size: int = 140) -> Image.Image:
    """Image `i` of club `club_index`: one of its designs with badges, on a background or a shirt, moved, partly
    hidden, small or blurred, recoloured; deterministic."""
    if not 0 <= club_index < len(CLUBS): raise IndexError(f"no club {club_index}")
    club, lk, rng = CLUBS[club_index], look(club_index, seed, i), np.random.default_rng([seed, club_index, i])
    fg = _template(club_index, lk.design, size).copy()
    _extras(fg, club, rng)
    bg, zoom, centre = _shirt(rng, club, size) if lk.background == "shirt" else (None, 1.0, (0.0, 0.0))
    img = fg.transform((size, size), Image.AFFINE, _affine(rng, size, zoom, centre), resample=Image.BICUBIC,
                       fillcolor=(0, 0, 0, 0))
    if lk.background not in ("none", "shirt"):
        bg = Image.fromarray(np.clip(_background(lk.background, rng, club, size) + 0.5, 0, 255).astype(np.uint8))
    if bg is not None: img = Image.alpha_composite(bg.convert("RGBA"), img)
    if lk.occluded: _occlude(img, rng)
    x = np.asarray(img, dtype=np.float32)
    rgb = x[..., :3] * ((1 + rng.normal(0, P["gain"], 3)) * (1 + rng.normal(0, P["bright"])))
    if rng.random() < P["grey"]: rgb += rng.uniform(0.4, 0.8) * (rgb.mean(-1, keepdims=True) - rgb)  # faded
    x[..., :3] = rgb
    img = Image.fromarray(np.clip(x + 0.5, 0, 255).astype(np.uint8), "RGBA")
    if lk.copy:
        img = img.convert("RGBa")   # premultiplied, so transparent pixels don't bleed colour
        if lk.copy == "small":      # a small copy, scaled back up
            r = int(rng.uniform(*P["small_px"]) * size)
            img = img.resize((r, r), Image.BILINEAR).resize((size, size), Image.BILINEAR)
        else:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(*P["blur_px"]) * size / 140))
        img = img.convert("RGBA")
    return img


def _batch(k: int, seed: int, idxs: list, size: int, folder: str) -> int:
    """Write images `idxs` of club `k` into `folder`; returns how many."""
    name = CLUBS[k].name
    for i in idxs: crest(k, seed, i, size).save(os.path.join(folder, f"{name}_{i:04d}.png"), compress_level=1)
    return len(idxs)


def _params(n_classes, per_class, size, seed) -> dict:
    """What a generated folder was made from (stored in its `.complete` marker); `recipe` fingerprints the clubs and
    the variation rates, so editing either regenerates a cached set (drawing changes bump VERSION)."""
    recipe = hashlib.sha256(repr((CLUBS, LAYOUTS, BACKGROUNDS, sorted(P.items()))).encode()).hexdigest()[:12]
    return dict(version=VERSION, recipe=recipe, classes=class_names(n_classes), per_class=per_class, size=size,
                seed=seed)


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
        root = cache_dir() / f"crests-v{VERSION}"
    return generate(root, n_classes=None, per_class=300, size=140, seed=0, progress=progress)
