"""A folder of class sub-folders -> a Dataset: items, labels, vocab, split and a uint8 image cache."""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import numpy as np

from . import parallel
from . import ondisk
from .config import Settings, cache_dir
from .images import IMAGE_EXTS, ImageError, decode, header

CACHE_VERSION = 2  # bump when decoding or resizing changes the pixels, so caches are rebuilt


class Split(IntEnum):
    """The split codes stored in Dataset.split (int8); str() gives the name used everywhere else ('valid')."""
    TRAIN = 0
    VALID = 1
    TEST = 2

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def of(cls, name: str | Split) -> Split:
        """'train', 'valid' or 'test' (or a Split) -> the Split."""
        return cls[name.upper()] if isinstance(name, str) else cls(name)


SPLIT_FOLDERS = {"train": Split.TRAIN, "valid": Split.VALID, "validation": Split.VALID, "val": Split.VALID,
                 "test": Split.TEST}  # folder names of a pre-split dataset


class DataError(ValueError):
    """A dataset that cannot be used at all (missing folder, no classes...): one clear line."""


@dataclass
class BadFile:
    path: str
    reason: str


@dataclass
class Dataset:
    """Decoded images of a folder, cached as uint8 (N, S, S, C), with labels and a fixed split."""
    root: str
    vocab: list[str]
    items: list[str]             # file paths, aligned with images and labels
    labels: np.ndarray           # (N,) int64 indices into vocab
    images: np.ndarray           # (N, S, S, C) uint8
    split: np.ndarray            # (N,) int8 Split codes: 0 train, 1 valid, 2 test
    sizes: list[tuple[int, int]]  # original (width, height) per item
    modes: list[str]             # original Pillow mode per item
    bad: list[BadFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    presplit: bool = False
    seed: int = 42
    valid_pct: float = 0.2

    @property
    def size(self) -> int:
        return self.images.shape[1]

    @property
    def channels(self) -> int:
        return self.images.shape[3]

    @property
    def c(self) -> int:
        return len(self.vocab)

    def idx(self, name: str | Split) -> np.ndarray:
        """Indices of the 'train', 'valid' or 'test' split."""
        return np.flatnonzero(self.split == Split.of(name))

    def summary(self) -> dict:
        """Counts per class and split, image sizes and modes, bad files: plain data for the CLI and the UI."""
        counts = {}
        for k, name in enumerate(self.vocab):
            m = self.labels == k
            counts[name] = {str(sp): int((m & (self.split == sp)).sum()) for sp in Split}
            counts[name]["total"] = int(m.sum())
        sizes = Counter(f"{w}x{h}" for w, h in self.sizes)
        return {
            "root": self.root, "n_images": len(self.items), "n_classes": self.c, "vocab": self.vocab,
            "counts": counts, "image_size": self.size, "channels": self.channels,
            "n_train": int((self.split == Split.TRAIN).sum()), "n_valid": int((self.split == Split.VALID).sum()),
            "n_test": int((self.split == Split.TEST).sum()), "presplit": self.presplit,
            "sizes": dict(sizes.most_common(20)), "modes": dict(Counter(self.modes).most_common()),
            "bad": [{"path": b.path, "reason": b.reason} for b in self.bad], "notes": self.notes,
            "memory_mb": round(self.images.nbytes / 2**20, 1),
        }


def _walk(top: Path):
    """Yield files under top, sorted, following symlinks but never looping; hidden entries skipped."""
    seen = set()
    top_real = os.path.realpath(top)
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(dirpath)  # a folder seen before, or a link back up to an ancestor, is a loop
        if real in seen or (real != top_real and top_real.startswith(real.rstrip(os.sep) + os.sep)):
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith("."):
                yield os.path.join(dirpath, f)  # plain strings: Path objects slow re-opening from the cache


def _class_files(top: Path, bad: list[BadFile], notes: list[str]) -> dict[str, list[str]]:
    """Class name -> image files under top/<class>/ (any depth); stray and non-image files reported."""
    out = {}
    for d in sorted(top.iterdir(), key=lambda p: p.name):
        if d.name.startswith((".", "_")):  # hidden, or logoapp's own (_excluded/: images a fix set aside)
            continue
        if not d.is_dir():
            if d.suffix.lower() in IMAGE_EXTS:
                bad.append(BadFile(str(d), "image is not inside a class folder"))
            continue
        files = []
        for f in _walk(d):
            ext = os.path.splitext(f)[1].lower()
            if ext in IMAGE_EXTS:
                files.append(f)
            elif ext == ".svg":
                bad.append(BadFile(f, "an SVG (vector) image; convert it to PNG first"))
            else:
                bad.append(BadFile(f, f"not an image file type ({os.path.splitext(f)[1] or 'no extension'})"))
        if files:
            out[d.name] = files
        else:
            notes.append(f"class folder '{d.name}' has no images and was left out")
    return out


def _layout(root: Path, bad, notes) -> tuple[list[tuple[Path, str, int]], bool]:
    """(file, class, split) for every candidate image; split a Split code (-1: split later)."""
    subs = {p.name.lower(): p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    if "train" in subs and any(k in subs for k in ("valid", "validation", "val", "test")):
        has_valid = any(k in subs for k in ("valid", "validation", "val"))
        rows = []
        for key, p in sorted(subs.items()):
            split = SPLIT_FOLDERS.get(key)
            if split is None:
                notes.append(f"folder '{p.name}' is not train/valid/test and was left out")
                continue
            if split == Split.TEST and not has_valid:  # test/ without valid/: it is the validation split
                split = Split.VALID
            for cls, files in _class_files(p, bad, notes).items():
                rows += [(f, cls, int(split)) for f in files]
        bad += [BadFile(str(f), "image is not inside a class folder") for f in sorted(root.iterdir())
                if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTS]
        return rows, True
    rows = [(f, cls, -1) for cls, files in _class_files(root, bad, notes).items() for f in files]
    return rows, False


def split_indices(labels: np.ndarray, valid_pct: float, seed: int) -> np.ndarray:
    """Stratified, deterministic split: per class, round(n * valid_pct) items (at least one when n >= 2) go to valid."""
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), Split.TRAIN, np.int8)
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        n_valid = int(round(len(idx) * valid_pct))
        if len(idx) >= 2 and valid_pct > 0:
            n_valid = min(max(1, n_valid), len(idx) - 1)
        split[rng.permutation(idx)[:n_valid]] = Split.VALID
    return split


