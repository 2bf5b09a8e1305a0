"""Image(s) -> class probabilities, through the same pipeline training used; no DataLoader per call."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import store
from .images import ImageError, decode, to_channels


class Predictor:
    """A loaded model ready for single images and batches."""

    def __init__(self, model: torch.nn.Module, meta: dict, device=None):
        self.model, self.meta = model.eval(), meta
        self.vocab, self.size, self.channels = meta["vocab"], meta["data_size"], meta["channels"]
        self.device = torch.device(device or "cpu")
        self.model.to(self.device)

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
        return F.softmax(self.model(x).float(), 1).cpu().numpy()

    def predict(self, src, top: int | None = None) -> dict[str, float]:
        """{label: probability}, most likely first."""
        p = self.probs(self.prepare(src)[None])[0]
        order = np.argsort(-p)[:top]
        return {self.vocab[i]: float(p[i]) for i in order}

    def predict_many(self, srcs, bs: int = 64, top: int | None = None) -> list[dict]:
        """[{path, label, probs}] or [{path, error}] per input; one bad file never stops the rest."""
        out, ok, xs = [], [], []
        for s in srcs:
            try:
                xs.append(self.prepare(s))
                ok.append(len(out))
                out.append({"path": str(s) if not isinstance(s, (Image.Image, np.ndarray)) else None})
            except ImageError as e:
                out.append({"path": str(s), "error": str(e)})
        for i in range(0, len(xs), bs):
            for j, p in zip(ok[i:i + bs], self.probs(np.stack(xs[i:i + bs]))):
                order = np.argsort(-p)[:top]
                out[j].update(label=self.vocab[order[0]], probs={self.vocab[k]: float(p[k]) for k in order})
        return out
