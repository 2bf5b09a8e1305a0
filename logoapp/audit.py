"""Dataset audit on the uint8 cache: duplicates and leakage, label issues by confident learning, class balance and
odd images, as plain data (dataclasses with to_json()). The fix log that acts on the findings is fixes.py.

Near-duplicates, in three steps. (1) Each image is seen as grey views: over black, over white and its colour
channels alone (a transparent logo then matches a copy flattened onto white or black, or saved with its alpha
dropped); per view a 16 px thumbnail (coarse) and the gradients of a 48 px one (fine), each centred and of unit
length, distances 1 - cosine (best view). The NEIGHBOURS nearest images by coarse distance are the candidates.
(2) A candidate must be within HAMMING_MAX of 63 bits of the image's pHash (signs of the 8x8 lowest DCT
frequencies of the 32 px thumbnail against their median; Zauner 2010). (3) Then either its fine distance is at
most FINE_MAX (the same picture resized, re-encoded or recoloured) or its coarse distance is at most CROP_SHARE of
the data's median nearest-neighbour distance (slightly cropped: where distinct images are far apart, as photos
are; 300 renders of one crest are not, so there only the fine check applies). Measured (benchmarks/audit.py, 3,000
crests): resized JPEG and recoloured copies within 0.006 fine, distinct crests of one club 0.026 or more apart."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

SPLITS = ("train", "valid", "test")
NEIGHBOURS = 10       # candidates per image: more than any realistic copy count, few enough to check cheaply
HAMMING_MAX = 10      # of 63 pHash bits: copies of crests are within 6, unrelated pictures ~30 apart
FINE_MAX = 0.015      # 1 - cosine of 48 px gradient maps; see the module docstring for the measured margins
COLOUR_MAX = 40.0     # colour difference (0-255) of 4 x 4 thumbnails, worst cell: slight recolouring <= 27, red
                      # for green 100+
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
    63 bits) along the pairs that joined the group; `indices`: positions in the dataset."""
    paths: list[str]
    classes: list[str]
    splits: list[str]
    exact: bool
    distance: int
    indices: list[int]

    @property
    def cross_split(self) -> bool:
        return len(set(self.splits)) > 1

    @property
    def conflict(self) -> bool:
        """Copies filed under different classes: a sure label conflict."""
        return len(set(self.classes)) > 1

    def to_json(self) -> dict:
        return {**asdict(self), "cross_split": self.cross_split, "conflict": self.conflict}


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
        return {"root": self.root, "n_images": self.n_images, "duplicates": [g.to_json() for g in self.duplicates],
                "cross_split": self.cross_split, "conflicts": sum(g.conflict for g in self.duplicates),
                "label_issues": [asdict(s) for s in self.label_issues], "labels": self.labels,
                "imbalance": self.imbalance, "odd": [asdict(o) for o in self.odd], "leakage": self.leakage,
                "seconds": round(self.seconds, 2), "timings": {k: round(v, 2) for k, v in self.timings.items()}}


# ---- fingerprints and duplicates ---------------------------------------------------------------------------------

