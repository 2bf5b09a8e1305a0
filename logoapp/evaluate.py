"""Scoring a model: the one place that turns predictions into accuracy, per-class figures, a confusion matrix, the
most confused pairs and the top losses (an Evaluation, in the spirit of fastai's ClassificationInterpretation)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import ondisk
from .data import Split

EVAL_BS = 256
EVAL_VALUES = 2**25  # pixel values per evaluation batch at most (128 MB as float): 256 px RGBA -> 128
TOP_LOSSES = 16    # top losses shown by the Evaluate tab and `logoapp eval`


@torch.inference_mode()
def get_probs(model: nn.Module, images: np.ndarray, bs: int = EVAL_BS, device=None,
              temperature: float = 1.0) -> torch.Tensor:
    """uint8 (N, H, W, C) -> softmax probabilities (N, K), in batches, in eval mode; temperature: the model's stored
    calibration (calibrate.py), softmax(logits / T), which changes how sure it is but never which class wins."""
    model.eval()
    bs = min(bs, max(1, EVAL_VALUES // max(1, int(np.prod(images.shape[1:])))))  # big images: smaller batches
    dev = device or next(iter(model.buffers()), torch.zeros(0)).device
    out = [F.softmax(model(torch.from_numpy(np.ascontiguousarray(images[i:i + bs])).to(dev)).float() / temperature,
                     1).cpu() for i in range(0, len(images), bs)]
    return torch.cat(out) if out else torch.zeros(0, 0)


def confusion_matrix(preds: np.ndarray, targs: np.ndarray, n: int) -> np.ndarray:
    """(n, n) counts: rows actual, columns predicted."""
    return np.bincount(targs * n + preds, minlength=n * n).reshape(n, n)


def per_class_accuracy(preds: np.ndarray, targs: np.ndarray, vocab: list[str]) -> dict[str, float]:
    """label -> fraction of that class's items predicted correctly (NaN-free: classes without items are left out)."""
    out = {}
    for k, name in enumerate(vocab):
        m = targs == k
        if m.any():
            out[name] = float((preds[m] == k).mean())
    return out


def class_metrics(cm: np.ndarray, vocab: list[str]) -> dict:
    """From a confusion matrix (rows actual, columns predicted): per-class precision, recall, f1 and support (dicts
    keyed by class name, for the classes with at least one item, like per_class_accuracy), and their macro_f1 and
    balanced_accuracy (the mean recall). A class never predicted has precision 0 (scikit-learn's zero_division=0);
    the averages are NaN when there are no items."""
    cm = np.asarray(cm, np.float64)
    tp, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = np.flatnonzero(support > 0)
    out = {name: {vocab[k]: float(v[k]) for k in present}
           for name, v in (("precision", precision), ("recall", recall), ("f1", f1))}
    out["support"] = {vocab[k]: int(support[k]) for k in present}
    out["macro_f1"] = float(f1[present].mean()) if len(present) else float("nan")
    out["balanced_accuracy"] = float(recall[present].mean()) if len(present) else float("nan")
    return out


def most_confused(cm: np.ndarray, vocab: list[str], min_count: int = 1) -> list[tuple[str, str, int]]:
    """(actual, predicted, count) off the diagonal, most frequent first."""
    pairs = [(vocab[i], vocab[j], int(cm[i, j])) for i in range(len(vocab)) for j in range(len(vocab))
             if i != j and cm[i, j] >= min_count]
    return sorted(pairs, key=lambda p: -p[2])


def top_losses(probs: torch.Tensor | np.ndarray, targs: np.ndarray, k: int = TOP_LOSSES) -> list[tuple[int, float]]:
    """(position, loss) of the k items with the highest cross-entropy loss."""
    if not len(targs):
        return []
    probs = torch.as_tensor(probs)
    loss = F.nll_loss(probs.clamp(min=1e-12).log(), torch.as_tensor(targs), reduction="none")
    vals, idx = loss.topk(min(k, len(loss)))
    return list(zip(idx.tolist(), vals.tolist()))


