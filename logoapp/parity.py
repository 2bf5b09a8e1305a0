"""Does an export predict as logoapp does? The same images through the exported file and through logoapp's Predictor:
top-1 agreement and the largest probability difference, per set of images and overall."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .export import Runner, flatten
from .images import ImageError, normalise_mode
from .predict import Predictor

AGREEMENT = 0.999      # below this share of equal top-1 answers an export is refused
N_FILES = 48           # original files (at their own size) checked when a dataset is given
BS = 32


@dataclass
class SetResult:
    name: str             # what the images are
    n: int
    agree: int            # images whose top-1 class is the same through both
    max_diff: float       # largest |p_export - p_logoapp| over every image and class

    @property
    def agreement(self) -> float:
        return self.agree / self.n if self.n else 1.0


@dataclass
class Parity:
    path: str
    sets: list[SetResult]

    @property
    def n(self) -> int:
        return sum(s.n for s in self.sets)

    @property
    def agreement(self) -> float:
        return sum(s.agree for s in self.sets) / self.n if self.n else 0.0

    @property
    def max_diff(self) -> float:
        return max((s.max_diff for s in self.sets), default=0.0)

    @property
    def ok(self) -> bool:
        return self.n > 0 and self.agreement >= AGREEMENT

    def to_dict(self) -> dict:
        return {"path": self.path, "n": self.n, "agreement": self.agreement, "max_diff": self.max_diff,
                "ok": self.ok, "threshold": AGREEMENT, "sets": [asdict(s) | {"agreement": s.agreement}
                                                               for s in self.sets]}

    def line(self) -> str:
        per = "; ".join(f"{s.name}: {s.agree}/{s.n}, max diff {s.max_diff:.2g}" for s in self.sets)
        return (f"parity with logoapp's predictor: top-1 agreement {self.agreement:.2%} on {self.n} images, "
                f"largest probability difference {self.max_diff:.2g} ({per})")


def compare(name: str, runner: Runner, pred: Predictor, images: list[np.ndarray], sources: list | None = None
            ) -> SetResult:
    """images: what the export is fed ((H, W, C) uint8 in the model's channels); sources: what logoapp's predictor
    is given for the same images (file paths, arrays), default the images themselves. Same-shaped runs are batched."""
    sources = images if sources is None else sources
    agree, diff, i = 0, 0.0, 0
    while i < len(images):
        j = i + 1
        while j < len(images) and j - i < BS and images[j].shape == images[i].shape:
            j += 1
        a = runner.probs(np.stack(images[i:j]))
        b = pred.probs(np.stack([pred.prepare(s) for s in sources[i:j]]))
        agree += int((a.argmax(1) == b.argmax(1)).sum())
        diff = max(diff, float(np.abs(a - b).max()))
        i = j
    return SetResult(name, len(images), agree, diff)


def probe_images(meta: dict, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Without a dataset: built-in crests (every club, a few variations each) at the model's image size, random
    blobs and noise, crests at other sizes and shapes, and each club's clean crest at three sizes (the export's own
    squish against logoapp's decoder)."""
    from . import synth
    d, rng = int(meta["data_size"]), np.random.default_rng(seed)
    n_clubs = len(synth.CLUBS)
    crests = [flatten(np.asarray(synth.crest(k, seed + 7, i, d)), meta) for k in range(n_clubs) for i in range(4)]
    noise = [flatten(_blobs(rng, d, d), meta) for _ in range(24)]
    odd = []
    for i in range(16):
        h, w = (int(v) for v in rng.integers(max(8, d // 3), 3 * d, 2))
        img = synth.crest(i % n_clubs, seed + 9, i, max(h, w)).resize((w, h), Image.BILINEAR)
        odd.append(flatten(np.asarray(img), meta))
    clean = [flatten(np.asarray(synth.template(k, s)), meta) for k in range(n_clubs) for s in (d, 2 * d + 1, 400)]
    return {"built-in crests": crests, "random images": noise, "crests at other sizes": odd, "clean crests": clean}


def _blobs(rng, h: int, w: int) -> np.ndarray:
    """A random RGBA image: smooth colour fields, some transparency, some noise."""
    small = rng.integers(0, 256, (4, 4, 4)).astype(np.uint8)
    a = np.asarray(Image.fromarray(small, "RGBA").resize((w, h), Image.BICUBIC)).astype(np.int16)
    a += rng.integers(-20, 21, a.shape).astype(np.int16)
    return np.clip(a, 0, 255).astype(np.uint8)


def data_images(data, meta: dict, n_files: int = N_FILES) -> tuple[dict, dict]:
    """From a dataset: its validation images at the model's image size, and up to n_files original files at their
    own size (what a program using the export alone would feed it). Returns (images per set, sources per set)."""
    from .data import resolve
    ds = resolve(data, size=int(meta["data_size"]))
    idx = ds.idx("valid")
    if not len(idx):
        idx = ds.idx("test") if len(ds.idx("test")) else np.arange(len(ds.items))
    valid = [flatten(ds.images[i], meta) for i in idx]
    pick = idx[np.linspace(0, len(idx) - 1, min(n_files, len(idx))).astype(int)] if len(idx) else []
    files, paths = [], []
    for i in dict.fromkeys(pick):
        try:
            files.append(flatten(original(ds.items[i]), meta))
            paths.append(ds.items[i])
        except (ImageError, OSError):
            continue
    name = Path(ds.root).name or "data"
    return ({f"{name} validation images": valid, f"{name} original files": files},
            {f"{name} validation images": valid, f"{name} original files": paths})


def original(path) -> np.ndarray:
    """A file's pixels at their own size, as a program without logoapp would read them: EXIF rotation applied,
    RGB or RGBA."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        return np.asarray(normalise_mode(img))


def check(path, pred: Predictor, data=None) -> Parity:
    """Run the export at path and pred side by side on data's images (else on the probe set)."""
    runner = Runner(path)
    if data is None:
        sets, sources = probe_images(pred.meta), {}
    else:
        sets, sources = data_images(data, pred.meta)
    return Parity(str(path), [compare(name, runner, pred, imgs, sources.get(name)) for name, imgs in sets.items()
                              if imgs])
