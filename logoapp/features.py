"""The `features` rung's training: a frozen ImageNet backbone's pooled features, computed once per image and cached
on disk, then a linear head trained on them with fastai in seconds (Teachable Machine's recipe). Changing the epochs
or the learning rate retrains only the head: the features come from the cache, keyed by each image's content, the
backbone's weights file and the input size."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import cache_dir

BS = 128  # images per forward pass of the backbone


def image_keys(images: np.ndarray, idx: np.ndarray) -> list[str]:
    """A content key per image (what the data cache holds for it), so a renamed or re-split file keeps its features."""
    return [hashlib.blake2b(images[i].tobytes(), digest_size=12).hexdigest() for i in idx]


def _store(net: nn.Module, backbone_file: str) -> Path:
    prep = net.prep
    bg = "on" + ".".join(str(int(c)) for c in prep.compose) if prep.compose else "rgb"
    tag = f"{backbone_file}-{prep.size}px-{bg}"
    d = cache_dir() / "features" / tag.replace("/", "_")
    d.mkdir(parents=True, exist_ok=True)
    return d


@torch.inference_mode()
def _compute(net: nn.Module, images: np.ndarray, dev) -> np.ndarray:
    """Pooled features (N, D) float32 of uint8 images: prep (no augmentation), then the body up to its head."""
    net.eval().to(dev)  # prep's buffers and the encoder on the device the images go to
    encoder = nn.Sequential(*list(net.body)[:3])
    out = []
    for i in range(0, len(images), BS):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + BS])).to(dev)
        out.append(encoder(net.prep.norm(net.prep.resize(x))).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def features(net: nn.Module, images: np.ndarray, idx: np.ndarray, backbone_file: str, dev=None) -> tuple[np.ndarray,
                                                                                                           dict]:
    """(len(idx), D) features of images[idx] and how they were had ({"cached": n, "computed": n, "seconds": s}).
    Stored as one .npy per image key under cache_dir()/features/<weights file>-<size>px-<rgb|on colour>/."""
    dev = torch.device(dev or "cpu")
    t0 = time.perf_counter()
    keys, folder = image_keys(images, idx), _store(net, backbone_file)
    got: dict[int, np.ndarray] = {}
    for j, k in enumerate(keys):
        try:
            got[j] = np.load(folder / f"{k}.npy")
        except (OSError, ValueError):
            pass
    todo = [j for j in range(len(keys)) if j not in got]
    if todo:
        new = _compute(net, images[np.asarray(idx)[todo]], dev)
        for j, f in zip(todo, new):
            got[j] = f
            tmp = folder / f".{keys[j]}.{os.getpid()}.tmp.npy"
            np.save(tmp, f)
            os.replace(tmp, folder / f"{keys[j]}.npy")
    feats = np.stack([got[j] for j in range(len(keys))]).astype(np.float32) if keys else np.zeros((0, 0), np.float32)
    return feats, {"cached": len(keys) - len(todo), "computed": len(todo), "seconds": time.perf_counter() - t0}


def head_learner(ds, cfg, net: nn.Module, info: dict, dev, cbs=()):
    """A fastai Learner over the head of a features Net (batch norm + linear), fed cached features."""
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.metrics import accuracy

    from .train import TensorLoader
    from .weights import BACKBONES
    tr, va = ds.idx("train"), ds.idx("valid")
    keep = np.concatenate([tr, va])
    feats, how = features(net, ds.images, keep, BACKBONES[info["backbone"]].file, dev)
    labels = ds.labels[keep]
    pos_tr, pos_va = np.arange(len(tr)), np.arange(len(tr), len(keep))
    dls = DataLoaders(TensorLoader(feats, labels, pos_tr, cfg.bs, shuffle=True, seed=cfg.seed, drop_last=True,
                                   device=dev),
                      TensorLoader(feats, labels, pos_va, cfg.bs * 2, device=dev), device=dev)
    head = nn.Sequential(*list(net.body)[3:])
    learn = Learner(dls, head, loss_func=nn.CrossEntropyLoss(), metrics=accuracy, wd=cfg.wd, cbs=list(cbs))
    info["features"] = {**how, "dim": int(feats.shape[1]) if feats.size else 0}
    return learn
