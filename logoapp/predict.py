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

from . import ood, store
from .calibrate import check_temperature
from .config import Settings
from .images import ImageError, background_of, decode, method_of, to_channels
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
    if hasattr(module, "embed") and hasattr(module, "classify"):  # a body with its own eval-time passes (cnn-wide)
        return [module.embed, module.classify]
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

    def __init__(self, model: torch.nn.Module, meta: dict, device=None, extra: dict | None = None):
        """extra: the tensors stored beside the weights (store.load(..., with_extra=True)), for the unknown test."""
        self.model, self.meta = model.eval(), meta
        self.vocab, self.size, self.channels = meta["vocab"], meta["data_size"], meta["channels"]
        # read as its training images were: transparent inputs flattened on their background, squared the same way
        self.background, self.method = background_of(meta), method_of(meta)
        self.device = torch.device(device or "cpu")
        self.model.to(self.device)
        self.fast = inference_copy(self.model)  # what probs() runs; self.model stays as loaded
        # calibration and the unknown-input test; models saved without them keep T = 1 and never answer unknown
        self.temperature = check_temperature(meta.get("temperature", 1.0))
        self.unknown = ood.Detector.from_meta(meta, extra, self.device)

    @classmethod
    def load(cls, folder: str | Path, device=None) -> "Predictor":
        model, meta, extra = store.load(folder, with_extra=True)
        try:
            return cls(model, meta, device, extra)
        except ValueError as e:  # a model.json whose unknown-input entry does not match its stored features
            raise store.ModelError(f"{folder}: {e}") from None

    def prepare(self, src) -> np.ndarray:
        """A path, bytes, PIL image or array -> (size, size, channels) uint8, as in training: squared by the model's
        resize method, transparent images flattened on the model's background (white for older models)."""
        if isinstance(src, np.ndarray):
            if src.ndim == 2:
                src = np.stack([src] * 3, -1)
            if src.ndim != 3 or src.shape[-1] not in (3, 4):
                raise ImageError(f"array must be (H, W), (H, W, 3) or (H, W, 4), got {src.shape}")
            if src.dtype != np.uint8:  # floats in [0, 1] or [0, 255]; rounded, as x / 255 * 255 can land just under x
                src = np.clip(np.rint(src * (255 if src.max(initial=0) <= 1 else 1)), 0, 255).astype(np.uint8)
            if src.shape[:2] == (self.size, self.size):
                return to_channels(src, self.channels, background=self.background)
            src = Image.fromarray(src)
        return decode(src, self.size, self.channels, background=self.background, method=self.method)

    @torch.inference_mode()
    def probs(self, xb: np.ndarray) -> np.ndarray:
        """(N, size, size, channels) uint8 -> (N, K) probabilities."""
        x = torch.from_numpy(np.ascontiguousarray(xb)).to(self.device)
        z = self.fast(x).float()
        return F.softmax(z if self.temperature == 1.0 else z / self.temperature, 1).cpu().numpy()

    @torch.inference_mode()
    def probs_unknown(self, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, K) probabilities and (N,) unknown-input scores from one forward pass (scores None without a test)."""
        if self.unknown is None:
            return self.probs(xb), None
        x = torch.from_numpy(np.ascontiguousarray(xb)).to(self.device)
        z, feats = ood.forward(self.fast, x, self.unknown.needs_features)
        z = z.float()
        p = F.softmax(z if self.temperature == 1.0 else z / self.temperature, 1)
        return p.cpu().numpy(), self.unknown.score(z, feats).cpu().numpy()

    def predict(self, src, top: int | None = None, with_unknown: bool = False) -> dict:
        """{label: probability}, most likely first. with_unknown: {"probs": that dict, "label": the top class,
        "unknown": whether the image lies too far from the training data, "score": how far (None without a test),
        "threshold"}; models saved without an unknown-input test never answer unknown."""
        if with_unknown:
            p, s = self.probs_unknown(self.prepare(src)[None])
            return self._with_unknown(p[0], None if s is None else s[0], top)
        p = self.probs(self.prepare(src)[None])[0]
        order = np.argsort(-p)[:top]
        return {self.vocab[i]: float(p[i]) for i in order}

    def _with_unknown(self, p: np.ndarray, score, top: int | None) -> dict:
        order = np.argsort(-p)[:top]
        thr = self.unknown.threshold if self.unknown is not None and np.isfinite(self.unknown.threshold) else None
        score = None if score is None else float(score)
        unknown = bool(score is not None and thr is not None and score > thr)
        return {"probs": {self.vocab[i]: float(p[i]) for i in order}, "label": self.vocab[order[0]],
                "unknown": unknown, "score": score, "threshold": thr}

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

    def predict_many(self, srcs, bs: int = 64, top: int | None = None, with_unknown: bool = False) -> list[dict]:
        """[{path, label, probs}] or [{path, error}] per input; one bad file never stops the rest.
        Decodes and predicts one batch at a time, so only one batch of images is ever held in memory.
        with_unknown adds "unknown" and "score" to each row (as predict(..., with_unknown=True))."""
        srcs, out = list(srcs), []
        workers = min(Settings().workers, len(srcs))
        with ThreadPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
            for run in (srcs[i:i + bs] for i in range(0, len(srcs), bs)):
                out += self._predict_run(run, pool, top, with_unknown)
        return out

    def _predict_run(self, run: list, pool, top: int | None, with_unknown: bool = False) -> list[dict]:
        ok, xs, errors = self._prepare_run(run, pool)
        rows = [{"path": str(s) if not isinstance(s, (Image.Image, np.ndarray)) else None} for s in run]
        for j, msg in errors.items():
            rows[j] = {"path": str(run[j]), "error": msg}
        if with_unknown:
            probs, scores = self.probs_unknown(np.stack(xs)) if xs else ([], None)
            for n, (j, p) in enumerate(zip(ok, probs)):
                r = self._with_unknown(p, None if scores is None else scores[n], top)
                rows[j].update(label=r["label"], probs=r["probs"], unknown=r["unknown"], score=r["score"])
            return rows
        for j, p in zip(ok, self.probs(np.stack(xs)) if xs else []):
            order = np.argsort(-p)[:top]
            rows[j].update(label=self.vocab[order[0]], probs={self.vocab[i]: float(p[i]) for i in order})
        return rows