def _dct(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix (n, n)."""
    k, i = torch.arange(n)[:, None].double(), torch.arange(n)[None].double()
    m = torch.cos(torch.pi * (2 * i + 1) * k / (2 * n)) * (2 / n) ** 0.5
    m[0] /= 2 ** 0.5
    return m.float()


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = x.flatten(1)
    x = x - x.mean(1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-6)


def _views(x: torch.Tensor, size: int = 64) -> torch.Tensor:
    """uint8 (n, H, W, C) -> colour views (n, V, 3, size, size) in 0-255: when C is 4, over black, over white, and
    the colour channels alone (what a copy saved with its transparency dropped shows). Shrunk first, on the uint8
    grid (torch's SIMD kernel: 10x cheaper than in float), then composited."""
    p = F.interpolate(x.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", antialias=True,
                      align_corners=False).float()
    if x.shape[-1] != 4:
        return p[:, None]
    a = p[:, 3:] / 255
    return torch.stack([p[:, :3] * a, p[:, :3] * a + 255 * (1 - a), p[:, :3]], 1)


@torch.inference_mode()
def fingerprints(images: np.ndarray, chunk: int = 256) -> dict[str, np.ndarray | torch.Tensor]:
    """Per image and view: 'bits' (n, V, 8) uint8 pHash, 'coarse' (n, V, 256) and 'fine' (n, V, 4512) unit vectors
    of the grey image, and 'colour' (n, V, 48), a 4 x 4 colour thumbnail."""
    dct, out = _dct(32), {"bits": [], "coarse": [], "fine": [], "colour": []}
    down = lambda g, s: F.interpolate(g, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    for i in range(0, len(images), chunk):
        c = _views(torch.from_numpy(images[i:i + chunk]))
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


def _exact_keys(images: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(images[i].tobytes(), digest_size=16).digest() for i in range(len(images))]


@torch.inference_mode()
def _neighbours(coarse: torch.Tensor, k: int, block: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k nearest other rows by coarse distance (1 - best cosine over views): (n, k) distances, indices."""
    n, k = len(coarse), min(k, len(coarse) - 1)
    dist, idx = [], []
    for i in range(0, n, block):
        sim = torch.stack([coarse[i:i + block, v] @ coarse[:, v].T for v in range(coarse.shape[1])]).amax(0)
        sim[torch.arange(len(sim)), torch.arange(i, i + len(sim))] = -2
        s, j = sim.topk(k, 1)
        dist.append(1 - s)
        idx.append(j)
    return torch.cat(dist), torch.cat(idx)


def near_pairs(fp: dict, neighbours: int = NEIGHBOURS) -> list[tuple[int, int, int]]:
    """(i, j, Hamming distance) of near-duplicate pairs among the fingerprinted images (rows of fp)."""
    n = len(fp["bits"])
    if n < 2:
        return []
    dist, idx = _neighbours(fp["coarse"], neighbours)
    crop_tol = min(CROP_MAX, CROP_SHARE * float(dist[:, 0].median()))
    i = torch.arange(n)[:, None].expand_as(idx).flatten()
    j, d = idx.flatten(), dist.flatten()
    keep = i != j
    a, b = torch.minimum(i, j)[keep], torch.maximum(i, j)[keep]
    pair, first = np.unique(np.stack([a.numpy(), b.numpy()], 1), axis=0, return_index=True)
    a, b, coarse = pair[:, 0], pair[:, 1], d[keep].numpy()[first]
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
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(x) for x in range(n)]


def duplicates(ds) -> list[Group]:
    """Groups of exact and near copies, largest first; each lists its files, classes and splits."""
    keys = _exact_keys(ds.images)
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
    va, in_train = ds.idx("valid"), set()
    for g in groups:
        if "train" in g.splits:
            in_train.update(i for i, s in zip(g.indices, g.splits) if s != "train")
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
    """Stratified fold number (0..k-1) per item: each class dealt round-robin over the folds in a seeded order."""
    rng, out = np.random.default_rng(seed), np.zeros(len(labels), np.int64)
    start = 0
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        out[idx] = (np.arange(len(idx)) + start) % k  # classes start where the last left off: even fold sizes
        start += len(idx)
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
    import dataclasses
    import warnings

    from .evaluate import get_probs
    from .train import TrainConfig, fit
    t0 = time.perf_counter()
    n = len(ds.items)
    if folds < 2 or n < folds:
        raise ValueError(f"need at least 2 folds and as many images as folds, got {folds} folds for {n} images")
    small = dataclasses.replace(ds, images=shrink(ds.images, size) if small is None else small)
    n_train = n - n // folds
    bs = min(FAST_BS, max(16, n_train // 16))  # small sets: smaller batches, and epochs enough for MIN_STEPS steps
    epochs = epochs or max(FAST_EPOCHS, -(-MIN_STEPS // max(1, n_train // bs)))
    fid, probs, seconds = fold_ids(ds.labels, folds, seed), np.zeros((n, ds.c), np.float32), []
    for f in range(folds):
        if progress:
            progress(f, folds, f"label check: training fold {f + 1} of {folds}")
        t = time.perf_counter()
        held = fid == f
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            done = fit(dataclasses.replace(small, split=held.astype(np.int8)),
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
    n, k = probs.shape
    counts = np.bincount(labels, minlength=k)
    t = np.array([probs[labels == j, j].mean() if counts[j] else 1.0 for j in range(k)])
    above = probs >= t[None] - 1e-9
    sure = above.any(1)
    true = np.where(above, probs, -1).argmax(1)  # the most likely class among those over their threshold
    joint = np.zeros((k, k), np.int64)
    np.add.at(joint, (labels[sure], true[sure]), 1)
    rows = joint.sum(1, keepdims=True)
    q = joint / np.maximum(rows, 1) * counts[:, None]  # calibrated: each row sums to its class's count
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
    n = len(ds.labels)
    given = probs[np.arange(n), ds.labels]
    other = probs.copy()
    other[np.arange(n), ds.labels] = -1
    suggested = other.argmax(1)
    idx = np.flatnonzero(cl["flagged"])
    idx = idx[np.lexsort((-other.max(1)[idx], given[idx]))]
    return [Suspect(ds.items[i], ds.vocab[ds.labels[i]], ds.vocab[suggested[i]], round(float(1 - given[i]), 4),
                    bool(cl["confident"][i]), int(i)) for i in idx]


# ---- class balance and odd images -----------------------------------------------------------------------------

def imbalance(ds) -> dict:
    counts = {c: int((ds.labels == k).sum()) for k, c in enumerate(ds.vocab)}
    big, small = max(counts, key=counts.get), min(counts, key=counts.get)
    return {"counts": counts, "largest": big, "smallest": small,
            "ratio": round(counts[big] / max(1, counts[small]), 3)}


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
    n, reasons = len(ds.items), [[] for _ in range(len(ds.items))]
    x = torch.from_numpy(small).float()
    a = x[..., 3:] if x.shape[-1] == 4 else torch.full(x.shape[:-1] + (1,), 255.0)
    seen = (a[..., 0] >= 16).float().mean((1, 2))
    std = torch.cat([x[..., :3] * a / 255, a], -1).flatten(1, 2).std(1).amax(1)  # premultiplied colour and alpha
    sizes = np.array(ds.sizes, np.float64).reshape(-1, 2)
    side = sizes.max(1)
    med = float(np.median(side)) if n else 0.0
    z = _far_scores(small, ds.labels, ds.c) if n >= 10 else np.zeros(n)
    for i, (wd, ht) in enumerate(sizes):
        if seen[i] < TRANSPARENT:
            reasons[i].append(f"almost fully transparent ({seen[i]:.1%} visible)")
        elif std[i] < BLANK_STD:
            reasons[i].append(f"near-blank (pixel values spread {std[i]:.1f} of 255)")
        if max(wd, ht) >= ASPECT_MAX * max(1.0, min(wd, ht)):
            reasons[i].append(f"extreme aspect ratio ({int(wd)}x{int(ht)})")
        if side[i] * SIZE_FACTOR <= med or side[i] >= 2 * SIZE_FACTOR * med:
            reasons[i].append(f"extreme size ({int(wd)}x{int(ht)}; most are about {int(med)} px)")
        if z[i] > FAR_RATIO:
            reasons[i].append(f"far from every class in pixel space ({z[i]:.1f}x their usual distance)")
    return [Odd(ds.items[i], ds.vocab[ds.labels[i]], SPLITS[ds.split[i]], r, i) for i, r in enumerate(reasons) if r]


# ---- the whole audit -------------------------------------------------------------------------------------------

def audit(ds, folds: int = 5, model: str = "linear", size: int | None = 32, epochs: int | None = None,
          seed: int = 0, trained=None, progress: Progress | None = None) -> AuditReport:
    """Everything above on one dataset. folds=0 skips the label check (no training). model, size and epochs choose
    the per-fold model (a fast rung: see FAST_EPOCHS); trained, a model or validation probabilities, adds the
    validation accuracy without leaked images to the leakage figures. progress(done, total, message)."""
    t0, timings, total = time.perf_counter(), {}, 3 + max(folds, 0)

    def step(done: int, msg: str, name: str | None = None) -> None:
        if name:
            timings[name] = time.perf_counter() - t0 - sum(timings.values())
        if progress:
            progress(done, total, msg)
    step(0, "looking for duplicates")
    groups = duplicates(ds)
    step(1, "shrinking images", "duplicates")
    small = shrink(ds.images, 32)
    probs, suspects, labels = None, [], {"folds": 0}
    if folds:
        probs, labels = out_of_fold(ds, folds, model, size, epochs, seed, lambda d, _, msg: step(1 + d, msg),
                                    small if size == 32 else None)
        cl = confident_learning(probs, ds.labels)
        suspects = label_issues(ds, probs, cl)
        labels.update(n_estimated=cl["n_estimated"], n_flagged=len(suspects),
                      thresholds={c: round(float(v), 4) for c, v in zip(ds.vocab, cl["thresholds"])})
    step(1 + max(folds, 0), "looking for odd images", "label_issues")
    odd = odd_images(ds, small)
    is_model = isinstance(trained, torch.nn.Module)
    leak = leakage(ds, groups, probs=None if is_model else trained, model=trained if is_model else None)
    step(total, "done", "odd")
    return AuditReport(ds.root, len(ds.items), groups, suspects, labels, imbalance(ds), odd, leak,
                       time.perf_counter() - t0, timings, probs)
