"""The one image pipeline: any file or PIL image -> a square uint8 RGB(A) array, or a clear error."""
from __future__ import annotations

import io
import os
import re
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
              ".pbm"}
MAX_PIXELS = 60_000_000      # ~ a 7700x7700 photo; larger files are refused before they are decoded
MAX_BYTES = 64 * 1024 * 1024  # no crest or photo needs more; keeps a hostile upload from filling memory
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
LARGE_PIXELS = 16_000_000    # images above this are decoded one at a time per process and reduced right after loading
LARGE_DECODES = threading.BoundedSemaphore(1)
# the first bytes of every format IMAGE_EXTS names: PNG, JPEG, GIF, BMP, WebP (RIFF), TIFF, PBM/PGM/PPM/PAM
MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"RIFF", b"II*\x00", b"MM\x00*",
         b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"P7")

ImageFile.LOAD_TRUNCATED_IMAGES = False
WHITE = (255, 255, 255)      # the background transparent images are flattened on when nothing else is known
RESIZE_METHODS = ("squish", "crop", "pad")  # fastai's ResizeMethod names; squish is the default


class ImageError(ValueError):
    """An image that cannot be used, with a reason a person can act on."""


@dataclass
class Header:
    """What an image file says about itself before it is decoded."""
    width: int
    height: int
    mode: str
    format: str
    alpha: bool


def _sniff(head: bytes) -> str | None:
    """Name what a non-image file really is, for a clearer message."""
    h = head.lstrip()[:256].lower()
    if h.startswith(b"<svg") or (h.startswith(b"<?xml") and b"<svg" in head.lower()):
        return "an SVG (vector) image; convert it to PNG first"
    if h.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page, not an image (a failed download?)"
    if head[:2] == b"PK":
        return "a zip archive, not an image"
    if h and all(32 <= c < 127 or c in (9, 10, 13) for c in h[:64]):
        return "a text file, not an image"
    return None


def looks_like_image(head: bytes) -> bool:
    """Whether a file's first bytes are those of an image format logoapp reads (checked before writing an upload)."""
    if head.startswith(b"RIFF"):
        return head[8:12] == b"WEBP"
    return head.startswith(MAGIC)


def plain(e: BaseException) -> str:
    """An exception's message without the server details some libraries put in it: object addresses, file paths,
    links (with version numbers)."""
    msg = re.sub(r"<[^<>]*\bat 0x[0-9a-fA-F]+>", "the file", str(e) or type(e).__name__)
    msg = re.sub(r"https?://\S+", "", msg)
    msg = re.sub(r"(?<![\w.])/(?:[\w.+-]+/)+[\w.+-]*", "(path)", msg)
    return re.sub(r"\s+", " ", msg).strip(" ;,(") or type(e).__name__


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ALPHA_MODES or (img.mode in ("P", "L", "RGB") and "transparency" in img.info)


