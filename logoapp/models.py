"""The model ladder as one registry of rungs. Every model takes uint8 (N, H, W, C) batches: the same input everywhere.

Adding a rung is one `register(Rung(...))` and its builder; training, evaluation, saving, loading, prediction, the
CLI and the app read everything else about it from the record."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import ondisk
from .augment import Augment, crop, default_aug  # noqa: F401  (part of this module's interface)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Rung:
    """One model of the ladder and everything the rest of logoapp needs to know about it."""
    name: str                    # the value of --model, the Train tab's choice and model.json's "arch"
    description: str             # one line for the app and --help
    builder: Callable | None     # (channels, n_out, size, weights: Path | None) -> body; None: not trained (pixel)
    epochs: int = 5              # defaults for a run (TrainConfig fills them in)
    lr: float = 1e-3
    size: int | None = None      # input size; None: the data's own size (default_size never upsamples)
    augment: bool = False        # augmentation on by default (image models) or off (flat-vector models)
    channels_last: bool = False  # convolutional: channels-last memory is faster on CPU and GPU
    groups: Callable | None = None  # Net -> parameter groups (body, head), so fine_tune can freeze the body
    weights: str | None = None   # ImageNet backbone it starts from (weights.BACKBONES), fetched on first use
    head_only: bool = False      # the backbone stays frozen: its pooled features are cached, only the head trains
    upsample: bool = False       # input at the rung's size even above the data's (ImageNet filters want that scale)
    bs: int = 64                 # default batch size
    aug: dict | None = None      # changes to default_aug's augmentation (cnn-wide: flips and crops only)
    recipe: Callable | None = None  # TrainConfig -> changes to the optimizer, loss, callbacks and one-cycle (wide.py)

    @property
    def trainable(self) -> bool:
        return self.builder is not None


RUNGS: dict[str, Rung] = {}
DEFAULT_MODEL = "cnn"            # the rung the app, the CLI and TrainConfig start from


def register(rung: Rung) -> Rung:
    """Add (or replace) a rung; it is offered everywhere from then on."""
    RUNGS[rung.name] = rung
    return rung


def unregister(name: str) -> None:
    RUNGS.pop(name, None)


def get(name: str) -> Rung:
    """The rung by name; a ValueError naming the choices for an unknown one."""
    if name not in RUNGS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(trainable())}")
    return RUNGS[name]


def names() -> list[str]:
    """Every rung, simplest first (the pixel baseline included)."""
    return list(RUNGS)


def trainable() -> list[str]:
    """The rungs that can be trained, simplest first."""
    return [n for n, r in RUNGS.items() if r.trainable]


def describe(name: str) -> str:
    """A rung's one-line description (the name itself for an architecture this logoapp does not know)."""
    return RUNGS[name].description if name in RUNGS else name


class Prep(nn.Module):
    """uint8 (N, H, W, C) -> float (N, C, size, size): resize (antialiased, kept on the uint8 grid) and normalise.
    compose (an RGB colour, 0-255): RGBA is composed onto it before normalising, so an RGB network sees RGB."""

    def __init__(self, channels: int, size: int, mean=None, std=None, compose=None):
        super().__init__()
        self.size, n = size, (3 if compose else channels)
        self.register_buffer("mean", torch.tensor(mean or [0.5] * n).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std or [0.25] * n).view(1, -1, 1, 1))
        self.compose = None if not compose else [float(c) for c in compose]

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """-> float in [0, 1] at the model's size; rounding to 1/255 steps makes a pre-resized uint8 cache identical."""
        if x.dtype == torch.uint8:
            x = x.permute(0, 3, 1, 2).float().div_(255)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
            x = x.mul_(255).round_().div_(255)
        return x

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        if self.compose is not None and x.shape[1] == 4:  # straight alpha: rgb * a + background * (1 - a)
            a = x[:, 3:]
            bg = torch.tensor(self.compose, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255
            x = x[:, :3] * a + bg * (1 - a)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.resize(x))


