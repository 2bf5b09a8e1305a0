"""Dataset audit on the uint8 cache: duplicates and leakage, label issues by confident learning, class balance and
odd images, as plain data (dataclasses; AuditReport.to_json()). fixes.py acts on the
findings; copies.py finds the near copies."""
from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from .copies import fingerprints, near_pairs, union
from .ideal import class_means, distances, to_float

SPLITS = ("train", "valid", "test")
BLANK_STD = 4.0       # spread (std, 0-255) of every channel, alpha too, under which an image counts as blank
TRANSPARENT = 0.02    # visible (alpha >= 16) share of pixels under which an image counts as transparent
ASPECT_MAX = 4.0      # width / height (or height / width) at or over which a picture is extreme
SIZE_FACTOR = 4.0     # a larger side this many times below or (x2) above the median is extreme in size
FAR_RATIO = 1.5       # far from a class: its mean image 1.5x further than from 90% of the class's own images
FAST_EPOCHS, FAST_BS = 4, 128  # per-fold model: ranks as well as 6 epochs, bs 64 or a cnn (benchmarks/audit.py)
MIN_STEPS = 60        # small sets get more epochs, so every fold model takes at least this many steps
Progress = Callable[[int, int, str], object]


@dataclass
class Group:
    """Copies of one picture, exact (same cached pixels) or not; distance: largest pHash distance of the pairs that
    joined it; indices: positions in the dataset; conflict: filed under different classes, a sure label conflict."""
    paths: list[str]
    classes: list[str]
    splits: list[str]
    exact: bool
    distance: int
    indices: list[int]
    cross_split: bool = field(init=False)
    conflict: bool = field(init=False)

    def __post_init__(self):
        self.cross_split, self.conflict = len(set(self.splits)) > 1, len(set(self.classes)) > 1


@dataclass
class Suspect:
    """A possible label error: score 1 - p(given) out of fold; confident: counted by confident learning itself."""
    path: str
    given: str
    suggested: str
    score: float
    confident: bool
    index: int


@dataclass
class Odd:
    path: str
    label: str
    split: str
    reasons: list[str]
    index: int


@dataclass
class AuditReport:
    root: str
    n_images: int
    duplicates: list[Group]
    label_issues: list[Suspect]  # most suspicious first
    labels: dict                 # how they were found: folds, model, size, epochs, seconds, estimate, thresholds
    imbalance: dict
    odd: list[Odd]
    leakage: dict
    seconds: float
    timings: dict                # seconds per part
    probs: np.ndarray | None = field(repr=False, default=None)  # out-of-fold probabilities (N, K)

    @property
    def cross_split(self) -> int:
        return sum(g.cross_split for g in self.duplicates)

    def to_json(self) -> dict:
        """One JSON-ready object (plain lists, dicts, numbers and strings)."""
        out = {k: v for k, v in asdict(replace(self, probs=None)).items() if k != "probs"}
        return {**out, "cross_split": self.cross_split, "conflicts": sum(g.conflict for g in self.duplicates),
                "seconds": round(self.seconds, 2), "timings": {k: round(v, 2) for k, v in self.timings.items()}}


def duplicates(ds) -> list[Group]:
    """Groups of exact and near copies, largest first; each lists its files, classes and splits."""
    keys = [hashlib.blake2b(x.tobytes(), digest_size=16).digest() for x in ds.images]
    first: dict[bytes, int] = {}
    rep = [first.setdefault(k, i) for i, k in enumerate(keys)]  # exact copies share a representative
    uniq = np.array(sorted(first.values()))
    sides = np.sqrt(np.prod(np.array(ds.sizes, np.float64).reshape(-1, 2), 1))[uniq]
    near = [(int(uniq[a]), int(uniq[b]), h) for a, b, h in near_pairs(fingerprints(ds.images[uniq]), ds.images[uniq],
                                                                      sides)]
    root = union(len(keys), [(a, b) for a, b, _ in near] + [(i, r) for i, r in enumerate(rep) if r != i])
    members: dict[int, list[int]] = {}
    for i, r in enumerate(root):
        members.setdefault(r, []).append(i)
    hamming = {root[a]: h for a, _, h in sorted(near, key=lambda p: p[2])}  # the largest wins
    groups = [Group([ds.items[i] for i in idx], [ds.vocab[ds.labels[i]] for i in idx],
                    [SPLITS[ds.split[i]] for i in idx], len({keys[i] for i in idx}) == 1, hamming.get(r, 0), idx)
              for r, idx in members.items() if len(idx) > 1]
    return sorted(groups, key=lambda g: (-len(g.indices), g.indices[0]))


