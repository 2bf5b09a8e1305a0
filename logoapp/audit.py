"""Dataset audit on the uint8 cache: duplicates and leakage, label issues by confident learning, class balance and
odd images, as plain data (dataclasses; AuditReport.to_json()). fixes.py acts on the findings.

Copies. Exact: the same cached pixels. Near: each image is seen over black, over white and without its alpha (a
transparent logo matches a copy flattened onto either or saved without alpha); per view a 63-bit pHash (DCT of a
32 px grey thumbnail; Zauner 2010), a 4x4 colour thumbnail, a 16 px grey thumbnail (coarse) and the gradients of a
48 px one (fine), distances 1 - cosine. Of each image's NEIGHBOURS nearest (coarse), a copy is within HAMMING_MAX
bits and COLOUR_MAX, and within FINE_MAX fine (resized, re-encoded, recoloured) or within CROP_SHARE of the data's
median nearest-neighbour distance coarse (slightly cropped; only where distinct pictures lie far apart, as photos
do, unlike 300 renders of one crest). Measured on 3,000 crests (benchmarks/audit.py): resized JPEG and recoloured
copies within 0.0033 fine (recoloured photo-like scenes 0.013); distinct crests 0.016 at least, 0.04 but for 0.1%."""
from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from .images import _premultiply  # exact, and fast on mostly opaque or clear pixels

SPLITS = ("train", "valid", "test")
NEIGHBOURS = 10       # candidates per image: more than any realistic copy count, few enough to check cheaply
HAMMING_MAX = 10      # of 63 pHash bits: copies of crests within 4, unrelated pictures ~31 apart
FINE_MAX = 0.015      # 1 - cosine of 48 px gradient maps; measured margins in the module docstring
COLOUR_MAX = 40.0     # worst cell of 4x4 colour thumbnails (0-255): slight recolouring <= 27, red for green 100+
COARSE_GATE = 0.02    # the fine check runs only on pairs this close on coarse thumbnails (copies: <= 0.007)
CROP_SHARE = 0.05     # a cropped copy must be 20x closer than images usually are to their nearest neighbour
CROP_MAX = 0.02       # ... and never further than this coarse distance
BLANK_STD = 4.0       # spread (std, 0-255) of every channel, alpha too, under which an image counts as blank
TRANSPARENT = 0.02    # visible (alpha >= 16) share of pixels under which an image counts as transparent
ASPECT_MAX = 4.0      # width / height (or height / width) at or over which a picture is extreme
SIZE_FACTOR = 4.0     # a larger side this many times below or (x2) above the median is extreme in size
FAR_RATIO = 1.5       # far from a class: its mean image 1.5x further than from 90% of the class's own images
FAST_EPOCHS = 4       # per-fold model: as good a ranking as 6 epochs or a cnn on crests (benchmarks/audit.py),
FAST_BS = 128         # and half the steps of bs 64, also without loss;
MIN_STEPS = 60        # small sets get more epochs, so every fold model takes at least this many steps
LUMA = torch.tensor([0.299, 0.587, 0.114])
POPCOUNT = np.array([i.bit_count() for i in range(256)], np.uint8)
Progress = Callable[[int, int, str], object]


@dataclass
class Group:
    """Copies of one picture, exact (same cached pixels) or near; `distance`: the largest pHash Hamming distance (of
    63 bits) along the pairs that joined the group; `indices`: positions in the dataset; `conflict`: filed under
    different classes, a sure label conflict."""
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


# ---- fingerprints and duplicates ---------------------------------------------------------------------------------

