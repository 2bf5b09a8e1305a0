"""Predictions and the numbers that explain them: accuracy, per-class, confusion, most confused, top losses."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .ideal import per_class_accuracy

EVAL_BS = 256


@torch.inference_mode()
def get_probs(model: nn.Module, images: np.ndarray, bs: int = EVAL_BS, device=None) -> torch.Tensor:
    """uint8 (N, H, W, C) -> softmax probabilities (N, K), in batches, in eval mode."""
    model.eval()
    dev = device or next(iter(model.buffers()), torch.zeros(0)).device
    out = [F.softmax(model(torch.from_numpy(np.ascontiguousarray(images[i:i + bs])).to(dev)).float(), 1).cpu()
           for i in range(0, len(images), bs)]
    return torch.cat(out) if out else torch.zeros(0, 0)


def confusion_matrix(preds: np.ndarray, targs: np.ndarray, n: int) -> np.ndarray:
    """(n, n) counts: rows actual, columns predicted."""
    return np.bincount(targs * n + preds, minlength=n * n).reshape(n, n)


def most_confused(cm: np.ndarray, vocab: list[str], min_count: int = 1) -> list[tuple[str, str, int]]:
    """(actual, predicted, count) off the diagonal, most frequent first."""
    pairs = [(vocab[i], vocab[j], int(cm[i, j])) for i in range(len(vocab)) for j in range(len(vocab))
             if i != j and cm[i, j] >= min_count]
    return sorted(pairs, key=lambda p: -p[2])


def top_losses(probs: torch.Tensor, targs: np.ndarray, k: int = 16) -> list[tuple[int, float]]:
    """(position, loss) of the k items with the highest cross-entropy loss."""
    if not len(targs):
        return []
    loss = F.nll_loss(probs.clamp(min=1e-12).log(), torch.as_tensor(targs), reduction="none")
    vals, idx = loss.topk(min(k, len(loss)))
    return list(zip(idx.tolist(), vals.tolist()))


def evaluate_probs(probs: torch.Tensor, targs: np.ndarray, vocab: list[str], items: list[str] | None = None,
                   idx: np.ndarray | None = None, k: int = 16) -> dict:
    """Everything the Evaluate tab and `logoapp eval` show, from probabilities and targets."""
    preds = probs.argmax(1).numpy() if len(probs) else np.zeros(0, np.int64)
    cm = confusion_matrix(preds, targs, len(vocab))
    tops = []
    for pos, loss in top_losses(probs, targs, k):
        i = int(idx[pos]) if idx is not None else pos
        tops.append({"index": i, "path": items[i] if items else None, "actual": vocab[targs[pos]],
                     "predicted": vocab[preds[pos]], "probability": float(probs[pos, preds[pos]]), "loss": float(loss)})
    return {"accuracy": float((preds == targs).mean()) if len(targs) else float("nan"),
            "per_class": per_class_accuracy(preds, targs, vocab), "confusion": {"labels": vocab, "matrix": cm.tolist()},
            "most_confused": most_confused(cm, vocab), "top_losses": tops, "preds": preds, "targs": targs,
            "probs": probs.numpy(), "idx": idx, "n": int(len(targs))}


def evaluate_model(model: nn.Module, ds, split: str = "valid", k: int = 16) -> dict:
    """Score a model (any rung, pixel similarity included) on one split of a dataset."""
    idx = ds.idx(split)
    if not len(idx) and split == "valid":
        idx = ds.idx("test")
    probs = get_probs(model, ds.images[idx]) if len(idx) else torch.zeros(0, ds.c)
    return evaluate_probs(probs, ds.labels[idx], ds.vocab, ds.items, idx, k)


def align_vocab(model_vocab: list[str], ds) -> tuple[np.ndarray, np.ndarray]:
    """For scoring a model on another folder: positions in ds whose class the model knows, and their model labels."""
    lookup = {c: i for i, c in enumerate(model_vocab)}
    keep = np.array([ds.vocab[y] in lookup for y in ds.labels], bool)
    return keep, np.array([lookup.get(ds.vocab[y], -1) for y in ds.labels], np.int64)