def _cache_key(rows, size: int | str) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION}|{size}".encode())
    for f, cls, split in rows:
        try:
            st = os.stat(f)
            h.update(f"{f}|{cls}|{split}|{st.st_size}|{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            h.update(f"{f}|missing\n".encode("utf-8", "surrogateescape"))  # names need not be valid UTF-8
    return h.hexdigest()[:20]


def _load_cache(key: str, mapped: bool | None = None):
    d = cache_dir() / "datasets"
    meta, arr = d / f"{key}.json", d / f"{key}.npy"
    if not (meta.exists() and arr.exists()):
        return None
    try:
        m = json.loads(meta.read_text())
        images = ondisk.load(arr, ondisk.wanted(arr.stat().st_size, mapped))
        if images.shape[0] != len(m["items"]):
            return None
        return m, images
    except (OSError, ValueError, KeyError):
        return None


def _save_cache(key: str, meta: dict, images: np.ndarray, written: Path | None = None) -> Path | None:
    """Write a cache entry (atomically: concurrent writers each write their own temporary file, the last rename
    wins with identical content); written: the images sit in this .npy already (a mapped decode), moved, not
    copied. Returns the entry's .npy, or None when the cache folder cannot be written."""
    d = cache_dir() / "datasets"
    try:
        d.mkdir(parents=True, exist_ok=True)
        tmp = written or d / f".{key}.{os.getpid()}.tmp.npy"
        if written is None:
            np.save(tmp, images)
        os.replace(tmp, d / f"{key}.npy")
        tmp = d / f".{key}.{os.getpid()}.tmp.json"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, d / f"{key}.json")  # json last: a cache entry is complete only when both exist
        return d / f"{key}.npy"
    except OSError:
        return None  # a read-only or full cache folder only costs speed


