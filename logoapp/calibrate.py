"""Calibration: temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"), expected
calibration error and reliability-diagram data.

Every logoapp model outputs logits (softmax is applied by evaluate and predict), so calibrating is one number T:
probabilities become softmax(logits / T). T is fitted on the validation split by minimising the negative
log-likelihood; it never changes which class is predicted, only how sure the model says it is. A model folder
stores it as `temperature` in model.json; models without it keep T = 1 (their old probabilities).

One departure from plain NLL: the fitted targets are Platt's (1999) out-of-sample targets, the true class at
(n + 1) / (n + 2) for n validation images rather than 1. Small sets are often all right, and then the plain NLL
keeps falling as T goes to 0 (a model claiming 100% on everything); with Platt's targets 40 right out of 40 is
worth about 97.6%, and on thousands of images the difference vanishes."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

N_BINS = 15                # reliability bins, as in Guo et al.
T_RANGE = (0.05, 20.0)     # searched temperatures; an optimum at an end means the validation set cannot pin T down
SEARCH_STEPS = 80          # golden-section steps on log T: the interval shrinks 0.618**80, far below float precision


@torch.inference_mode()
def get_logits(model: nn.Module, images: np.ndarray, bs: int = 256) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 logits (N, K), in batches, in eval mode, on the model's device; returned on CPU."""
    model.eval()
    dev = next(iter(model.buffers()), torch.zeros(0)).device
    out = [model(torch.from_numpy(np.ascontiguousarray(images[i:i + bs])).to(dev)).float().cpu()
           for i in range(0, len(images), bs)]
    return torch.cat(out) if out else torch.zeros(0, 0)


def split_idx(ds, split: str = "valid") -> np.ndarray:
    """Positions of the split, falling back to the test split when a dataset has no validation images."""
    idx = ds.idx(split)
    return ds.idx("test") if not len(idx) and split == "valid" else idx


def nll(logits: torch.Tensor, targs, temperature: float = 1.0, smoothing: float = 0.0) -> float:
    """Mean negative log-likelihood of softmax(logits / T) (against smoothed targets when smoothing > 0)."""
    if not len(logits):
        return float("nan")
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(np.asarray(targs), dtype=torch.long)
    return float(F.cross_entropy(z / temperature, y, label_smoothing=smoothing))


def platt_smoothing(n: int, k: int) -> float:
    """torch's label_smoothing that puts the true class at Platt's (n + 1) / (n + 2) among k classes."""
    return 1 / (n + 2) * k / (k - 1) if k > 1 else 0.0


def temperature_from_logits(logits: torch.Tensor, targs, lo: float = T_RANGE[0], hi: float = T_RANGE[1]) -> float:
    """The T in [lo, hi] minimising the NLL of softmax(logits / T) against Platt's targets: a golden-section search
    on log T. The loss is convex in 1/T (a log-sum-exp of functions linear in 1/T, minus a linear term), hence
    unimodal in log T: the search finds its minimum."""
    if not len(logits):
        return 1.0
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(np.asarray(targs), dtype=torch.long)
    s = platt_smoothing(*z.shape)
    f = lambda u: float(F.cross_entropy(z / math.exp(u), y, label_smoothing=s))  # noqa: E731
    a, b = math.log(lo), math.log(hi)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(SEARCH_STEPS):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    u = (a + b) / 2
    best = min((f(u), u), (f(math.log(lo)), math.log(lo)), (f(math.log(hi)), math.log(hi)))
    return float(math.exp(best[1]))


def fit_temperature(model: nn.Module, ds, split: str = "valid") -> float:
    """The temperature for a trained model (any rung), fitted on ds's validation split (1.0 when it has none)."""
    idx = split_idx(ds, split)
    if not len(idx):
        return 1.0
    return temperature_from_logits(get_logits(model, ds.images[idx]), ds.labels[idx])


def fit_calibration(model: nn.Module, ds, accept: float | None = None) -> tuple[dict, dict]:
    """Everything a freshly trained model's folder keeps about its calibration, in one call after training:
    (entries for model.json: temperature, a calibration summary, the unknown-input test; tensors for
    store.save(..., extra=)). Use: add, extra = fit_calibration(model, ds); store.save(model, {**meta, **add}, out,
    extra=extra); Predictor(model, {**meta, **add}, extra=extra) works the same before saving."""
    from . import ood
    idx = split_idx(ds)
    t, summary = 1.0, None
    if len(idx):  # fit_temperature's work, with the logits computed once for the fit and the report
        z = get_logits(model, ds.images[idx])
        t = temperature_from_logits(z, ds.labels[idx])
        r = report(z, ds.labels[idx], t)
        summary = {"n": r["n"], **{f"{k}_{w}": r[w][k] for w in ("before", "after") for k in ("nll", "ece")}}
    u = ood.fit_unknown(model, ds, ood.ACCEPT if accept is None else accept)
    return {"temperature": t, "calibration": summary, "unknown": u["meta"]}, u["tensors"]


def reliability(probs, targs, n_bins: int = N_BINS) -> dict:
    """Reliability-diagram data: confidence (the top probability) in n_bins equal-width bins (lo, hi]; per bin the
    mean confidence, the accuracy and the count (None for the confidence and accuracy of an empty bin: JSON-safe)."""
    p = np.asarray(probs, np.float64)
    t = np.asarray(targs)
    conf = p.max(1) if len(p) else np.zeros(0)
    correct = (p.argmax(1) == t) if len(p) else np.zeros(0, bool)
    edges = np.linspace(0, 1, n_bins + 1)
    b = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)  # (lo, hi]; a confidence of 0 joins bin 0
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, conf, n_bins) / count
        acc = np.bincount(b, correct.astype(np.float64), n_bins) / count
    some = count > 0
    return {"edges": edges.tolist(), "confidence": [float(v) if k else None for v, k in zip(mean_conf, some)],
            "accuracy": [float(v) if k else None for v, k in zip(acc, some)], "count": count.tolist(), "n": int(len(p))}


def ece(probs, targs, n_bins: int = N_BINS) -> float:
    """Expected calibration error: sum over bins of (bin share) * |accuracy - mean confidence|."""
    r = reliability(probs, targs, n_bins)
    if not r["n"]:
        return float("nan")
    return float(sum(c / r["n"] * abs(a - m) for c, a, m in zip(r["count"], r["accuracy"], r["confidence"]) if c))


def report(logits: torch.Tensor, targs, temperature: float, n_bins: int = N_BINS) -> dict:
    """Before and after scaling: NLL, ECE and reliability-diagram data, as plain data for the Evaluate tab and CLI.
    Log-probabilities do as well as logits (softmax ignores a shift per row): report(log(probs.clamp(1e-12)), ...)."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    out = {"temperature": float(temperature), "n": int(len(z))}
    for name, t in (("before", 1.0), ("after", temperature)):
        p = F.softmax(z / t, 1).numpy() if len(z) else np.zeros((0, 0))
        out[name] = {"nll": nll(z, targs, t), "ece": ece(p, targs, n_bins),
                     "reliability": reliability(p, targs, n_bins)}
    return out


def check_temperature(t) -> float:
    """A stored temperature as a float, or ValueError for anything a model.json should not hold."""
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 1e-3 <= t <= 1e3:
        raise ValueError(f"temperature must be a number between 0.001 and 1000, got {t!r}")
    return float(t)