class Net(nn.Module):
    """prep -> augment -> body: what every trainable rung shares."""

    def __init__(self, prep: Prep, aug: Augment, body: nn.Module):
        super().__init__()
        self.prep, self.aug, self.body = prep, aug, body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, C) at any size -> logits; augmentation runs at the model's size, before normalising."""
        return self.body(self.prep.norm(self.aug(self.prep.resize(x))))


# ---------------------------------------------------------------------------------------------- builders

def linear(channels: int, n_out: int, size: int, weights=None) -> nn.Module:
    """One weight per pixel, channel and class on the flattened image."""
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, n_out))


def mlp(channels: int, n_out: int, size: int, weights=None) -> nn.Module:
    """linear - ReLU - linear."""
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, 64), nn.ReLU(), nn.Linear(64, n_out))


def conv_block(ni: int, nf: int, stride: int = 2) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(ni, nf, 3, stride, 1, bias=False), nn.BatchNorm2d(nf), nn.ReLU(inplace=True))


def small_cnn(n_in: int, n_out: int) -> nn.Sequential:
    """A CPU-fast CNN: stride-2 conv blocks widening 32 -> 256, one extra block at 16px, global pooling."""
    return nn.Sequential(
        conv_block(n_in, 32), conv_block(32, 64), conv_block(64, 64, 1),
        conv_block(64, 128), conv_block(128, 256),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(256, n_out))


def cnn(channels: int, n_out: int, size: int, weights=None) -> nn.Module:
    return small_cnn(channels, n_out)


def find_weights(name: str, folder: str | Path | None = None) -> Path | None:
    """A backbone's ImageNet weights if they are already on disk (torch's hub cache or the models folder)."""
    from .weights import path
    return path(name, folder)


def _torchvision(name: str, weights: Path | None) -> nn.Module:
    """A torchvision ImageNet model, with its published weights loaded from a local (verified) file when given."""
    import torchvision
    m = getattr(torchvision.models, name)(weights=None)
    if weights is not None and torch.empty(0).device.type != "meta":  # building on 'meta' only measures shapes
        from .weights import verify
        m.load_state_dict(torch.load(verify(weights), map_location="cpu", weights_only=True))
    return m


def vision_body(name: str, n_in: int, n_out: int, weights: Path | None) -> nn.Module:
    """fastai's vision model (torchvision body cut before its pooling + fastai's head) on torchvision `name`."""
    from fastai.vision.learner import create_vision_model
    return create_vision_model(lambda pretrained=False, **kw: _torchvision(name, weights), n_out,
                               pretrained=weights is not None, cut=-2, n_in=n_in)


def resnet(name: str) -> Callable:
    """The builder of a torchvision model (resnet18, resnet34, mobilenet_v3_large...) as fastai makes it."""
    def build_vision(channels: int, n_out: int, size: int, weights: Path | None = None) -> nn.Module:
        return vision_body(name, channels, n_out, weights)
    return build_vision


def body_and_head(net: Net) -> list[list[nn.Parameter]]:
    """A fastai vision model's two parameter groups."""
    return [list(net.body[0].parameters()), list(net.body[1].parameters())]


class Frozen(nn.Module):
    """A pretrained encoder that never trains and is left out of the model's state dict: a model folder holds only
    what was trained (the head) and names the backbone, whose weights come from torch's hub cache, verified."""

    def __init__(self, enc: nn.Module):
        super().__init__()
        self.enc = enc.requires_grad_(False).eval()
        self._prefix = ""
        self.register_load_state_dict_post_hook(Frozen._not_missing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x)

    def train(self, mode: bool = True):
        self.training = mode
        self.enc.eval()  # batch-norm statistics stay ImageNet's
        return self

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False, **kw):
        from collections import OrderedDict
        return destination if destination is not None else OrderedDict()

    def _load_from_state_dict(self, state_dict, prefix, *args):
        self._prefix = prefix
        super()._load_from_state_dict(state_dict, prefix, *args)

    @staticmethod
    def _not_missing(module, keys) -> None:
        keys.missing_keys[:] = [k for k in keys.missing_keys if not k.startswith(module._prefix + "enc.")]