def _spill(key: str, shape: tuple, flag: bool | None) -> Path | None:
    """Where to decode a set too large for memory (a temporary .npy in the cache folder), or None: in memory."""
    if not ondisk.wanted(int(np.prod(shape)), flag):
        return None
    d = cache_dir() / "datasets"
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return d / f".{key}.{os.getpid()}.spill.npy"


def _decode_all(rows, size: int, channels: int, workers: int, progress, reuse: dict | None = None,
                out: np.ndarray | None = None) -> tuple[np.ndarray, list, list]:
    """Decode every file into one preallocated uint8 array (or out: a mapped file), in worker processes or threads
    (parallel.map_into); one open per file gives both pixels and header. reuse: path -> (image, (width, height),
    mode) decoded before."""
    n, reuse = len(rows), reuse or {}
    images = out if out is not None else parallel.empty((n, size, size, channels),
                                                        parallel.use_processes(n - len(reuse), workers))
    pages = ondisk.Reader(images)  # a mapped file: written pages leave this process's memory as it goes
    paths = [str(r[0]) for r in rows]

    def one(i: int, out: np.ndarray):
        info = {}
        if (old := reuse.get(paths[i])) is not None and old[0].shape == out.shape[1:]:
            out[i] = old[0]
            return None, {"width": old[1][0], "height": old[1][1], "mode": old[2]}
        try:
            decode(paths[i], size, channels, info, out=out[i])
            return None, info
        except ImageError as e:
            return str(e), None
        except Exception as e:  # never let one file stop the dataset
            return f"cannot decode image ({type(e).__name__}: {e})", None

    def report(done: int) -> None:
        pages.read(images[0].nbytes * parallel.STEP)
        if progress and (done % 64 < parallel.STEP or done == n):
            progress(done, n, "decoding images")

    records = parallel.map_into(one, n, images, workers, report,
                                crashed=lambda i: ("the image decoder crashed on this file (a damaged or hostile "
                                                   "image?)", None))
    return images, [r[0] for r in records], [r[1] for r in records]


