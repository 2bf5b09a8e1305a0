"""Dataset audit on the uint8 cache: duplicates and leakage, label issues by confident learning, class balance and
odd images, as plain data (dataclasses; AuditReport.to_json()). fixes.py acts on the findings.

Copies. Exact: the same cached pixels. Near: each image is seen over black, over white and without alpha (a logo
matches copies flattened or saved without alpha); per view a 63-bit pHash (DCT of a 32 px grey thumbnail; Zauner
2010), a 4x4 colour thumbnail, a 16 px grey one (coarse), the gradients of a 48 px one (fine; inner: opaque parts
only), distances 1 - cosine. Of each image's NEIGHBOURS nearest (coarse), a copy is within HAMMING_MAX and
COLOUR_MAX, and within FINE_MAX or INNER_MAX (a much smaller one compared at its own size), or within CROP_SHARE of
the data's typical nearest distance (slight crops: where pictures lie far apart, as photos do, not crest renders).
Measured on 3,000 crests (benchmarks/audit.py): resized JPEG or recoloured copies within 0.005 fine, alpha-dropped
ones within 0.005 inner (0.008 at a third of the size); distinct crests 0.016 fine (0.04 but 0.1%), 0.009 inner."""
from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from .ideal import class_means, distances, to_float
from .images import _premultiply, resize

SPLITS = ("train", "valid", "test")
NEIGHBOURS = 10       # candidates per image: more than any realistic copy count, few enough to check cheaply
HAMMING_MAX = 10      # of 63 pHash bits: copies of crests within 4, unrelated pictures ~31 apart
FINE_MAX = 0.015      # 1 - cosine of 48 px gradient maps; measured margins in the module docstring
INNER_MAX = 0.008     # the same inside the opaque area, opaque image vs transparent: alpha-dropped copies <= 0.005
COLOUR_MAX = 40.0     # worst cell of 4x4 colour thumbnails (0-255): slight recolouring <= 27, red for green 100+
SHRUNK = 0.8          # a copy this much smaller (side) is compared with the original shrunk to its size
COARSE_GATE = 0.06    # fine is checked on pairs this close in coarse only (copies <= 0.045: small, alpha dropped)
CROP_SHARE = 0.05     # a cropped copy must be 20x closer than images usually are to their nearest neighbour
CROP_MAX = 0.02       # ... and never further than this coarse distance
BLANK_STD = 4.0       # spread (std, 0-255) of every channel, alpha too, under which an image counts as blank
TRANSPARENT = 0.02    # visible (alpha >= 16) share of pixels under which an image counts as transparent
ASPECT_MAX = 4.0      # width / height (or height / width) at or over which a picture is extreme
SIZE_FACTOR = 4.0     # a larger side this many times below or (x2) above the median is extreme in size
FAR_RATIO = 1.5       # far from a class: its mean image 1.5x further than from 90% of the class's own images
FAST_EPOCHS, FAST_BS = 4, 128  # per-fold model: ranks as well as 6 epochs, bs 64 or a cnn (benchmarks/audit.py)
MIN_STEPS = 60        # small sets get more epochs, so every fold model takes at least this many steps
LUMA = torch.tensor([0.299, 0.587, 0.114])
POPCOUNT = np.array([i.bit_count() for i in range(256)], np.uint8)
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