def group_split(ds, groups: list[Group] | None = None) -> tuple[object, int]:
    """ds with every group of copies on one side of its random split (the side of most of its copies; a tie: its
    first file's side), and how many images changed side. A pre-split folder's own split is left as it is."""
    if ds.presplit:
        raise ValueError(f"{ds.root} is split into folders already: a group split applies to random splits only")
    split, moved = ds.split.copy(), 0
    for g in duplicates(ds) if groups is None else groups:
        sides = ds.split[g.indices]
        values, counts = np.unique(sides, return_counts=True)
        best = values[counts == counts.max()]
        side = sides[0] if sides[0] in best else best[0]
        moved += int((sides != side).sum())
        split[g.indices] = side
    return replace(ds, split=split), moved


def leakage(ds, groups: list[Group], probs=None, model=None) -> dict:
    """Valid images with a copy in train; valid accuracy with and without them (probs of idx('valid'), or a model)."""
    va = ds.idx("valid")
    in_train = {i for g in groups if "train" in g.splits for i, s in zip(g.indices, g.splits) if s != "train"}
    leaked = np.array([i in in_train for i in va], bool)
    out = {"n_valid": len(va), "n_leaked": int(leaked.sum()), "leaked": [ds.items[i] for i in va[leaked]],
           "n_leaked_test": int(sum(ds.split[i] == 2 for i in in_train)), "reported": None, "without_leaked": None}
    if probs is None and model is not None and len(va):
        from .evaluate import get_probs
        probs = get_probs(model, ds.images[va])
    if probs is not None and len(va):
        hit = np.asarray(torch.as_tensor(probs).argmax(1)) == ds.labels[va]
        out["reported"] = float(hit.mean())
        out["without_leaked"] = float(hit[~leaked].mean()) if (~leaked).any() else None
    return out


