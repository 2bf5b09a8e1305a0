"""The wide CNN rung, `cnn-wide`: the fastest from-scratch recipe for photos, after Keller Jordan's airbench (CIFAR-10
to 94% in seconds on a GPU), run through fastai's Learner like every other rung.

- The body: a frozen 2x2 patch-whitening convolution fitted to the training images (the eigenvectors of their
  patch covariance, both signs), then three conv - max-pool - batch norm - GELU - conv - batch norm - GELU groups
  (64, 256, 256 wide; identity-initialised convolutions, batch-norm scales fixed at 1), global max pooling and a
  linear head. In eval mode it answers the mean over the image, its mirror image and one-pixel moves of both
  (airbench's test-time augmentation).
- The recipe: SGD with Nesterov momentum, the batch-norm biases at 64x the learning rate, label smoothing 0.2, flip
  and a 2-pixel reflect-padded random crop as the only augmentation, the whitening bias trained for the first
  3 epochs only, and lookahead averaging of the weights every 5 steps.
- On a CPU with bfloat16 dot products (AVX-512 BF16 or AMX) the training passes run under bfloat16 autocast, about
  twice as fast; evaluation, prediction and export stay in float32. GPUs use fastai's mixed precision as for
  every rung.

Measured on CIFAR-10 with 2 CPU cores: README, Performance (`python -m benchmarks --only cifar`)."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .models import Rung, register

WIDTHS = (64, 256, 256)
SMALL = (32, 128, 128)          # cnn-wide-s: about 2.5x the speed
MOMENTUM = 0.85
LR_PER_EXAMPLE = 11.5 / (1024 * (1 + 1 / (1 - MOMENTUM)))  # airbench's rate for a summed loss: per example
WD = 0.0153 / 11.5              # coupled weight decay, so that lr * wd is airbench's decoupled decay per example
BIAS_LR = 64.0                  # batch-norm biases learn this many times faster (no scale to learn)
LABEL_SMOOTHING = 0.2
WHITEN_BIAS_EPOCHS = 3
LOOKAHEAD_EVERY = 5
BS = 512                        # the rung's default batch size; the learning rate follows it (per example)


@functools.lru_cache(maxsize=1)
def cpu_bf16() -> bool:
    """Whether this CPU has bfloat16 dot products that oneDNN uses (AVX-512 BF16, AMX): then bf16 training is
    about twice as fast as float32; elsewhere (AVX2-only CPUs) autocast would only add conversions."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class BatchNorm(nn.BatchNorm2d):
    """Batch norm with its scale fixed at 1: only the bias learns; fast running statistics."""

    def __init__(self, n: int):
        super().__init__(n, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


class Conv(nn.Conv2d):
    """3x3 'same' convolution starting as the identity on its first input channels (the rest random)."""

    def __init__(self, ni: int, nf: int):
        super().__init__(ni, nf, 3, padding="same", bias=False)

    def reset_parameters(self):
        super().reset_parameters()
        w = self.weight.data
        nn.init.dirac_(w[:w.size(1)])


class Group(nn.Sequential):
    def __init__(self, ni: int, nf: int):
        super().__init__(Conv(ni, nf), nn.MaxPool2d(2), BatchNorm(nf), nn.GELU(), Conv(nf, nf), BatchNorm(nf),
                         nn.GELU())


class Scale(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / 9


class WideCNN(nn.Sequential):
    """whiten - GELU - 3 groups - global max pool - linear; test-time flips and moves in eval mode."""

    def __init__(self, channels: int, n_out: int, widths=WIDTHS):
        w = [2 * channels * 4, *widths]
        super().__init__(nn.Conv2d(channels, w[0], 2, bias=True), nn.GELU(),
                         *[Group(a, b) for a, b in zip(w, w[1:])],
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(w[-1], n_out, bias=False), Scale())
        self[0].weight.requires_grad_(False)
        self.quick = False  # set while fastai validates during training: no test-time passes, bfloat16 as in training

    @torch.no_grad()
    def fit_whitening(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the stem to whiten the 2x2 patches of x (N, C, H, W), normalised as the model sees it."""
        conv = self[0]
        c, (h, w) = x.shape[1], conv.kernel_size
        p = x.float().unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w)
        vals, vecs = torch.linalg.eigh(p.T @ p / len(p))
        vals, vecs = vals.flip(0).view(-1, 1, 1, 1), vecs.T.reshape(c * h * w, c, h, w).flip(0)
        v = vecs / torch.sqrt(vals.clamp_min(0) + eps)
        conv.weight.copy_(torch.cat((v, -v)).to(conv.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.quick:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=x.device.type == "cpu" and cpu_bf16()):
                return self.classify(self.trunk(x)).float()
        return self.classify(self.embed(x))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """One pass up to the pooled features."""
        for m in list(self)[:-2]:
            x = m(x)
        return x

    def classify(self, f: torch.Tensor) -> torch.Tensor:
        """Pooled features -> logits (linear: averaging features averages logits)."""
        return self[-1](self[-2](f))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features with airbench's test-time augmentation (level 2): the image and its mirror image at
        half the weight, both moved one pixel up-left and down-right (reflect-padded) a quarter each: +0.15 to +0.3
        points on CIFAR-10 over mirror images alone (README, Performance), for six passes instead of two. The
        prediction copy (predict.FlatNet) and the unknown-input test use it and classify as two steps."""
        def both(z):
            return (self.trunk(z) + self.trunk(z.flip(-1))) / 2

        p = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return both(x) / 2 + (both(p[..., :-2, :-2]) + both(p[..., 2:, 2:])) / 4


def build(channels: int, n_out: int, size: int, weights=None) -> nn.Module:
    return WideCNN(channels, n_out)


def build_small(channels: int, n_out: int, size: int, weights=None) -> nn.Module:
    return WideCNN(channels, n_out, SMALL)


def groups(net: nn.Module) -> list[list[nn.Parameter]]:
    """(batch-norm biases, everything else): the biases get BIAS_LR times the learning rate."""
    bn = [p for m in net.modules() if isinstance(m, BatchNorm) for p in m.parameters()]
    ids = {id(p) for p in bn}
    return [bn, [p for p in net.parameters() if id(p) not in ids]]


AUG = {"rotate": 0.0, "zoom": 0.0, "shear": 0.0, "lighting": 0.0, "crop": 2}  # flips and 2-pixel crops only


def recipe(cfg) -> dict:
    """What make_learner and fit use instead of their defaults (logoapp.recipes.airbench; fastai is imported there,
    on the first training run, not when the rungs are registered)."""
    from .recipes import airbench
    return airbench(cfg)


register(Rung("cnn-wide", "wide CNN for photos (airbench recipe): whitened patch stem, three conv-pool groups "
              "64-256-256, tuned SGD, test-time flips and moves; the most accurate from-scratch rung, bfloat16 on CPUs "
              "that have it", build, epochs=10, lr=LR_PER_EXAMPLE * BS, size=64, augment=True, channels_last=True,
              groups=groups, bs=BS, aug=AUG, recipe=recipe))
register(Rung("cnn-wide-s", "cnn-wide at half the width (32-128-128): about 2.5x the speed, a few points less",
              build_small, epochs=10, lr=LR_PER_EXAMPLE * BS, size=64, augment=True, channels_last=True, groups=groups,
              bs=BS, aug=AUG, recipe=recipe))
