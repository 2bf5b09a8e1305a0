"""The first rung: each class's pixel-mean 'ideal' image and the nearest-ideal (pixel-similarity) classifier."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .evaluate import Evaluation, split_idx

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


def baseline(ds, kind: str = "l1", split: str = "valid") -> dict:
    """Fit on train, score on a split (valid, else test): its Evaluation, plus the distances of the same images
    to each ideal (for the histograms)."""
    model = fit(ds, kind)
    idx = split_idx(ds, split)
    _, dists = predict_idx(model, ds.images[idx])
    probs = torch.softmax(-dists / model.temperature, 1)  # what the model itself outputs, without a second pass
    ev = Evaluation(ds.vocab, probs.numpy(), ds.labels[idx], idx, ds.items, split)
    return {
        "distance": kind, "accuracy": ev.accuracy, "per_class": ev.per_class, "n_train": int(len(ds.idx("train"))),
        "n_valid": ev.n, "vocab": ds.vocab, "preds": ev.preds, "targs": ev.targs, "distances": dists.numpy(),
        "model": model, "evaluation": ev,
    }


def grey(means: torch.Tensor) -> torch.Tensor:
    """The channel-averaged 'weird average' view of ideal images: (K, H, W) over the colour channels."""
    return means[:, :3].mean(1)