def features_builder(name: str) -> Callable:
    """frozen ImageNet encoder -> average pool -> batch norm -> linear: only the last two train."""
    def build_features(channels: int, n_out: int, size: int, weights: Path | None = None) -> nn.Module:
        if weights is None and torch.empty(0).device.type != "meta":
            from .weights import fetch
            weights = fetch(name)  # the head means nothing without the features it was trained on
        m = _torchvision(name, weights)
        enc = nn.Sequential(*list(m.children())[:-2])
        with torch.no_grad():
            nf = enc.eval()(torch.zeros(1, 3, 32, 32, device=torch.empty(0).device)).shape[1]
        return nn.Sequential(Frozen(enc), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.BatchNorm1d(nf),
                             nn.Linear(nf, n_out))
    return build_features


# ---------------------------------------------------------------------------------------------- the ladder

register(Rung("pixel", "pixel similarity: nearest class-mean ('ideal') image, no training", None))
register(Rung("linear", "linear: one weight per pixel and class on the flattened image (the book's first learner)",
              linear, epochs=6, lr=1e-3))
register(Rung("mlp", "small neural net: linear - ReLU - linear, the book's simple net", mlp, epochs=6, lr=1e-3))
register(Rung("cnn", "small CNN: batch-normed conv blocks and global pooling, fast on a CPU (the default)", cnn,
              epochs=5, lr=5e-3, size=64, augment=True, channels_last=True))
from . import wide  # noqa: E402,F401  (registers cnn-wide next: it builds on this module's Rung)
register(Rung("features", "features: MobileNetV3's ImageNet features computed once per image, then a linear head "
              "that trains in seconds (Teachable-Machine style; the best start for photos on a CPU)",
              features_builder("mobilenet_v3_large"), epochs=10, lr=3e-3, size=128, weights="mobilenet_v3_large",
              head_only=True, upsample=True))
register(Rung("resnet18", "fastai ResNet-18, fine-tuned from ImageNet weights (fetched on first use)",
              resnet("resnet18"), epochs=4, lr=2e-3, size=64, augment=True, channels_last=True, groups=body_and_head,
              weights="resnet18"))
register(Rung("resnet34", "fastai ResNet-34, fine-tuned from ImageNet weights (fetched on first use)",
              resnet("resnet34"), epochs=4, lr=2e-3, size=64, augment=True, channels_last=True, groups=body_and_head,
              weights="resnet34"))
register(Rung("mobilenet", "MobileNetV3-Large, fine-tuned from ImageNet weights: a quarter of ResNet-18's compute, "
              "built for phones, so the fastest pretrained rung to train and to serve on a CPU",
              resnet("mobilenet_v3_large"), epochs=4, lr=2e-3, size=96, augment=True, channels_last=True,
              groups=body_and_head, weights="mobilenet_v3_large"))


# ---------------------------------------------------------------------------------------------- building

def default_size(name: str, data_size: int) -> int:
    """The input size a model gets when none is asked for: its default, but never above the data's own size
    (a cnn on 32 px photos sees 32 px, not an upsampled 64), except for rungs that upsample (pretrained features)."""
    r = get(name)
    return r.size if r.upsample and r.size else min(r.size or data_size, data_size)


PHOTO_SIZE = 96     # photos above 64 px: a from-scratch rung sees up to this many pixels a side (more detail)
MIN_STEPS = 180     # photos: at least this many optimizer steps by default (small sets get more epochs) ...
MAX_EPOCH_MULT = 3  # ... but at most this many times the rung's own epochs