def fold_ids(labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Stratified fold number (0..k-1) per item: shuffled by seed, then dealt out class after class."""
    order = np.random.default_rng(seed).permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]
    out = np.empty(len(labels), np.int64)
    out[order] = np.arange(len(labels)) % k
    return out


def shrink(images: np.ndarray, size: int | None) -> np.ndarray:
    """The images at size x size (models.resize_images: the models' own resize), or as they are when not larger."""
    from .models import resize_images
    return images if not size or images.shape[1] <= size else resize_images(images, size, np.arange(len(images)))


def fit_probs(small, split: np.ndarray, held: np.ndarray, model: str, epochs: int, bs: int, seed: int) -> np.ndarray:
    """Probabilities of images[held] from a fresh model (train.fit) trained on the images split marks as train."""
    from .evaluate import get_probs
    from .train import TrainConfig, fit  # fastai: imported only when a model is needed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        done = fit(replace(small, split=split), TrainConfig(model, epochs=epochs, size=small.size, seed=seed, bs=bs))
    return get_probs(done.net, small.images[held]).numpy()


def out_of_fold(ds, folds: int = 5, model: str = "linear", size: int | None = 32, epochs: int | None = None,
                seed: int = 0, progress: Progress | None = None, small: np.ndarray | None = None):
    """(probs (N, K), info): every image's probabilities from a fresh model (train.fit) on the other folds, at size."""
    t0, n = time.perf_counter(), len(ds.items)
    if folds < 2 or n < folds:
        raise ValueError(f"need at least 2 folds and as many images as folds, got {folds} folds for {n} images")
    small = replace(ds, images=shrink(ds.images, size) if small is None else small)
    n_train = n - n // folds
    bs = min(FAST_BS, max(8, n_train // 16))  # small sets: smaller batches, and epochs enough for MIN_STEPS steps
    epochs = epochs or max(FAST_EPOCHS, -(-MIN_STEPS // max(1, n_train // bs)))
    fid, probs, seconds = fold_ids(ds.labels, folds, seed), np.zeros((n, ds.c), np.float32), []
    for f in range(folds):
        if progress:
            progress(f, folds, f"label check: training fold {f + 1} of {folds}")
        t, held = time.perf_counter(), fid == f
        probs[held] = fit_probs(small, held.astype(np.int8), np.flatnonzero(held), model, epochs, bs, seed + f)
        seconds.append(time.perf_counter() - t)
    return probs, {"folds": folds, "model": model, "size": small.size, "epochs": epochs, "bs": bs,
                   "fold_seconds": [round(s, 2) for s in seconds], "seconds": round(time.perf_counter() - t0, 2),
                   "accuracy": float((probs.argmax(1) == ds.labels).mean())}  # vs given labels, errors included


def confident_learning(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Confident learning (Northcutt, Jiang, Chuang, JAIR 2021): thresholds t_j (mean p_j of items labelled j), the
    confident joint [given, true], its calibration Q, the estimated error count, and flagged items: pruned by noise
    rate, off the joint's diagonal, or (so a badly calibrated model loses nothing) argmax on another class."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.int64)
    (n, k), counts = probs.shape, np.bincount(labels, minlength=probs.shape[1])
    t = np.array([probs[labels == j, j].mean() if counts[j] else 1.0 for j in range(k)])
    above = probs >= t[None] - 1e-9
    sure, true = above.any(1), np.where(above, probs, -1).argmax(1)  # true: likeliest class over its threshold
    joint = np.zeros((k, k), np.int64)
    np.add.at(joint, (labels[sure], true[sure]), 1)
    q = joint / np.maximum(joint.sum(1, keepdims=True), 1) * counts[:, None]  # calibrated: rows sum to class counts
    q = q / q.sum() if q.sum() else q.astype(float)
    pruned = np.zeros(n, bool)
    for i in range(k):
        idx = np.flatnonzero(labels == i)
        for j in range(k):
            m = round(q[i, j] * n) if i != j else 0
            if m > 0:  # prune by noise rate: the n * Q[i, j] items labelled i with the largest p_j - p_i
                pruned[idx[np.argsort(probs[idx, i] - probs[idx, j], kind="stable")[:m]]] = True
    confident = (sure & (true != labels)) | pruned
    flagged = confident | (probs.argmax(1) != labels)
    return {"thresholds": t, "joint": joint, "q": q, "n_estimated": round(n * (q.sum() - np.trace(q))),
            "confident": confident, "flagged": flagged}


def label_issues(ds, probs: np.ndarray, cl: dict | None = None) -> list[Suspect]:
    """Flagged images ranked most suspicious first: score 1 - p(given), ties by the other class's probability."""
    cl = cl or confident_learning(probs, ds.labels)
    rows = np.arange(len(ds.labels))
    given, other = probs[rows, ds.labels], probs.copy()
    other[rows, ds.labels] = -1
    suggested, idx = other.argmax(1), np.flatnonzero(cl["flagged"])
    idx = idx[np.lexsort((-other.max(1)[idx], given[idx]))]
    return [Suspect(ds.items[i], ds.vocab[ds.labels[i]], ds.vocab[suggested[i]], round(float(1 - given[i]), 4),
                    bool(cl["confident"][i]), int(i)) for i in idx]


def imbalance(ds) -> dict:
    """Images per class (all splits), the largest and smallest class and the ratio of their counts."""
    counts = {c: int((ds.labels == k).sum()) for k, c in enumerate(ds.vocab)}
    big, small = max(counts, key=counts.get), min(counts, key=counts.get)
    return {"counts": counts, "largest": big, "smallest": small, "ratio": round(counts[big] / max(1, counts[small]), 3)}


def odd_images(ds, small: np.ndarray | None = None) -> list[Odd]:
    """Almost transparent, near-blank, extreme shape or size (files' own, ds.sizes), far from every class (at 32 px)."""
    small = shrink(ds.images, 32) if small is None else small
    n, reasons, x = len(ds.items), [[] for _ in ds.items], torch.from_numpy(small).float()
    a = x[..., 3:] if x.shape[-1] == 4 else torch.full(x.shape[:-1] + (1,), 255.0)
    seen, std = (a[..., 0] >= 16).float().mean((1, 2)), torch.cat([x[..., :3] * a / 255, a], -1).flatten(1, 2).std(1)
    sizes = np.array(ds.sizes, np.float64).reshape(-1, 2)  # the files' own width and height
    side = sizes.max(1)
    med = float(np.median(side))
    means, y = class_means(small, ds.labels, ds.c), ds.labels  # far: L1 to each class mean / that of 90% of its own
    d = torch.cat([distances(to_float(small[i:i + 512]), means) for i in range(0, n, 512)]).numpy()
    ref = np.array([np.quantile(d[y == k, k], 0.9) if (y == k).sum() >= 5 else np.inf for k in range(ds.c)])
    z = (d / np.maximum(ref, 1e-6)).min(1)
    for i, (wd, ht) in enumerate(sizes):
        if seen[i] < TRANSPARENT:
            reasons[i].append(f"almost fully transparent ({seen[i]:.1%} visible)")
        elif std[i].max() < BLANK_STD:  # every channel, premultiplied colour and alpha
            reasons[i].append(f"near-blank (pixel values spread {std[i].max():.1f} of 255)")
        if max(wd, ht) >= ASPECT_MAX * max(1.0, min(wd, ht)):
            reasons[i].append(f"extreme aspect ratio ({int(wd)}x{int(ht)})")
        if side[i] * SIZE_FACTOR <= med or side[i] >= 2 * SIZE_FACTOR * med:
            reasons[i].append(f"extreme size ({int(wd)}x{int(ht)}; most are about {int(med)} px)")
        if z[i] > FAR_RATIO:
            reasons[i].append(f"far from every class in pixel space ({z[i]:.1f}x their usual distance)")
    return [Odd(ds.items[i], ds.vocab[ds.labels[i]], SPLITS[ds.split[i]], r, i) for i, r in enumerate(reasons) if r]


def audit(ds, folds: int = 5, model: str = "linear", size: int | None = 32, epochs: int | None = None,
          seed: int = 0, trained=None, progress: Progress | None = None) -> AuditReport:
    """Everything above; folds=0: no label check. model, size, epochs: the per-fold model. trained (a model or valid
    probabilities) scores the validation images with and without leaked copies; None: the per-fold model trained once
    more on the dataset's own split. progress(done, total, message)."""
    t0, timings, total = time.perf_counter(), {}, 3 + max(folds, 0)

    def step(done: int, msg: str, name: str | None = None) -> None:
        if name:  # the time since the last named step
            timings[name] = time.perf_counter() - t0 - sum(timings.values())
        if progress:
            progress(done, total, msg)
    step(0, "looking for duplicates")
    groups = duplicates(ds)
    step(1, "label check: shrinking images" if folds else "looking for odd images", "duplicates")
    small = shrink(ds.images, 32)
    probs, suspects, labels = None, [], {"folds": 0}
    if folds:
        probs, labels = out_of_fold(ds, folds, model, size, epochs, seed, lambda d, _, msg: step(1 + d, msg),
                                    small if size == 32 else None)
        cl = confident_learning(probs, ds.labels)
        suspects = label_issues(ds, probs, cl)
        labels.update(n_estimated=cl["n_estimated"], n_flagged=len(suspects),
                      thresholds={c: round(float(v), 4) for c, v in zip(ds.vocab, cl["thresholds"])})
        step(1 + folds, "looking for odd images", "label_issues")
    odd = odd_images(ds, small)
    step(2 + max(folds, 0), "scoring the validation images with and without leaked copies", "odd")
    if trained is None and folds and len(va := ds.idx("valid")) and len(ds.idx("train")):
        small_ds = replace(ds, images=small if size == 32 else shrink(ds.images, size))
        trained = fit_probs(small_ds, ds.split, va, model, labels["epochs"], labels["bs"], seed)
        labels["reference"] = f"{model} at {small_ds.size} px trained on the dataset's own split"
    is_model = isinstance(trained, torch.nn.Module)
    leak = leakage(ds, groups, probs=None if is_model else trained, model=trained if is_model else None)
    step(total, "done", "leakage")
    return AuditReport(ds.root, len(ds.items), groups, suspects, labels, imbalance(ds), odd, leak,
                       time.perf_counter() - t0, timings, probs)