def _dct(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix (n, n)."""
    m = torch.cos(torch.pi * (2 * torch.arange(n)[None] + 1) * torch.arange(n)[:, None] / (2 * n)) * (2 / n) ** 0.5
    return torch.cat([m[:1] / 2 ** 0.5, m[1:]]).float()


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = x.flatten(1) - x.flatten(1).mean(1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-6)


def _views(x: np.ndarray, size: int = 64) -> torch.Tensor:
    """uint8 (n, H, W, C) -> colour views (n, V, 3, size, size) in 0-255: when C is 4, over black, over white, and
    the colour channels alone (what a copy saved with its transparency dropped shows). Shrunk on the uint8 grid
    (torch's SIMD kernel, 10x cheaper than in float), premultiplied first so that shrinking and compositing
    commute (no dark fringe where transparent pixels' colour would bleed in)."""
    down = lambda a: F.interpolate(torch.from_numpy(a).permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                                   antialias=True, align_corners=False).float()
    if x.shape[-1] != 4:
        return down(x)[:, None]
    p, pm = down(x), down(_premultiply(x))
    return torch.stack([pm[:, :3], pm[:, :3] + 255 - pm[:, 3:], p[:, :3]], 1)


@torch.inference_mode()
def fingerprints(images: np.ndarray, chunk: int = 256) -> dict[str, np.ndarray | torch.Tensor]:
    """Per image and view: 'bits' (n, V, 8) uint8 pHash, 'coarse' (n, V, 256) and 'fine' (n, V, 4512) unit vectors
    of the grey image, and 'colour' (n, V, 48), a 4 x 4 colour thumbnail."""
    dct, out = _dct(32), {"bits": [], "coarse": [], "fine": [], "colour": []}
    down = lambda g, s: F.interpolate(g, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    for i in range(0, len(images), chunk):
        c = _views(images[i:i + chunk])
        n, nv = c.shape[:2]
        out["colour"].append(down(c.flatten(0, 1), 4).reshape(n, nv, -1))
        v = torch.einsum("nvchw,c->nvhw", c, LUMA)
        d = (dct @ down(v, 32) @ dct.T)[..., :8, :8].flatten(2)[..., 1:]  # 63 low frequencies, DC left out
        out["bits"].append(np.packbits((d > d.median(2, keepdim=True).values).numpy(), axis=2))
        out["coarse"].append(_unit(down(v, 16).flatten(0, 1)).reshape(n, nv, -1))
        t = down(v, 48).flatten(0, 1)
        grad = torch.cat([(t[:, :, 1:] - t[:, :, :-1]).flatten(1), (t[:, 1:] - t[:, :-1]).flatten(1)], 1)
        out["fine"].append(_unit(grad).reshape(n, nv, -1).half())
    return {k: np.concatenate(v) if k == "bits" else torch.cat(v) for k, v in out.items()}


@torch.inference_mode()
def _neighbours(coarse: torch.Tensor, k: int, block: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k nearest other rows by coarse distance (1 - best cosine over views): (n, k) distances, indices."""
    n, k, sims = len(coarse), min(k, len(coarse) - 1), []
    for i in range(0, n, block):
        sim = torch.stack([coarse[i:i + block, v] @ coarse[:, v].T for v in range(coarse.shape[1])]).amax(0)
        sim[torch.arange(len(sim)), torch.arange(i, i + len(sim))] = -2  # not itself
        sims.append(sim.topk(k, 1))
    return 1 - torch.cat([s.values for s in sims]), torch.cat([s.indices for s in sims])


def near_pairs(fp: dict, neighbours: int = NEIGHBOURS) -> list[tuple[int, int, int]]:
    """(i, j, Hamming distance) of near-duplicate pairs among the fingerprinted images (rows of fp)."""
    n = len(fp["bits"])
    if n < 2:
        return []
    dist, idx = _neighbours(fp["coarse"], neighbours)
    crop_tol = min(CROP_MAX, CROP_SHARE * float(dist[:, 0].median()))
    i, j = np.repeat(np.arange(n), idx.shape[1]), idx.flatten().numpy()
    pair, first = np.unique(np.sort(np.stack([i, j], 1), 1), axis=0, return_index=True)  # each pair once
    a, b, coarse = pair[:, 0], pair[:, 1], dist.flatten().numpy()[first]
    ham = POPCOUNT[fp["bits"][a] ^ fp["bits"][b]].sum(-1).min(1)  # best view
    colour = (fp["colour"][a] - fp["colour"][b]).abs().unflatten(2, (3, 16)).mean(2).amax(2).amin(1).numpy()
    ham[colour > COLOUR_MAX] = 99  # another colour scheme: not a copy, however alike in grey
    close = np.flatnonzero((ham <= HAMMING_MAX) & (coarse <= COARSE_GATE))
    fine = np.ones(len(a), np.float32)
    for s in range(0, len(close), 2048):  # gather in blocks: the fine vectors are large
        c = close[s:s + 2048]
        fine[c] = 1 - (fp["fine"][a[c]].float() * fp["fine"][b[c]].float()).sum(-1).amax(1).numpy()
    ok = (ham <= HAMMING_MAX) & ((fine <= FINE_MAX) | (coarse <= crop_tol))
    return [(int(x), int(y), int(h)) for x, y, h in zip(a[ok], b[ok], ham[ok])]


def _union(n: int, pairs) -> list[int]:
    """Union-find: each item's group root (the group's smallest index)."""
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = x = parent[parent[x]]  # path halving
        return x
    for a, b in pairs:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    return [find(x) for x in range(n)]


def duplicates(ds) -> list[Group]:
    """Groups of exact and near copies, largest first; each lists its files, classes and splits."""
    keys = [hashlib.blake2b(x.tobytes(), digest_size=16).digest() for x in ds.images]
    first: dict[bytes, int] = {}
    rep = [first.setdefault(k, i) for i, k in enumerate(keys)]  # exact copies share a representative
    uniq = np.array(sorted(first.values()))
    near = [(int(uniq[a]), int(uniq[b]), h) for a, b, h in near_pairs(fingerprints(ds.images[uniq]))]
    root = _union(len(keys), [(a, b) for a, b, _ in near] + [(i, r) for i, r in enumerate(rep) if r != i])
    members: dict[int, list[int]] = {}
    for i, r in enumerate(root):
        members.setdefault(r, []).append(i)
    hamming = {root[a]: h for a, _, h in sorted(near, key=lambda p: p[2])}  # the largest wins
    groups = [Group([ds.items[i] for i in idx], [ds.vocab[ds.labels[i]] for i in idx],
                    [SPLITS[ds.split[i]] for i in idx], len({keys[i] for i in idx}) == 1, hamming.get(r, 0), idx)
              for r, idx in members.items() if len(idx) > 1]
    return sorted(groups, key=lambda g: (-len(g.indices), g.indices[0]))


def leakage(ds, groups: list[Group], probs=None, model=None) -> dict:
    """Validation images with a copy in training, and validation accuracy with and without them. probs: (n_valid,
    K) over ds.idx('valid'), or a model to compute them; with neither, only the counts."""
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


# ---- label issues: out-of-fold probabilities and confident learning ----------------------------------------------

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


def out_of_fold(ds, folds: int = 5, model: str = "linear", size: int | None = 32, epochs: int | None = None,
                seed: int = 0, progress: Progress | None = None, small: np.ndarray | None = None):
    """(probs, info): probabilities (N, K) for every image (all splits) from a model that never saw it: k folds,
    one fresh model per fold trained on the others (logoapp.train.fit), on the images resized once to `size`
    (None: the data's; small: already resized)."""
    from .evaluate import get_probs
    from .train import TrainConfig, fit  # fastai: imported only when a label check runs
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            done = fit(replace(small, split=held.astype(np.int8)),
                       TrainConfig(model, epochs=epochs, size=small.size, seed=seed + f, bs=bs))
        probs[held] = get_probs(done["_model"], small.images[held]).numpy()
        seconds.append(time.perf_counter() - t)
    info = {"folds": folds, "model": model, "size": small.size, "epochs": epochs, "bs": bs,
            "fold_seconds": [round(s, 2) for s in seconds], "seconds": round(time.perf_counter() - t0, 2),
            "accuracy": float((probs.argmax(1) == ds.labels).mean())}  # against the given labels, errors included
    return probs, info


def confident_learning(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Confident learning (Northcutt, Jiang, Chuang, JAIR 2021) on out-of-fold probabilities: per-class thresholds
    t_j (mean p_j over items labelled j), the confident joint C[given, true], calibrated to Q, the estimated number
    of label errors, and the flagged items: prune by noise rate (from each off-diagonal cell (i, j), the
    round(n * Q[i, j]) items labelled i with the largest p_j - p_i), the confident joint's off-diagonal, and, so a
    miscalibrated model loses nothing, items whose argmax is another class. Returns arrays; see label_issues."""
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
            if m > 0:
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


# ---- class balance and odd images -----------------------------------------------------------------------------

def imbalance(ds) -> dict:
    """Images per class (all splits), the largest and smallest class and the ratio of their counts."""
    counts = {c: int((ds.labels == k).sum()) for k, c in enumerate(ds.vocab)}
    big, small = max(counts, key=counts.get), min(counts, key=counts.get)
    return {"counts": counts, "largest": big, "smallest": small, "ratio": round(counts[big] / max(1, counts[small]), 3)}


def _far_scores(images: np.ndarray, labels: np.ndarray, c: int) -> np.ndarray:
    """Per image, its L1 distance to each class's mean image (ideal.py) over the distance within which 90% of that
    class's own images lie; the smallest over the classes: over FAR_RATIO, the image looks like no class at all."""
    from .ideal import class_means, distances, to_float
    means = class_means(images, labels, c)
    d = torch.cat([distances(to_float(images[i:i + 512]), means) for i in range(0, len(images), 512)]).numpy()
    ref = np.array([np.quantile(d[labels == k, k], 0.9) if (labels == k).sum() >= 5 else np.inf for k in range(c)])
    return (d / np.maximum(ref, 1e-6)).min(1)


def odd_images(ds, small: np.ndarray | None = None) -> list[Odd]:
    """Almost fully transparent, near-blank, extreme aspect ratio or size (original sizes, ds.sizes), far from every
    class in pixel space; judged on the images at 32 px (small, when the caller has them already)."""
    small = shrink(ds.images, 32) if small is None else small
    n, reasons, x = len(ds.items), [[] for _ in ds.items], torch.from_numpy(small).float()
    a = x[..., 3:] if x.shape[-1] == 4 else torch.full(x.shape[:-1] + (1,), 255.0)
    seen, std = (a[..., 0] >= 16).float().mean((1, 2)), torch.cat([x[..., :3] * a / 255, a], -1).flatten(1, 2).std(1)
    sizes = np.array(ds.sizes, np.float64).reshape(-1, 2)
    side, med = sizes.max(1), float(np.median(sizes.max(1)))
    z = _far_scores(small, ds.labels, ds.c) if n >= 10 else np.zeros(n)
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
    """Everything above on one dataset. folds=0 skips the label check (no training). model, size and epochs choose
    the per-fold model (a fast rung: see FAST_EPOCHS); trained, a model or validation probabilities, adds the
    validation accuracy without leaked images to the leakage figures. progress(done, total, message)."""
    t0, timings, total = time.perf_counter(), {}, 2 + max(folds, 0)

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
    is_model = isinstance(trained, torch.nn.Module)
    leak = leakage(ds, groups, probs=None if is_model else trained, model=trained if is_model else None)
    step(total, "done", "odd")
    return AuditReport(ds.root, len(ds.items), groups, suspects, labels, imbalance(ds), odd, leak,
                       time.perf_counter() - t0, timings, probs)
