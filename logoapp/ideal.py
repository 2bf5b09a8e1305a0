"""The first rung: each class's pixel-mean 'ideal' image and the nearest-ideal (pixel-similarity) classifier."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

DISTANCES = ("l1", "rmse")
CHUNK = 512          # images per block when summing class means
BLOCK = 2 ** 20      # floats per broadcast difference block (4 MB): stays in cache, bounds memory for any class count


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float32 in [0, 1]."""
    x = torch.as_tensor(images)
    return x.permute(0, 3, 1, 2).float().div_(255)


def class_means(images: np.ndarray, labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """The 'ideal' image of each class: (K, C, H, W) float in [0, 1], summed in uint8-sized blocks."""
    n, h, w, c = images.shape
    sums = torch.zeros(n_classes, h * w * c, dtype=torch.float64)
    counts = torch.zeros(n_classes, dtype=torch.float64)
    labels = torch.as_tensor(labels)
    for i in range(0, n, CHUNK):
        xb = torch.as_tensor(images[i:i + CHUNK]).reshape(-1, h * w * c).float()
        yb = labels[i:i + CHUNK]
        block = torch.zeros(n_classes, h * w * c).index_add_(0, yb, xb)  # exact: at most 512 * 255 < 2**24
        sums += block
        counts += torch.bincount(yb, minlength=n_classes).double()
    means = sums / counts.clamp(min=1)[:, None] / 255
    return means.reshape(n_classes, h, w, c).permute(0, 3, 1, 2).float().contiguous()


def distances(x: torch.Tensor, means: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """(N, C, H, W) vs (K, C, H, W) -> (N, K): mean absolute (l1) or root-mean-square (rmse) difference."""
    if kind not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {kind!r}")
    a, b = x.flatten(1), means.flatten(1).to(x)
    step = max(1, BLOCK // max(1, b.numel()))
    out = []
    for ab in a.split(step):
        d = ab[:, None, :] - b[None, :, :]  # broadcasting, the book's way: (n, K, pixels)
        out.append(d.abs().mean(-1) if kind == "l1" else d.pow(2).mean(-1).sqrt())
    return torch.cat(out) if out else a.new_zeros(0, len(b))


class PixelSimilarity(nn.Module):
    """Nearest ideal image as a model: logits are negative distances, so it fits every model interface."""

    def __init__(self, means: torch.Tensor, kind: str = "l1", temperature: float = 0.02):
        super().__init__()
        self.register_buffer("means", means)
        self.kind, self.temperature = kind, temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: uint8 (N, H, W, C), or float (N, C, H, W) in [0, 1] -> (N, K) logits."""
        if x.dtype == torch.uint8:
            x = to_float(x)
        return -distances(x, self.means, self.kind) / self.temperature


def fit(ds, kind: str = "l1") -> PixelSimilarity:
    """Class means over the training split."""
    tr = ds.idx("train")
    return PixelSimilarity(class_means(ds.images[tr], ds.labels[tr], ds.c), kind)


@torch.inference_mode()
def predict_idx(model: PixelSimilarity, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images -> (predicted class, distances (N, K))."""
    d = [distances(to_float(images[i:i + CHUNK]), model.means, model.kind) for i in range(0, len(images), CHUNK)]
    d = torch.cat(d) if d else torch.zeros(0, len(model.means))
    return d.argmin(1), d


def per_class_accuracy(preds: np.ndarray, targs: np.ndarray, vocab: list[str]) -> dict[str, float]:
    """label -> fraction of that class's items predicted correctly (NaN-free: classes without items are left out)."""
    out = {}
    for k, name in enumerate(vocab):
        m = targs == k
        if m.any():
            out[name] = float((preds[m] == k).mean())
    return out


def baseline(ds, kind: str = "l1", split: str = "valid") -> dict:
    """Fit on train, score on valid: overall and per-class accuracy, plus the distances for plots."""
    model = fit(ds, kind)
    idx = ds.idx(split)
    preds, dists = predict_idx(model, ds.images[idx])
    preds, targs = preds.numpy(), ds.labels[idx]
    return {
        "distance": kind, "accuracy": float((preds == targs).mean()) if len(idx) else float("nan"),
        "per_class": per_class_accuracy(preds, targs, ds.vocab), "n_train": int(len(ds.idx("train"))),
        "n_valid": int(len(idx)), "vocab": ds.vocab, "preds": preds, "targs": targs, "distances": dists.numpy(),
        "model": model,
    }


def grey(means: torch.Tensor) -> torch.Tensor:
    """The channel-averaged 'weird average' view of ideal images: (K, H, W) over the colour channels."""
    return means[:, :3].mean(1)
