"""Batch-level augmentation on the device, inside the model (so training needs no data pipeline): flips, rotation,
zoom, shear and lighting by one affine resampling, or flips and pixel crops alone (cnn-wide)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Augment(nn.Module):
    """Batch-level augmentation on the device, active only in training mode: flip, rotate, zoom, shear, lighting."""

    def __init__(self, rotate: float = 180.0, flip: bool = True, zoom: float = 0.15, shear: float = 0.1,
                 lighting: float = 0.2, enabled: bool = True, crop: int = 0):
        super().__init__()
        self.rotate, self.flip, self.zoom, self.shear = rotate, flip, zoom, shear
        self.lighting, self.enabled, self.crop = lighting, enabled, crop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float (N, C, H, W) in [0, 1]."""
        if not (self.training and self.enabled):
            return x
        n, dev = x.shape[0], x.device

        def u(lo, hi):
            return torch.empty(n, device=dev).uniform_(lo, hi)

        if not (self.rotate or self.zoom or self.shear):  # flips and crops only: no resampling
            return self.lit(crop(x.flip(-1).where(torch.rand(n, 1, 1, 1, device=dev) < 0.5, x) if self.flip else x,
                                 self.crop), u)
        a = u(-1, 1) * math.radians(self.rotate)
        s = torch.exp(u(-1, 1) * math.log(1 + self.zoom))
        sh = u(-self.shear, self.shear)
        fx = torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0) if self.flip else torch.ones(n, device=dev)
        cos, sin = torch.cos(a) / s, torch.sin(a) / s
        theta = torch.stack([torch.stack([cos * fx, -sin + sh, u(-0.08, 0.08)], 1),
                             torch.stack([sin * fx, cos, u(-0.08, 0.08)], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros" if x.shape[1] == 4 else "reflection",
                          align_corners=False)
        return self.lit(crop(x, self.crop), u)

    def lit(self, x: torch.Tensor, u) -> torch.Tensor:
        """Random brightness and contrast on the colour channels."""
        n = x.shape[0]
        if self.lighting:
            b = u(-self.lighting, self.lighting).view(n, 1, 1, 1) / 2
            c = torch.exp(u(-1, 1) * math.log(1 + self.lighting)).view(n, 1, 1, 1)
            rgb = ((x[:, :3] - 0.5) * c + 0.5 + b).clamp_(0, 1)
            x = torch.cat([rgb, x[:, 3:]], 1)
        return x


def crop(x: torch.Tensor, p: int) -> torch.Tensor:
    """Each image moved by up to p pixels each way: a random crop of the image reflect-padded by p."""
    if not p:
        return x
    n, _, h, w = x.shape
    xp = F.pad(x, (p, p, p, p), mode="reflect")
    dy, dx = (torch.randint(0, 2 * p + 1, (2, n, 1), device=x.device)).unbind(0)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]
    return xp[torch.arange(n, device=x.device)[:, None, None, None],
              torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows, cols]


def default_aug(channels: int, enabled: bool = True) -> dict:
    """Crests and logos (with alpha) turn up at any angle; photos rarely do."""
    return dict(rotate=180.0 if channels == 4 else 15.0, flip=True, zoom=0.15, shear=0.1, lighting=0.2,
                enabled=enabled)