def _probe(rows, n: int = 64) -> tuple[int, list[int]]:
    """Channels and larger sides judged on up to n evenly spaced headers: 4 (RGBA) when most images have
    transparency (crests, logos), else 3."""
    votes, sides = [], []
    for f, _, _ in rows[::max(1, len(rows) // n)]:
        try:
            h = header(f)
        except Exception:  # a bad file gets its reason when it is decoded
            continue
        votes.append(h.alpha)
        sides.append(max(h.width, h.height))
    return (4 if votes and sum(votes) * 2 >= len(votes) else 3), sides


def fit_size(sides, most: int | None = None) -> int:
    """The square size to store images at when none is given: the median of their larger sides, at most `most`
    (Settings.size, 140) and at least 16. Small images (icons, CIFAR's 32 px) keep their own size instead of being
    upsampled: 19x less memory for 32 px photos, and a model resizing to its own input size sees one resample,
    not two."""
    most = most or Settings().size
    return int(min(most, max(16, np.median(sides)))) if len(sides) else most


def open_dataset(path, size: int | None = None, valid_pct: float | None = None, seed: int | None = None,
                 cache: bool = True, workers: int | None = None, progress=None, reuse: dict | None = None,
                 mmap: bool | None = None) -> Dataset:
    """Open a folder of class sub-folders (or train/ + valid|validation|test/) as a Dataset. Images are stored as
    size x size squares; with no size, at the images' own typical size, at most Settings.size (fit_size).
    reuse: path -> (image, size, mode) already decoded (reopen), used instead of decoding those files again.
    mmap: keep the images in the on-disk cache, memory-mapped read-only, rather than in memory (None: when the
    cache would take more than half the available memory, or as LOGOAPP_MMAP=1/0 says; needs cache=True)."""
    s = Settings()
    valid_pct = s.valid_pct if valid_pct is None else valid_pct
    seed, workers = s.seed if seed is None else seed, workers or s.workers
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"no such folder: {root}")
    if not root.is_dir():
        raise DataError(f"not a folder: {root} (give a folder with one sub-folder per class)")
    if not 0 <= valid_pct < 1:
        raise DataError(f"valid fraction must be in [0, 1), got {valid_pct}")
    if size is not None and not 8 <= size <= 1024:
        raise DataError(f"image size must be between 8 and 1024 pixels, got {size}")
    bad, notes = [], []
    try:
        rows, presplit = _layout(root, bad, notes)
    except OSError as e:
        raise DataError(f"cannot read {root}: {e.strerror or e}") from None
    if not rows:
        raise DataError(f"no class folders with images in {root} (expected {root}/<class>/<images>)")

    n_layout_bad = len(bad)
    key = _cache_key(rows, size or "fit")  # a fitted size needs no header pass to find its cache entry
    hit = _load_cache(key, mmap) if cache else None
    if hit:
        m, images = hit
        bad += [BadFile(**b) for b in m["bad"]]
        items, classes, splits = m["items"], m["classes"], m["splits"]
        sizes, modes = [tuple(x) for x in m["sizes"]], m["modes"]
    else:
        channels, sides = _probe(rows)
        side = size or fit_size(sides, s.size)
        spill = _spill(key, (len(rows), side, side, channels), mmap) if cache else None
        images, errors, infos = _decode_all(rows, side, channels, workers, progress, reuse,
                                            None if spill is None else ondisk.create(spill, (len(rows), side, side,
                                                                                              channels)))
        keep = []
        for i, err in enumerate(errors):
            if err:
                bad.append(BadFile(str(rows[i][0]), err))
            else:
                if len(keep) != i:
                    images[len(keep)] = images[i]  # compact in place: no second copy of the array
                keep.append(i)
        images = images[:len(keep)]
        items = [str(rows[i][0]) for i in keep]
        classes = [rows[i][1] for i in keep]
        splits = [rows[i][2] for i in keep]
        sizes = [(infos[i]["width"], infos[i]["height"]) for i in keep]
        modes = [infos[i]["mode"] for i in keep]
        if spill is not None and len(keep) < len(rows):
            spill = ondisk.first_rows(images, spill)  # a file as long as the images kept
        if cache and items:
            saved = _save_cache(key, {"items": items, "classes": classes, "splits": splits, "sizes": sizes,
                                      "modes": modes, "bad": [b.__dict__ for b in bad[n_layout_bad:]]}, images, spill)
            if spill is not None:
                images = ondisk.load(saved or spill, True)

    bad.sort(key=lambda b: b.path)
    vocab = sorted(set(classes))
    if not vocab:
        raise DataError(f"no readable images in {root} ({len(bad)} files skipped, first: {bad[0].path}: "
                        f"{bad[0].reason})"
                        if bad else f"no readable images in {root}")
    if len(vocab) < 2:
        raise DataError(f"found only one class ('{vocab[0]}') in {root}: a classifier needs at least two class folders")
    lookup = {c: k for k, c in enumerate(vocab)}
    labels = np.array([lookup[c] for c in classes], np.int64)
    if presplit:
        split = np.array(splits, np.int8)
        if not (split == Split.TRAIN).any() or not (split == Split.VALID).any():
            raise DataError(f"{root} has train/valid folders but one of them holds no readable images")
    else:
        split = split_indices(labels, valid_pct, seed)
    for k, c in enumerate(vocab):
        n = int((labels == k).sum())
        if n < 2:
            notes.append(f"class '{c}' has only {n} image: it is used for training only")
    return Dataset(str(root), vocab, items, labels, images, split, sizes, modes, bad, notes, presplit, seed, valid_pct)


def embedded(size: int | None = None, valid_pct: float | None = None, seed: int | None = None,
             progress=None) -> Dataset:
    """The built-in crest set, generated once into the cache folder, opened like any folder."""
    from .synth import default_dataset
    return open_dataset(default_dataset(progress=progress), size=size, valid_pct=valid_pct, seed=seed,
                        progress=progress)


def resolve(data, **kw) -> Dataset:
    """'embedded' / None -> the built-in set; a path -> that folder."""
    if data in (None, "", "embedded"):
        return embedded(**kw)
    return open_dataset(data, **kw)
