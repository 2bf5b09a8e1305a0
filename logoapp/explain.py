"""Why a model answered as it did: a heatmap over the image, one method per rung, one result type.

- cnn, resnet18/34, mobilenet, features: Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep
  Networks via Gradient-based Localization"): the last convolutional block's feature maps, weighted by the spatial
  mean of the class score's gradient, summed, ReLU. Hooks go on the trained model itself (the flat inference copy
  runs none).
- linear: weights x input, per pixel: the class's weight times the normalised pixel, summed over channels. That is
  exactly each pixel's share of the class score (the bias aside): zeroing a pixel's normalised value removes it.
- mlp: gradient x input (Shrikumar et al. 2016; Simonyan et al. 2014 for the gradient): the class score's gradient
  with respect to the normalised pixels, times those pixels, summed over channels; the first-order share of each
  pixel in the score (exact for the linear model, where the gradient is the weights).
- pixel (nearest ideal): per pixel, how much closer the image is to the ideal image of the explained class than
  to the ideal of its runner-up (the nearest other class): |image - runner-up ideal| - |image - class ideal|,
  summed over channels (squared differences for the rmse distance). Summed over all pixels this is the gap between
  the two distances that decided the answer.

Every heatmap keeps the positive evidence for the class, scaled to [0, 1], at the size of the image as the model's
pipeline prepared it (the dataset's stored size, the same pipeline as prediction); Explanation.raw keeps the signed
values at the method's own resolution."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .ideal import to_float
from .images import composite

METHODS = {"cnn": "Grad-CAM", "resnet18": "Grad-CAM", "resnet34": "Grad-CAM", "mobilenet": "Grad-CAM",
           "features": "Grad-CAM", "linear": "weights x input",
           "mlp": "gradient x input", "pixel": "difference from the ideal images"}
ALPHA = 0.5       # heatmap weight in the overlay
COLORMAP = "jet"  # the usual Grad-CAM colours: blue (no evidence) to red (most)


@dataclass
class Explanation:
    heatmap: np.ndarray    # float32 (H, W) in [0, 1]: positive evidence for `label`, at the prepared image's size
    overlay: np.ndarray    # uint8 (H, W, 3): the heatmap's colours blended over the image (alpha composited on white)
    label: str             # the class explained
    kind: str              # the method: one of METHODS' values
    target: int            # the class explained, as an index into the vocab
    image: np.ndarray      # the (H, W, C) uint8 image the model saw
    raw: np.ndarray        # signed evidence before clipping and scaling, at the method's resolution (Grad-CAM's grid)
    probs: dict[str, float]  # the model's answer for this image, most likely first (with the stored temperature)
    extra: dict = field(default_factory=dict)  # method-specific: pixel -> runner_up, diff_target, diff_runner_up


def prepare(image, meta: dict) -> np.ndarray:
    """A path, bytes, PIL image or array -> (size, size, channels) uint8 by the Predictor's own loading."""
    from .images import background_of, method_of
    from .predict import Predictor
    return Predictor.prepare(SimpleNamespace(size=meta["data_size"], channels=meta["channels"],
                                             background=background_of(meta), method=method_of(meta)), image)


def resolve_target(target, vocab: list[str], logits: torch.Tensor) -> int:
    """A class name, an index or None (the predicted class) -> an index."""
    if target is None:
        return int(logits.argmax())
    if isinstance(target, str):
        if target not in vocab:
            raise ValueError(f"no class {target!r} in this model (classes: {', '.join(vocab)})")
        return vocab.index(target)
    t = int(target)
    if not 0 <= t < len(vocab):
        raise ValueError(f"class index {t} out of range for {len(vocab)} classes")
    return t


def _device(model: nn.Module) -> torch.device:
    return next(iter(model.buffers()), next(iter(model.parameters()), torch.zeros(0))).device


def _scale(m: torch.Tensor, size: int) -> np.ndarray:
    """Signed (h, w) evidence -> its positive part, bilinearly resized to (size, size), scaled to [0, 1]."""
    m = F.relu(m.detach().float().cpu())[None, None]
    if m.shape[-1] != size or m.shape[-2] != size:
        m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
    top = float(m.max())
    return (m[0, 0] / top if top > 0 else m[0, 0] * 0).numpy().astype(np.float32)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = ALPHA, colormap: str = COLORMAP) -> np.ndarray:
    """(H, W, C) uint8 image and a [0, 1] heatmap of any size -> (H, W, 3) uint8 blend; the heatmap is resized
    to the image, so it can go over the original picture as well as over the prepared one."""
    import matplotlib
    rgb = composite(np.asarray(image)).astype(np.float32)
    h = np.asarray(heatmap, np.float32)
    if h.shape != rgb.shape[:2]:
        h = np.asarray(Image.fromarray(h, "F").resize((rgb.shape[1], rgb.shape[0]), Image.BILINEAR))
    colours = matplotlib.colormaps[colormap](np.clip(h, 0, 1))[..., :3] * 255
    return np.clip((1 - alpha) * rgb + alpha * colours + 0.5, 0, 255).astype(np.uint8)


