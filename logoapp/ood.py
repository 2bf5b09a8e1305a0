"""Unknown inputs: how far an image lies from the training data, and a threshold that says "none of these classes".

Two published scores, higher meaning further from the training data:
- knn (cnn, resnet, mlp): the distance from an image's penultimate features (the input of the last linear layer:
  pooled convolutional features, or the mlp's hidden layer), L2-normalised, to its k-th nearest neighbour among
  a small stored sample of training features (up to 64 per class, float16): Sun et al. 2022, "Out-of-Distribution
  Detection with Deep Nearest Neighbors".
- energy (linear, pixel): -logsumexp(logits), Liu et al. 2020, "Energy-based Out-of-distribution Detection"; for the
  pixel-similarity model it is a soft minimum of the distances to the ideal images. Those two rungs have no
  learned features to compare: the linear model's penultimate layer is the image itself.

The threshold is the `accept` quantile (default 95%) of the scores of the validation images, so that share of
them is accepted. fit_unknown returns what a model folder keeps: {"meta": ... for model.json["unknown"],
"tensors": {"unknown.feats": ...}}, stored inside the weights file by store.save(..., extra=tensors) and so
covered by its checksum and carried by model zips. Models without an "unknown" entry never answer unknown."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PER_CLASS = 64      # stored training features per class: enough for a stable k-th neighbour, ~32 KB per class at 256-d
K = 1               # the neighbour whose distance is the score; with a 64-per-class sample Sun et al.'s k scales to ~1
ACCEPT = 0.95       # share of validation images accepted
FEATS = "unknown.feats"
METHODS = ("knn", "energy")


def has_features(model: nn.Module) -> bool:
    """Whether a model has learned penultimate features: a Net whose body has a convolution or a hidden layer."""
    from .models import Net
    if not isinstance(model, Net):
        return False
    mods = list(model.body.modules())
    return any(isinstance(m, nn.Conv2d) for m in mods) or sum(isinstance(m, nn.Linear) for m in mods) > 1


def forward(fast: nn.Module, x: torch.Tensor, features: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits, penultimate features or None) in one pass of an inference copy (predict.inference_copy): a FlatNet's
    steps but the last are the features, the last step (the final linear layer) makes the logits."""
    steps = getattr(fast, "steps", None)
    if not features or not steps:
        return fast(x), None
    prep = fast.net.prep
    h = prep.norm(prep.resize(x))
    for f in steps[:-1]:
        h = f(h)
    return steps[-1](h), h.flatten(1)


def energy(logits: torch.Tensor) -> torch.Tensor:
    """Liu et al.'s energy at temperature 1; higher is further from the training data."""
    return -torch.logsumexp(logits.float(), 1)


def normalise(feats: torch.Tensor) -> torch.Tensor:
    return F.normalize(feats.float(), dim=1, eps=1e-12)


def knn_distance(feats: torch.Tensor, bank_t: torch.Tensor, k: int = K, exclude_self: bool = False) -> torch.Tensor:
    """Euclidean distance between L2-normalised features and their k-th nearest neighbour among the normalised
    stored features, given as columns (bank_t: (D, M)): sqrt(2 - 2 cos), 0 for a copy of a stored feature, sqrt(2)
    for an orthogonal (or all-zero) one. The features are divided by their norms after the product (same ranking,
    fewer passes: this runs on every prediction)."""
    feats = feats.float()
    sim = feats @ bank_t
    k = min(k + exclude_self, bank_t.shape[1])
    kth = sim.max(1).values if k == 1 else sim.topk(k, 1).values[:, -1]
    cos = kth / torch.linalg.vector_norm(feats, dim=1).clamp_(min=1e-12)
    return (2 - 2 * cos).clamp_(min=0).sqrt_()


@torch.inference_mode()
def _outputs(fast: nn.Module, images: np.ndarray, features: bool, bs: int = 256):
    """Logits and features of uint8 images, in batches, on CPU."""
    dev = next(iter(fast.buffers()), torch.zeros(0)).device
    logits, feats = [], []
    for i in range(0, len(images), bs):
        z, h = forward(fast, torch.from_numpy(np.ascontiguousarray(images[i:i + bs])).to(dev), features)
        logits.append(z.float().cpu())
        if h is not None:
            feats.append(h.float().cpu())
    return torch.cat(logits), (torch.cat(feats) if feats else None)


