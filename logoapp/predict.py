"""Image(s) -> class probabilities, through the same pipeline training used; no DataLoader per call."""
from __future__ import annotations

import contextlib
import copy
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.nn.utils.fusion import fuse_conv_bn_eval

from . import store
from .config import Settings
from .images import ImageError, decode, to_channels


def inference_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy for inference only: each batch-norm that directly follows a convolution folded into it, and
    channels-last weights when there are convolutions. Same outputs to float rounding (~1e-7); on a 2-core CPU
    the default cnn runs one image in 0.7-0.8x the time, a batch of 64 in ~0.9x. Models without convs: as they are."""
    if not any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        return model
    m = copy.deepcopy(model).eval()
    for seq in [s for s in m.modules() if isinstance(s, torch.nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if (isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d)
                    and bn.track_running_stats and bn.running_mean is not None):
                seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, bn), torch.nn.Identity()
    return m.to(memory_format=torch.channels_last)


class Predictor:
    """A loaded model ready for single images and batches."""

    def __init__(self, model: torch.nn.Module, meta: dict, device=None):
        self.model, self.meta = model.eval(), meta
        self.vocab, self.size, self.channels = meta["vocab"], meta["data_size"], meta["channels"]
        self.device = torch.device(device or "cpu")
        self.model.to(self.device)
        self.fast = inference_copy(self.model)  # what probs() runs; self.model stays as loaded

    @classmethod
    def load(cls, folder: str | Path, device=None) -> "Predictor":
        model, meta = store.load(folder)
        return cls(model, meta, device)

    def prepare(self, src) -> np.ndarray:
        """A path, bytes, PIL image or array -> (size, size, channels) uint8, exactly as in training."""
        if isinstance(src, np.ndarray):
            if src.ndim == 2:
                src = np.stack([src] * 3, -1)
            if src.ndim != 3 or src.shape[-1] not in (3, 4):
                raise ImageError(f"array must be (H, W), (H, W, 3) or (H, W, 4), got {src.shape}")
            if src.dtype != np.uint8:  # floats in [0, 1] or [0, 255]; rounded, as x / 255 * 255 can land just under x
                src = np.clip(np.rint(src * (255 if src.max(initial=0) <= 1 else 1)), 0, 255).astype(np.uint8)
            if src.shape[:2] == (self.size, self.size):
                return to_channels(src, self.channels)
            src = Image.fromarray(src)
        return decode(src, self.size, self.channels)

    @torch.inference_mode()
    def probs(self, xb: np.ndarray) -> np.ndarray:
        """(N, size, size, channels) uint8 -> (N, K) probabilities."""
        x = torch.from_numpy(np.ascontiguousarray(xb)).to(self.device)
        return F.softmax(self.fast(x).float(), 1).cpu().numpy()

    def predict(self, src, top: int | None = None) -> dict[str, float]:
        """{label: probability}, most likely first."""
        p = self.probs(self.prepare(src)[None])[0]
        order = np.argsort(-p)[:top]
        return {self.vocab[i]: float(p[i]) for i in order}

    def _prepare_one(self, src) -> np.ndarray | str:
        try:
            return self.prepare(src)
        except ImageError as e:
            return str(e)

    def _prepare_run(self, srcs: list, pool=None) -> tuple[list[int], list[np.ndarray], dict[int, str]]:
        """Positions prepared, their arrays, and an error message per position that failed (decoded in the pool's
        threads when there is one: Pillow and the resize release the GIL for most of the work)."""
        if pool is None:
            done = [self._prepare_one(s) for s in srcs]
        else:  # one contiguous share per thread: a future per image costs more than it saves
            k = -(-len(srcs) // pool._max_workers)
            done = [r for part in pool.map(lambda c: [self._prepare_one(s) for s in c],
                                           [srcs[i:i + k] for i in range(0, len(srcs), k)]) for r in part]
        ok, xs, errors = [], [], {}
        for j, r in enumerate(done):
            if isinstance(r, str):
                errors[j] = r
            else:
                ok.append(j)
                xs.append(r)
        return ok, xs, errors

    def predict_many(self, srcs, bs: int = 64, top: int | None = None) -> list[dict]:
        """[{path, label, probs}] or [{path, error}] per input; one bad file never stops the rest.
        Decodes and predicts one batch at a time, so only one batch of images is ever held in memory."""
        srcs, out = list(srcs), []
        workers = min(Settings().workers, len(srcs))
        with ThreadPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
            for run in (srcs[i:i + bs] for i in range(0, len(srcs), bs)):
                out += self._predict_run(run, pool, top)
        return out

    def _predict_run(self, run: list, pool, top: int | None) -> list[dict]:
        ok, xs, errors = self._prepare_run(run, pool)
        rows = [{"path": str(s) if not isinstance(s, (Image.Image, np.ndarray)) else None} for s in run]
        for j, msg in errors.items():
            rows[j] = {"path": str(run[j]), "error": msg}
        for j, p in zip(ok, self.probs(np.stack(xs)) if xs else []):
            order = np.argsort(-p)[:top]
            rows[j].update(label=self.vocab[order[0]], probs={self.vocab[i]: float(p[i]) for i in order})
        return rows