def suggested(name: str, data_size: int, channels: int, n_train: int, bs: int = 64) -> dict:
    """Epochs and input size for a run when none are asked for: the rung's defaults, except that photos (RGB, no
    alpha) trained from scratch by an augmenting rung get a larger input when the images are larger than 64 px and
    more epochs when the set is small (measured on CIFAR-10 photos; README, Benchmarks)."""
    r = get(name)
    epochs, size = r.epochs, default_size(name, data_size)
    if channels == 3 and r.augment and not r.weights and r.size:
        if data_size > r.size:
            size = min(data_size, max(r.size, PHOTO_SIZE))
        steps = max(1, n_train // bs)
        epochs = min(max(r.epochs, -(-MIN_STEPS // steps)), r.epochs * MAX_EPOCH_MULT)
    return {"epochs": epochs, "size": size}


COMPOSE_ON = (255, 255, 255)  # RGBA meets an RGB backbone composed on white, as images.to_channels flattens it


def build(name: str, channels: int, n_out: int, data_size: int, size: int | None = None, mean=None, std=None,
          aug: dict | None = None, pretrained: bool = True, folder=None, weights: Path | None = None
          ) -> tuple[nn.Module, dict]:
    """A fresh model by name and what was decided while building it (input size, weights used). weights: the
    backbone's ImageNet file (train fetches it); without it, pretrained looks on disk only, never downloads.
    An RGBA model on an ImageNet backbone composes its input on white (Prep) and keeps the pretrained 3-channel
    first convolution; such models' mean has 3 values, so older 4-channel ResNets (4 values) still load as saved."""
    rung = get(name)
    if not rung.trainable:
        raise ValueError(f"{name!r} is not trained; choose one of {', '.join(trainable())}")
    size = size or default_size(name, data_size)
    compose = COMPOSE_ON if rung.weights and channels == 4 and (mean is None or len(mean) == 3) else None
    if rung.weights and weights is None and pretrained:
        weights = find_weights(rung.weights, folder)
    body = rung.builder(3 if compose else channels, n_out, size, weights if rung.weights else None)
    info = {"arch": name, "size": size, "pretrained": bool(rung.weights) and (weights is not None or rung.head_only),
            "weights_note": "", "backbone": rung.weights, "compose": list(compose) if compose else None}
    if rung.weights:
        info["weights_note"] = (f"ImageNet weights {weights.name} (torchvision)" if weights is not None
                                else "" if rung.head_only else "random init: no ImageNet weights")
        if mean is None:
            n = 3 if compose else channels
            mean, std = list(IMAGENET_MEAN) + [0.5] * (n - 3), list(IMAGENET_STD) + [0.5] * (n - 3)
    augment = Augment(**(aug or {"enabled": False}))
    return Net(Prep(channels, size, mean, std, compose), augment, body), info


def describe_meta(meta: dict) -> str:
    """What a saved model is, with the weights it started from (Evaluate's summary, `logoapp eval`)."""
    d = describe(meta.get("arch", "?"))
    note = meta.get("weights_note")
    return f"{d} · {note}" if note else d


@torch.inference_mode()
def resize_images(images: np.ndarray, size: int, idx: np.ndarray, bs: int = 512) -> np.ndarray:
    """images[idx] resized to (len(idx), size, size, C) uint8 with the models' own resize, gathered a block at a
    time (no full-size copy), so training can skip the resize per batch."""
    prep = Prep(images.shape[3], size)
    out = np.empty((len(idx), size, size, images.shape[3]), np.uint8)
    pages = ondisk.Reader(images)  # a memory-mapped cache: read pages leave this process's memory as it goes
    for i in range(0, len(idx), bs):
        block = images[idx[i:i + bs]]
        pages.read(block.nbytes)
        x = prep.resize(torch.from_numpy(block))
        out[i:i + bs] = x.mul(255).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def device() -> torch.device:
    """CUDA when present (LOGOAPP_DEVICE overrides)."""
    want = os.environ.get("LOGOAPP_DEVICE")
    if want:
        return torch.device(want)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