def _dct(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix (n, n)."""
    m = torch.cos(torch.pi * (2 * torch.arange(n)[None] + 1) * torch.arange(n)[:, None] / (2 * n)) * (2 / n) ** 0.5
    return torch.cat([m[:1] / 2 ** 0.5, m[1:]]).float()


def _views(x: np.ndarray, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, H, W, C) -> views (n, V, 3, size, size): over black, over white, colour alone; alpha (n, 1, ...)."""
    # shrunk on the uint8 grid (torch's SIMD kernel, 10x cheaper than float), premultiplied (images._premultiply: exact
    # and fast) so that shrinking and compositing commute (no dark fringe from the colour of transparent pixels)
    down = lambda a: F.interpolate(torch.from_numpy(a).permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                                   antialias=True, align_corners=False).float()
    if x.shape[-1] != 4:
        return down(x)[:, None], torch.full((len(x), 1, size, size), 255.0)
    p, pm = down(x), down(_premultiply(x))
    return torch.stack([pm[:, :3], pm[:, :3] + 255 - pm[:, 3:], p[:, :3]], 1), pm[:, 3:]


@torch.inference_mode()
def fingerprints(images: np.ndarray, chunk: int = 256) -> dict[str, np.ndarray | torch.Tensor]:
    """Per image and view: pHash 'bits', unit 'coarse' and 'fine' vectors, 'colour' 4x4; 'inner': fine's opaque part."""
    dct, out = _dct(32), {"bits": [], "coarse": [], "fine": [], "colour": [], "inner": []}
    down = lambda g, s: F.interpolate(g, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    unit = lambda x: F.normalize(x.flatten(1) - x.flatten(1).mean(1, keepdim=True), dim=1, eps=1e-6)
    edges = lambda t, f: torch.cat([f(t[:, :, 1:], t[:, :, :-1]).flatten(1), f(t[:, 1:], t[:, :-1]).flatten(1)], 1)
    for i in range(0, len(images), chunk):
        c, alpha = _views(images[i:i + chunk])
        n, nv = c.shape[:2]
        out["colour"].append(down(c.flatten(0, 1), 4).reshape(n, nv, -1))
        v = torch.einsum("nvchw,c->nvhw", c, LUMA)
        d = (dct @ down(v, 32) @ dct.T)[..., :8, :8].flatten(2)[..., 1:]  # 63 low frequencies, DC left out
        out["bits"].append(np.packbits((d > d.median(2, keepdim=True).values).numpy(), axis=2))
        out["coarse"].append(unit(down(v, 16).flatten(0, 1)).reshape(n, nv, -1))
        out["fine"].append(unit(edges(down(v, 48).flatten(0, 1), torch.sub)).reshape(n, nv, -1).half())  # gradients
        out["inner"].append(edges((down(alpha, 48)[:, 0] >= 254).float(), torch.mul).bool())  # both pixels opaque
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


def _closeness(fa: dict, fb: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pHash, fine and inner distances of row-aligned fingerprints, each in its best view."""
    ga, gb, m = fa["fine"].float(), fb["fine"].float(), fa["inner"] & fb["inner"]
    ia, ib = ga[:, -1] * m, gb[:, -1] * m  # colour alone inside both opaque areas: no alpha-dropped copy's rim
    inner = 1 - (ia * ib).sum(1) / (ia.norm(dim=1) * ib.norm(dim=1)).clamp(min=1e-9)
    return POPCOUNT[fa["bits"] ^ fb["bits"]].sum(-1).min(1), (1 - (ga * gb).sum(-1).amax(1)).numpy(), inner.numpy()


def _shrunk(images: np.ndarray, big, small, sides: np.ndarray) -> dict:
    """Fingerprints of images[big], each shrunk to the side of its images[small] and back: the detail a copy keeps."""
    return fingerprints(np.stack([resize(resize(images[i], max(8, round(sides[j]))), images.shape[1])
                                  for i, j in zip(big, small)]))


def near_pairs(fp: dict, images: np.ndarray, sides: np.ndarray, neighbours: int = NEIGHBOURS) -> list:
    """(i, j, pHash distance) of near copies among images (fingerprints fp; sides: each file's own sqrt(w * h))."""
    if (n := len(fp["bits"])) < 2:
        return []
    dist, idx = _neighbours(fp["coarse"], neighbours)
    crop_tol = min(CROP_MAX, CROP_SHARE * float(dist[:, 0].median()))
    i, j = np.repeat(np.arange(n), idx.shape[1]), idx.flatten().numpy()
    pair, first = np.unique(np.sort(np.stack([i, j], 1), 1), axis=0, return_index=True)  # each pair once
    a, b, coarse = pair[:, 0], pair[:, 1], dist.flatten().numpy()[first]
    colour = (fp["colour"][a] - fp["colour"][b]).abs().unflatten(2, (3, 16)).mean(2).amax(2).amin(1).numpy()
    gate = (colour <= COLOUR_MAX) & (coarse <= COARSE_GATE)  # not another colour scheme; close enough to check
    ham = POPCOUNT[fp["bits"][a] ^ fp["bits"][b]].sum(-1).min(1)
    fine, inner, rows = np.ones(len(a), np.float32), np.ones(len(a), np.float32), lambda k: {f: fp[f][k] for f in fp}
    close = np.flatnonzero(gate & (ham <= HAMMING_MAX))
    for s in range(0, len(close), 2048):  # in blocks: the fine vectors are large
        c = close[s:s + 2048]
        _, fine[c], inner[c] = _closeness(rows(a[c]), rows(b[c]))
    lo, hi = np.minimum(sides[a], sides[b]), np.maximum(sides[a], sides[b])
    low = np.flatnonzero(gate & (lo < SHRUNK * hi) & (lo < images.shape[1]))  # one much smaller than the other
    for s in range(0, len(low), 256):
        c = low[s:s + 256]
        big, small = np.where(sides[a[c]] > sides[b[c]], a[c], b[c]), np.where(sides[a[c]] > sides[b[c]], b[c], a[c])
        h2, f2, i2 = _closeness(_shrunk(images, big, small, sides), rows(small))
        ham[c], fine[c], inner[c] = np.minimum(ham[c], h2), np.minimum(fine[c], f2), np.minimum(inner[c], i2)
    flat = fp["inner"].all(1).numpy()  # opaque all over: inner compares an alpha-dropped copy with its original
    inner[flat[a] == flat[b]] = 1.0
    ok = (ham <= HAMMING_MAX) & gate & ((fine <= FINE_MAX) | (inner <= INNER_MAX) | (coarse <= crop_tol))
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
    sides = np.sqrt(np.prod(np.array(ds.sizes, np.float64).reshape(-1, 2), 1))[uniq]
    near = [(int(uniq[a]), int(uniq[b]), h) for a, b, h in near_pairs(fingerprints(ds.images[uniq]), ds.images[uniq],
                                                                      sides)]
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


def out_of_fold(ds, folds: int = 5, model: str = "linear", size: int | None = 32, epochs: int | None = None,
                seed: int = 0, progress: Progress | None = None, small: np.ndarray | None = None):
    """(probs (N, K), info): every image's probabilities from a fresh model (train.fit) on the other folds, at size."""
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
    probabilities): valid accuracy without leaked images. progress(done, total, message)."""
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