def sample_train(ds, per_class: int = PER_CLASS, seed: int = 0) -> np.ndarray:
    """Up to per_class training positions of each class, drawn by seed, in dataset order."""
    rng = np.random.default_rng(seed)
    tr = ds.idx("train")
    pick = []
    for k in range(ds.c):
        idx = tr[ds.labels[tr] == k]
        pick.append(rng.choice(idx, per_class, replace=False) if len(idx) > per_class else idx)
    return np.sort(np.concatenate(pick)) if pick else tr


def fit_unknown(model: nn.Module, ds, accept: float = ACCEPT, per_class: int = PER_CLASS, k: int = K,
                seed: int = 0) -> dict:
    """For a trained model (any rung) on ds: {"meta": {...} for model.json["unknown"], "tensors": {name: tensor}}
    for store.save(model, meta, out, extra=tensors) and Predictor(model, meta, extra=tensors). The threshold accepts
    `accept` of the validation images (of the test split when there is none; of the stored training sample,
    each left out of its own comparison, when there is neither)."""
    from .calibrate import split_idx
    from .predict import inference_copy
    if not 0 < accept <= 1:
        raise ValueError(f"accept must be in (0, 1], got {accept}")
    method = "knn" if has_features(model) else "energy"
    fast = inference_copy(model)
    val = split_idx(ds)
    if method == "energy":
        idx = val if len(val) else ds.idx("train")
        scores = energy(_outputs(fast, ds.images[idx], False)[0]) if len(idx) else torch.zeros(0)
        tensors, extra = {}, {}
    else:
        pick = sample_train(ds, per_class, seed)
        _, tf = _outputs(fast, ds.images[pick], True)
        stored = normalise(tf).half()
        bank = normalise(stored.float())  # scored as predict will score: from the stored float16 values
        if len(val):
            scores = knn_distance(_outputs(fast, ds.images[val], True)[1], bank.T, k)
        else:
            scores = knn_distance(tf, bank.T, k, exclude_self=True)
        tensors = {FEATS: stored.contiguous()}
        extra = {"k": int(k), "n_features": int(bank.shape[0]), "dim": int(bank.shape[1])}
    s = scores.double().numpy()
    thr = float(np.quantile(s, accept)) if len(s) else math.inf
    meta = {"method": method, "threshold": thr if math.isfinite(thr) else None, "accept": float(accept), **extra,
            "n_fit": int(len(s)), "accepted": float((s <= thr).mean()) if len(s) else None}
    return {"meta": meta, "tensors": tensors}


def check_meta(u) -> dict:
    """A model.json "unknown" entry, checked (ValueError for anything malformed or hostile)."""
    if not isinstance(u, dict) or u.get("method") not in METHODS:
        raise ValueError(f"unknown-input entry must name a method ({' or '.join(METHODS)})")
    t = u.get("threshold")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t)):
        raise ValueError("unknown-input threshold must be a finite number or null")
    if u["method"] == "knn":
        for key in ("k", "n_features", "dim"):
            v = u.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"unknown-input {key} must be a positive whole number")
    return u


class Detector:
    """A loaded unknown-input test: score() per image, unknown when the score is above the threshold."""

    def __init__(self, method: str, threshold: float | None, k: int = K, bank: torch.Tensor | None = None):
        self.method, self.k = method, k
        self.bank_t = None if bank is None else bank.T.contiguous()  # (D, M): one plain matrix product per batch
        self.threshold = math.inf if threshold is None else float(threshold)

    @classmethod
    def from_meta(cls, meta: dict, extra: dict | None = None, device=None) -> "Detector | None":
        """The detector a model's metadata and stored tensors describe; None for models saved without one."""
        u = meta.get("unknown")
        if u is None:
            return None
        check_meta(u)
        if u["method"] == "energy":
            return cls("energy", u.get("threshold"))
        bank = (extra or {}).get(FEATS)
        if not isinstance(bank, torch.Tensor) or tuple(bank.shape) != (u["n_features"], u["dim"]):
            raise ValueError(f"this model's unknown-input test needs its stored features ({FEATS} of shape "
                             f"{u['n_features']}x{u['dim']}), which are missing or of another shape")
        return cls("knn", u.get("threshold"), u["k"], normalise(bank.float()).to(device or "cpu"))

    @property
    def needs_features(self) -> bool:
        return self.method == "knn"

    def score(self, logits: torch.Tensor, feats: torch.Tensor | None) -> torch.Tensor:
        """(N,) scores, higher is further from the training data."""
        if self.method == "energy":
            return energy(logits)
        return knn_distance(feats, self.bank_t, self.k)