def _result(meta: dict, x: np.ndarray, raw: torch.Tensor, logits: torch.Tensor, t: int, kind: str,
            extra: dict | None = None) -> Explanation:
    vocab = meta["vocab"]
    heat = _scale(raw, x.shape[0])
    p = F.softmax(logits.detach().float().cpu().flatten() / float(meta.get("temperature", 1.0)), 0).numpy()
    probs = {vocab[i]: float(p[i]) for i in np.argsort(-p)}
    return Explanation(heat, overlay(x, heat), vocab[t], kind, t, x, raw.detach().float().cpu().numpy(), probs,
                       extra or {})


def last_conv_block(model: nn.Module) -> nn.Module:
    """The last child holding a convolution in a Net's feature extractor: the cnn's last conv block (conv, batch
    norm, ReLU), a ResNet's layer4 (fastai puts the torchvision body first and the head second)."""
    body = model.body
    enc = body[0] if len(body) == 2 and any(isinstance(m, nn.Conv2d) for m in body[0].modules()) else body
    blocks = [c for c in enc.children() if any(isinstance(m, nn.Conv2d) for m in c.modules())]
    if not blocks:
        raise ValueError("this model has no convolutional layers for Grad-CAM")
    return blocks[-1]


def _input(model: nn.Module, x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x[None])).to(_device(model))


def gradcam(model: nn.Module, meta: dict, image, target=None, layer: nn.Module | None = None) -> Explanation:
    """Grad-CAM on the last convolutional block (or `layer`) for the predicted class or `target` (name or index)."""
    x = prepare(image, meta)
    layer = layer or last_conv_block(model)
    me, acts = threading.get_ident(), []

    def hook(module, inp, out):  # the activations become a leaf: gradients stop there, frozen weights or not
        if threading.get_ident() != me:  # another thread explaining with the same model
            return None
        a = out.detach().requires_grad_()
        acts.append(a)
        return a

    handle = layer.register_forward_hook(hook)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            logits = model.eval()(_input(model, x))[0]
            t = resolve_target(target, meta["vocab"], logits)
            a = acts[0]  # the first pass: a model with test-time flips runs the mirror image second
            (g,) = torch.autograd.grad(logits[t], a)
    finally:
        handle.remove()
    cam = (g.mean((2, 3), keepdim=True) * a).sum(1)[0]  # channel weights: the gradient's spatial mean
    return _result(meta, x, cam, logits, t, METHODS["cnn"])


def _normalised(model: nn.Module, x: np.ndarray) -> torch.Tensor:
    """The (1, C, size, size) float input the model's body sees (resized and normalised; no augmentation)."""
    return model.prep.norm(model.prep.resize(_input(model, x)))


@torch.inference_mode()
def linear_map(model: nn.Module, meta: dict, image, target=None) -> Explanation:
    """Weights x input per pixel for the linear model, summed over channels."""
    x = prepare(image, meta)
    lin = model.eval().body[-1]
    z = _normalised(model, x)
    logits = model.body(z)[0]
    t = resolve_target(target, meta["vocab"], logits)
    w = lin.weight[t].view(z.shape[1:])
    return _result(meta, x, (w * z[0]).sum(0), logits, t, METHODS["linear"])


def mlp_map(model: nn.Module, meta: dict, image, target=None) -> Explanation:
    """Gradient x input per pixel (the normalised pixels), summed over channels; works for any Net."""
    x = prepare(image, meta)
    with torch.inference_mode(False), torch.enable_grad():
        model.eval()
        z = _normalised(model, x).detach().requires_grad_()
        logits = model.body(z)[0]
        t = resolve_target(target, meta["vocab"], logits)
        (g,) = torch.autograd.grad(logits[t], z)
    return _result(meta, x, (g * z)[0].sum(0), logits, t, METHODS["mlp"])


@torch.inference_mode()
def pixel_map(model: nn.Module, meta: dict, image, target=None) -> Explanation:
    """For the pixel-similarity model: per pixel, |image - runner-up ideal| - |image - class ideal| over channels."""
    x = prepare(image, meta)
    xf = to_float(x[None])[0].to(model.means.device)
    logits = model(xf[None])[0]
    t = resolve_target(target, meta["vocab"], logits)
    others = logits.clone()
    others[t] = -float("inf")
    r = int(others.argmax())  # the nearest other ideal
    diff = (lambda d: d.abs()) if model.kind == "l1" else (lambda d: d.pow(2))
    dt, dr = diff(xf - model.means[t]).sum(0), diff(xf - model.means[r]).sum(0)
    extra = {"runner_up": meta["vocab"][r], "runner_up_index": r, "diff_target": dt.cpu().numpy(),
             "diff_runner_up": dr.cpu().numpy()}
    return _result(meta, x, dr - dt, logits, t, METHODS["pixel"], extra)


BY_ARCH = {"linear": linear_map, "mlp": mlp_map, "pixel": pixel_map}  # every other rung: Grad-CAM (convolutional)


def explain(model: nn.Module, meta: dict, image, target=None) -> Explanation:
    """The explanation for model's answer on image (a path, bytes, PIL image or array, loaded as prediction loads
    it), for the predicted class or target (a class name or index)."""
    from .models import RUNGS
    arch = meta.get("arch")
    fn = BY_ARCH.get(arch) or (gradcam if arch in RUNGS else None)
    if fn is None:
        raise ValueError(f"no explanation method for a {meta.get('arch')!r} model")
    return fn(model, meta, image, target)