def _open(src) -> Image.Image:
    """Open lazily (header only), refusing empty, huge and non-image files with a reason."""
    if isinstance(src, Image.Image):
        return src
    if isinstance(src, (bytes, bytearray)):
        data = bytes(src)
        fp = io.BytesIO(data)
        size, head = len(data), data[:512]
    else:
        try:
            with open(Path(src), "rb") as f:  # one open and one read; Pillow then parses from memory
                size = os.fstat(f.fileno()).st_size
                data = f.read() if 0 < size <= MAX_BYTES else b""
        except OSError as e:
            raise ImageError(f"cannot read file: {e.strerror or e}") from None
        fp, head = io.BytesIO(data), data[:512]
    if size == 0:
        raise ImageError("empty file (0 bytes)")
    if size > MAX_BYTES:
        raise ImageError(f"file too large ({size / 2**20:.0f} MB > {MAX_BYTES // 2**20} MB)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # corrupt-EXIF and similar notes are not the user's problem
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        what = _sniff(head)
        if what:
            raise ImageError(f"not an image: {what}") from None
        if isinstance(e, UnidentifiedImageError):
            raise ImageError("not an image, or an unsupported image format") from None
        raise ImageError("image too large (decompression-bomb limit)") from None
    except Exception as e:  # Pillow plugins raise many kinds of errors on hostile bytes
        raise ImageError(f"unreadable image: {plain(e)}") from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageError(f"image too large: {w}x{h} pixels (limit {MAX_PIXELS // 1_000_000} megapixels)")
    if w < 1 or h < 1:
        raise ImageError(f"image has no pixels ({w}x{h})")
    return img


def header(src) -> Header:
    """Read size, mode and format without decoding pixels."""
    img = _open(src)
    try:
        return Header(img.width, img.height, img.mode, img.format or "", _has_alpha(img))
    finally:
        if not isinstance(src, Image.Image):
            img.close()


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale 16-bit and float greyscale to 8 bits (Pillow's convert clips instead of scaling)."""
    a = np.asarray(img)
    if img.mode.startswith("I;16") or (img.mode == "I" and a.max(initial=0) > 255):
        a = (a.astype(np.uint32) >> 8) if a.max(initial=0) > 255 else a
    elif img.mode == "F":
        lo, hi = float(a.min(initial=0)), float(a.max(initial=1))
        a = (a - lo) / (hi - lo or 1) * 255
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")


def normalise_mode(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB or RGBA; palette/grey transparency becomes alpha."""
    if img.mode in ("RGB", "RGBA"):
        if img.mode == "RGB" and "transparency" in img.info:
            return img.convert("RGBA")
        return img
    if img.mode.startswith("I") or img.mode == "F":
        return _to_8bit(img).convert("RGB")
    if img.mode in ("RGBa", "LA", "La", "PA") or (img.mode in ("P", "L") and "transparency" in img.info):
        return img.convert("RGBA")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def decode(src, size: int, channels: int = 4, info: dict | None = None, out: np.ndarray | None = None,
           background=WHITE, method: str = "squish") -> np.ndarray:
    """Decode, apply EXIF rotation, normalise the mode and make a size x size square by `method` (squish, crop or
    pad: fit_square) -> (size, size, channels) uint8; transparent images become RGB over `background`.
    info, when given, receives the file's own width, height, mode, format and alpha (one open per file); out, when
    given, receives the pixels (and is returned), saving a copy."""
    img = _open(src)
    if info is not None:
        info.update(width=img.width, height=img.height, mode=img.mode, format=img.format or "", alpha=_has_alpha(img))
    try:
        if img.format == "JPEG":
            img.draft("RGB", (size * 2, size * 2))  # decode big JPEGs at reduced scale: much faster, same result
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF and palette warnings are not the user's problem
            img = _load(img, size)
            if img is src:  # the caller's own image: never turned in place
                img = ImageOps.exif_transpose(img)
            else:  # in place: no copy when there is nothing to turn
                ImageOps.exif_transpose(img, in_place=True)
            img = normalise_mode(img)
    except ImageError:
        raise
    except Exception as e:
        msg = plain(e)
        if "truncated" in msg or isinstance(e, (OSError, SyntaxError, EOFError)):
            raise ImageError(f"truncated or corrupt image ({msg})") from None
        raise ImageError(f"cannot decode image ({msg})") from None
    return to_channels(resize(fit_square(np.asarray(img), method), size), channels, out, background)


def check_method(method: str) -> str:
    """A resize method name, checked: 'squish', 'crop' or 'pad'."""
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize method must be one of {', '.join(RESIZE_METHODS)}, got {method!r}")
    return method


def fit_square(a: np.ndarray, method: str = "squish") -> np.ndarray:
    """(H, W, C) -> a square by fastai's ResizeMethod: squish leaves it as it is (the resize squishes it), crop
    keeps the centre square, pad puts it in the middle of a square of zeros (black, or transparent for RGBA)."""
    h, w = a.shape[:2]
    if h == w or check_method(method) == "squish":
        return a
    if method == "crop":
        s = min(h, w)
        y, x = (h - s) // 2, (w - s) // 2
        return a[y:y + s, x:x + s]
    s = max(h, w)
    out = np.zeros((s, s) + a.shape[2:], np.uint8)
    y, x = (s - h) // 2, (s - w) // 2
    out[y:y + h, x:x + w] = a
    return out


def typical_background(images: np.ndarray, n: int = 512, share: float = 0.5):
    """The background images sit on, learned from their borders: the commonest border colour (in bins of 32 levels
    per channel; the median of the pixels in that bin) when at least `share` of the opaque border pixels have it,
    else white. (N, S, S, C) uint8; up to n evenly spaced images are looked at; transparent pixels are ignored."""
    if not len(images):
        return WHITE
    x = images[::max(1, len(images) // n)]
    ring = np.concatenate([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], 1).reshape(-1, x.shape[-1])
    if ring.shape[-1] == 4:
        ring = ring[ring[:, 3] >= 128]
    if not len(ring):
        return WHITE
    rgb = ring[:, :3]
    bins = (rgb >> 5).astype(np.int32) @ np.array([64, 8, 1])
    counts = np.bincount(bins, minlength=512)
    top = int(counts.argmax())
    if counts[top] < share * len(rgb):
        return WHITE
    return tuple(int(v) for v in np.median(rgb[bins == top], 0).round())


def background_of(meta: dict) -> tuple[int, int, int]:
    """The colour a model's transparent inputs are flattened on: model.json's "background" (learned from its
    training images), white for models saved without one. Every prediction path and export uses this."""
    bg = meta.get("background") if isinstance(meta, dict) else None
    if isinstance(bg, (list, tuple)) and len(bg) == 3 and all(type(v) is int and 0 <= v <= 255 for v in bg):
        return tuple(bg)
    return WHITE


def method_of(meta: dict) -> str:
    """How a model's inputs are made square: model.json's "resize" ('squish' for models saved without one)."""
    m = meta.get("resize", "squish") if isinstance(meta, dict) else "squish"
    return m if m in RESIZE_METHODS else "squish"


def _load(img: Image.Image, size: int) -> Image.Image:
    """Load the pixels; a large image is loaded while holding LARGE_DECODES (so a few big uploads at once cannot
    each take a gigabyte) and reduced by a whole factor to at least twice `size` before anything else copies it."""
    if img.width * img.height <= LARGE_PIXELS:
        img.load()
        return img
    with LARGE_DECODES:
        img.load()
        factor = min(img.width, img.height) // (2 * size)
        if factor < 2:
            return img
        img = normalise_mode(img)  # RGB or RGBA: modes reduce() takes
        if img.mode == "RGBA":  # premultiplied, so transparent pixels add no colour to the edges
            return img.convert("RGBa").reduce(factor).convert("RGBA")
        return img.reduce(factor)


def resize(a: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3|4) uint8 -> (size, size, C) uint8: squished, antialiased bilinear (Pillow's BILINEAR filter, run
    by torch's SIMD uint8 kernel, faster than Pillow's resize: README, Performance). RGBA is
    resized premultiplied, so the colour of transparent pixels does not bleed into the edges, then
    un-premultiplied."""
    if a.shape[:2] == (size, size):
        return a
    import torch
    import torch.nn.functional as F
    translucent = a.shape[-1] == 4 and a[..., 3].min() < 255
    src = _premultiply(a) if translucent else np.require(a, requirements=["C", "W"])  # torch wants writable
    with torch.inference_mode():
        t = torch.from_numpy(src).permute(2, 0, 1)[None]  # a channels-last view: the uint8 fast path
        planes = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].numpy()
    return _unpremultiply(planes) if translucent else np.ascontiguousarray(planes.transpose(1, 2, 0))


def _premultiply(a: np.ndarray) -> np.ndarray:
    """RGBA -> premultiplied RGBa: rgb * alpha / 255, rounded exactly as Pillow does. Most pixels of a crest or a
    logo are opaque (kept) or fully transparent (zeroed); only the translucent rest goes through the arithmetic,
    where red and blue share one 32-bit multiply (the usual 0x00FF00FF trick)."""
    if sys.byteorder != "little":
        return np.array(Image.fromarray(a, "RGBA").convert("RGBa"))
    x = np.ascontiguousarray(a).view(np.uint32).reshape(-1)  # R | G << 8 | B << 16 | A << 24 per pixel
    al = x >> 24
    out = np.where(al == 0, np.uint32(0), x)
    part = np.flatnonzero((al - 1) < 254)  # alpha 1..254 (alpha 0 wraps round to 2**32 - 1)
    if part.size:
        xp, ap = x[part], al[part]
        rb = (xp & 0x00FF00FF) * ap + 0x00800080
        rb = ((rb + ((rb >> 8) & 0x00FF00FF)) >> 8) & 0x00FF00FF
        g = ((xp >> 8) & 0xFF) * ap + 0x80
        g = ((g + (g >> 8)) >> 8) & 0xFF
        out[part] = rb | (g << 8) | (ap << 24)
    return out.view(np.uint8).reshape(a.shape)


_UNPREMULTIPLY = np.divide(255, np.arange(256, dtype=np.float32), out=np.zeros(256, np.float32),
                           where=np.arange(256) > 0)


def _unpremultiply(planes: np.ndarray) -> np.ndarray:
    """(4, H, W) premultiplied planes -> (H, W, 4) RGBA: rgb * 255 / alpha, rounded; fully transparent pixels keep
    rgb 0. Working plane by plane keeps every pass contiguous."""
    alpha = planes[3]
    scale = _UNPREMULTIPLY[alpha]
    out = np.empty(planes.shape[1:] + (4,), np.uint8)
    for c in range(3):
        v = planes[c] * scale
        v += 0.5
        np.minimum(v, 255, out=v)
        out[..., c] = v
    out[..., 3] = alpha
    return out


def to_channels(a: np.ndarray, channels: int, out: np.ndarray | None = None, background=WHITE) -> np.ndarray:
    """(H, W, 3|4) uint8 -> (H, W, channels): add an opaque alpha, or composite alpha onto background (white unless
    given: a model's is background_of(meta)); into out if given."""
    c = a.shape[-1]
    if c == channels:
        if out is not None:
            out[...] = a
            return out
        return a if a.flags.writeable and a.flags.c_contiguous else np.array(a)
    if channels == 4:
        out = np.empty(a.shape[:-1] + (4,), np.uint8) if out is None else out
        out[..., :3], out[..., 3] = a, 255
        return out
    alpha = a[..., 3:4].astype(np.float32) / 255
    bg = np.asarray(background, np.float32)
    rgb = (a[..., :3] * alpha + bg * (1 - alpha) + 0.5).astype(np.uint8)
    if out is None:
        return rgb
    out[...] = rgb
    return out


def composite(a: np.ndarray, background=(255, 255, 255)) -> np.ndarray:
    """RGBA uint8 -> RGB uint8 over a background colour, for display (heatmap overlays)."""
    if a.shape[-1] == 3:
        return a
    alpha = a[..., 3:4].astype(np.float32) / 255
    bg = np.asarray(background, np.float32)
    return (a[..., :3] * alpha + bg * (1 - alpha) + 0.5).astype(np.uint8)
