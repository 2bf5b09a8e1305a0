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
from .models import Net


def inference_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy for inference only, same outputs to float rounding (~1e-7): each batch-norm that directly follows a
    convolution folded into it, channels-last weights when there are convolutions, and a Net run as a flat list of
    tensor functions (FlatNet): faster than the model itself, most of all for one image (README, Performance).
    The copy shares nothing with the model it came from; build it after moving the model to its device."""
    m = copy.deepcopy(model).eval()
    if any(isinstance(c, torch.nn.Conv2d) for c in m.modules()):
        for seq in [s for s in m.modules() if isinstance(s, torch.nn.Sequential)]:
            for i in range(len(seq) - 1):
                conv, bn = seq[i], seq[i + 1]
                if (isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d)
                        and bn.track_running_stats and bn.running_mean is not None):
                    seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, bn), torch.nn.Identity()
        m = m.to(memory_format=torch.channels_last)
    return FlatNet(m) if isinstance(m, Net) else m


class FlatNet(torch.nn.Module):
    """A Net in eval mode as one loop over plain tensor functions: nested Sequentials flattened, Identity and
    Dropout dropped, convolutions, ReLUs, pooling, flatten and linear layers called as torch functions: each
    module call costs Python overhead, and the small CNN makes about 30 of them. Layers of other kinds (a ResNet's
    blocks) are called as modules; same maths."""

    def __init__(self, net: Net):
        super().__init__()
        self.net = net.eval()
        self.steps = _flat(net.body)

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("an inference copy cannot be trained; train the model it was made from")
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prep = self.net.prep
        x = prep.norm(prep.resize(x))  # augmentation is off in eval mode
        for f in self.steps:
            x = f(x)
        return x


def _flat(module: torch.nn.Module) -> list:
    """module's eval-mode forward as a list of callables; reads weights at call time, so device moves still work."""
    nn = torch.nn
    if isinstance(module, nn.Sequential):
        return [f for child in module for f in _flat(child)]
    if isinstance(module, (nn.Identity, nn.Dropout)):
        return []
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros":
        return [lambda x, m=module: F.conv2d(x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)]
    if isinstance(module, nn.ReLU):
        return [torch.relu_ if module.inplace else torch.relu]
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return [lambda x, size=module.output_size: F.adaptive_avg_pool2d(x, size)]
    if type(module) is nn.Flatten:
        return [lambda x, a=module.start_dim, b=module.end_dim: x.flatten(a, b)]
    if isinstance(module, nn.Linear):
        return [lambda x, m=module: F.linear(x, m.weight, m.bias)]
    return [module]


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
