"""Training recipes a rung can carry (models.Rung.recipe): what fastai's Learner and fit_one_cycle use instead of
logoapp's defaults (Adam, cross-entropy, fastai's one-cycle shape). airbench: the cnn-wide rungs' recipe
(logoapp.wide), after Keller Jordan's airbench."""
from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
from torch import nn

from .wide import BIAS_LR, BS, LABEL_SMOOTHING, LOOKAHEAD_EVERY, MOMENTUM, WD, WHITEN_BIAS_EPOCHS, WideCNN

warnings.filterwarnings("ignore", message=".*torch.jit.script.*")
from fastai.callback.core import Callback  # noqa: E402
from fastai.optimizer import OptimWrapper  # noqa: E402


def _net(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # unwrapped from DistributedDataParallel


def _body(model: nn.Module) -> WideCNN:
    return _net(model).body


class Recipe(Callback):
    """Fits the whitening stem before the first fit, trains its bias for WHITEN_BIAS_EPOCHS epochs only, and
    averages the weights with a lookahead copy every LOOKAHEAD_EVERY steps (the model ends as the average). The
    validation after each epoch runs in one bfloat16 pass, without test-time passes (the final evaluation has them)."""
    order = 5

    def __init__(self, sample: int = 5000):
        self.sample, self.whitened = sample, False

    def before_fit(self):
        net, body = _net(self.learn.model), _body(self.learn.model)
        if not self.whitened:
            dl = self.learn.dls.train
            idx = dl.idx[:self.sample].to(dl.x.device)
            with torch.no_grad():
                body.fit_whitening(net.prep(dl.x[idx].to(body[0].weight.device)))
            self.whitened = True
        self.step, self.total = 0, max(1, self.n_epoch * len(self.learn.dls.train))
        self.ema = {k: v.detach().clone() for k, v in net.state_dict().items() if v.is_floating_point()}

    def before_epoch(self):
        _body(self.learn.model)[0].bias.requires_grad_(self.epoch < WHITEN_BIAS_EPOCHS)

    def before_validate(self):
        _body(self.learn.model).quick = True

    def after_validate(self):
        _body(self.learn.model).quick = False

    def after_step(self):
        self.step += 1
        if self.step % LOOKAHEAD_EVERY == 0:
            self._average(0.95 ** 5 * (self.step / self.total) ** 3)

    def after_fit(self):
        _body(self.learn.model).quick = False
        self._average(1.0)

    @torch.no_grad()
    def _average(self, decay: float) -> None:
        for k, v in _net(self.learn.model).state_dict().items():
            if k in self.ema:
                self.ema[k].lerp_(v, 1 - decay)
                v.copy_(self.ema[k])


def airbench(cfg) -> dict:
    """What make_learner and fit use instead of their defaults (Adam, cross-entropy, fit_one_cycle's shape)."""
    lr = cfg.lr * cfg.bs / BS  # the rung's rate is for BS images: per example, as airbench counts it
    return {"opt_func": functools.partial(OptimWrapper, opt=functools.partial(
                torch.optim.SGD, momentum=MOMENTUM, nesterov=True)),
            "loss_func": nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING),
            "wd": [WD / BIAS_LR, WD], "cbs": [Recipe()],
            "one_cycle": {"lr_max": np.array([lr * BIAS_LR, lr]), "div": 5.0, "pct_start": 0.23,
                          "moms": (MOMENTUM, MOMENTUM, MOMENTUM)}}