@dataclass(eq=False)
class Evaluation:
    """A model's predictions on one split and the figures that explain them.

    probs (N, K), targs (N,) and idx (N,: the items' positions in the dataset) are given; preds, accuracy, per_class,
    confusion (K, K: rows actual, columns predicted) and the per-class precision, recall, f1, support with their
    macro_f1 and balanced_accuracy (class_metrics) follow from them."""
    vocab: list[str]
    probs: np.ndarray = field(repr=False)
    targs: np.ndarray = field(repr=False)
    idx: np.ndarray = field(repr=False)
    items: list[str] | None = field(default=None, repr=False)  # the dataset's file paths (idx picks), for top_losses
    split: str = "valid"
    preds: np.ndarray = field(init=False, repr=False)
    accuracy: float = field(init=False)
    per_class: dict[str, float] = field(init=False)
    confusion: np.ndarray = field(init=False, repr=False)
    precision: dict[str, float] = field(init=False, repr=False)
    recall: dict[str, float] = field(init=False, repr=False)
    f1: dict[str, float] = field(init=False, repr=False)
    support: dict[str, int] = field(init=False, repr=False)
    macro_f1: float = field(init=False)
    balanced_accuracy: float = field(init=False)

    def __post_init__(self):
        self.probs = np.asarray(self.probs, np.float32).reshape(len(self.targs), len(self.vocab))
        self.targs, self.idx = np.asarray(self.targs, np.int64), np.asarray(self.idx, np.int64)
        self.preds = self.probs.argmax(1) if len(self.probs) else np.zeros(0, np.int64)
        self.accuracy = float((self.preds == self.targs).mean()) if len(self.targs) else float("nan")
        self.per_class = per_class_accuracy(self.preds, self.targs, self.vocab)
        self.confusion = confusion_matrix(self.preds, self.targs, len(self.vocab))
        for k, v in class_metrics(self.confusion, self.vocab).items():
            setattr(self, k, v)

    @property
    def n(self) -> int:
        return len(self.targs)

    def most_confused(self, min_count: int = 1) -> list[tuple[str, str, int]]:
        """(actual, predicted, count) off the confusion matrix's diagonal, most frequent first."""
        return most_confused(self.confusion, self.vocab, min_count)

    def top_losses(self, k: int = TOP_LOSSES) -> list[dict]:
        """The k items the model was most confidently wrong (or least sure) about, highest loss first."""
        out = []
        for pos, loss in top_losses(self.probs, self.targs, k):
            i, p = int(self.idx[pos]), int(self.preds[pos])
            out.append({"index": i, "path": self.items[i] if self.items else None,
                        "actual": self.vocab[self.targs[pos]], "predicted": self.vocab[p],
                        "probability": float(self.probs[pos, p]), "loss": float(loss)})
        return out

    def cell(self, actual: int, predicted: int) -> np.ndarray:
        """Positions (into probs, targs, idx) of the items of class `actual` predicted as `predicted`."""
        return np.flatnonzero((self.targs == actual) & (self.preds == predicted))

    def to_dict(self, k: int = TOP_LOSSES, n_confused: int | None = None) -> dict:
        """The figures as plain data (what `logoapp eval --json` prints)."""
        return {"split": self.split, "n": self.n, "accuracy": self.accuracy, "per_class": self.per_class,
                "precision": self.precision, "recall": self.recall, "f1": self.f1, "support": self.support,
                "macro_f1": self.macro_f1, "balanced_accuracy": self.balanced_accuracy,
                "confusion": {"labels": self.vocab, "matrix": self.confusion.tolist()},
                "most_confused": self.most_confused()[:n_confused], "top_losses": self.top_losses(k)}


def split_idx(ds, split: str | Split) -> np.ndarray:
    """Positions of a split ('all': every item); 'valid' falls back to 'test' when there is no validation split."""
    if split == "all":
        return np.arange(len(ds.items))
    idx = ds.idx(split)
    if not len(idx) and Split.of(split) == Split.VALID:
        idx = ds.idx(Split.TEST)
    return idx


def align_vocab(model_vocab: list[str], ds) -> tuple[np.ndarray, np.ndarray]:
    """For scoring a model on another folder: positions in ds whose class the model knows, and their model labels."""
    lookup = {c: i for i, c in enumerate(model_vocab)}
    keep = np.array([ds.vocab[y] in lookup for y in ds.labels], bool)
    return keep, np.array([lookup.get(ds.vocab[y], -1) for y in ds.labels], np.int64)


def evaluate(model: nn.Module, ds, split: str | Split = "valid", vocab: list[str] | None = None,
             channels: int | None = None, temperature: float = 1.0) -> Evaluation:
    """Score a model (any rung, pixel similarity included) on one split of a dataset ('all': every image).

    vocab: the model's classes when they are not the data's (images of classes it does not know are left out);
    channels: the model's input channels when they are not the data's (3 or 4); temperature: the model's stored
    calibration (meta.get("temperature", 1.0), Predictor.temperature): the probabilities and losses it reports."""
    from .images import to_channels
    idx = split_idx(ds, split)
    vocab = list(ds.vocab if vocab is None else vocab)
    targs = ds.labels[idx]
    if vocab != list(ds.vocab):
        keep, labels = align_vocab(vocab, ds)
        idx = idx[keep[idx]]
        targs = labels[idx]
    images = ondisk.rows(ds.images, idx)  # a memory-mapped cache: read a batch at a time, not copied whole
    if channels and channels != ds.channels and len(idx):
        images = to_channels(np.asarray(images[:]), channels)
    probs = get_probs(model, images, temperature=temperature) if len(idx) else torch.zeros(0, len(vocab))
    return Evaluation(vocab, probs.numpy(), targs, idx, ds.items, str(split))
