"""Training with fastai's Learner over the uint8 cache, reported as a stream of event records (logoapp.events)."""
from __future__ import annotations

import queue
import random
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from . import distrib, ondisk
from . import models as M
from .events import Batch, Done, Epoch, Error, Event, Start

warnings.filterwarnings("ignore", message=".*torch.jit.script.*")
import fastai.callback.fp16  # noqa: E402,F401  (patches Learner.to_fp32)
import fastai.callback.schedule  # noqa: E402,F401  (patches fit_one_cycle, fine_tune, lr_find)
from fastai.callback.core import Callback, CancelFitException  # noqa: E402
from fastai.callback.fp16 import AMPMode, MixedPrecision  # noqa: E402
from fastai.data.core import DataLoaders  # noqa: E402
from fastai.learner import Learner  # noqa: E402
from fastai.metrics import accuracy  # noqa: E402

MAX_UPDATES_PER_S = 5
__all__ = ["Batch", "Done", "Epoch", "Error", "Event", "Start", "TrainConfig", "fit", "lr_find", "train"]


@dataclass
class TrainConfig:
    model: str = M.DEFAULT_MODEL
    epochs: int | None = None     # None: the rung's default (models.Rung)
    lr: float | None = None
    bs: int | None = None         # None: the rung's default (64; cnn-wide 512)
    size: int | None = None       # model input size; None: the rung's default, at most the data's (models.default_size)
    aug: bool | None = None       # None: the rung's default (on for image models, off for linear/mlp)
    seed: int = 42
    wd: float = 0.01
    pretrained: bool = True       # rungs with an ImageNet backbone start from its weights (fetched on first use)

    def resolved(self, ds=None) -> TrainConfig:
        """Fill the rung's defaults in; with ds, the epochs and input size suggested for that data
        (models.suggested: photos get a larger input and, in small sets, more epochs)."""
        r = M.get(self.model)
        bs = self.bs or r.bs
        s = M.suggested(self.model, ds.size, ds.channels, len(ds.idx("train")), bs) if ds is not None else {}
        return TrainConfig(self.model, self.epochs or s.get("epochs") or r.epochs, self.lr or r.lr, bs,
                           self.size or s.get("size"), r.augment if self.aug is None else self.aug, self.seed,
                           self.wd, self.pretrained)


def backbone_weights(cfg: TrainConfig, progress=None) -> Path | None:
    """The ImageNet weights file a run of cfg starts from: fetched (progress(done, total)) when not on disk yet, a
    weights.WeightsError naming the fix when it cannot be had; None for rungs without a backbone or by choice."""
    from .weights import fetch, verify
    rung = M.get(cfg.model)
    if not rung.weights or not (cfg.pretrained or rung.head_only):
        return None
    return verify(fetch(rung.weights, progress=progress))


def still_rising(history: list[dict], eps: float = 1e-9) -> bool:
    """Whether validation accuracy was still going up at the last epoch (more epochs would likely help)."""
    acc = [h.get("accuracy") for h in history if h.get("accuracy") == h.get("accuracy")]  # NaN: no valid split
    return len(acc) >= 2 and acc[-1] > acc[-2] + eps and acc[-1] >= max(acc) - eps


class TensorLoader:
    """Batches straight from the uint8 cache: one gather per batch, no per-item Python, no decoding."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, idx: np.ndarray, bs: int, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False, device=None, resident: bool | None = None):
        with warnings.catch_warnings():  # a memory-mapped cache is read-only: nothing here writes to it
            warnings.simplefilter("ignore", UserWarning)
            self.x, self.y = torch.from_numpy(images), torch.from_numpy(np.asarray(labels, np.int64))
        self.pages = ondisk.Reader(images)  # a mapped cache: its pages leave this process's memory as batches pass
        self.idx = torch.as_tensor(np.asarray(idx, np.int64))
        self.bs, self.shuffle, self.drop_last = bs, shuffle, drop_last and len(idx) > bs
        self.sharded = shuffle and distrib.active()  # training under torchrun: this process's slice of each epoch
        self.gen = torch.Generator().manual_seed(seed)
        self.device = torch.device(device or "cpu")
        if resident is None:  # on a GPU the whole uint8 set goes there when it fits: batches are gathered there
            resident = self.device.type == "cuda" and self.x.nbytes < 2**31
        if resident:
            self.x, self.y = self.x.to(self.device), self.y.to(self.device)
        self.dataset = self.idx  # fastai looks for .dataset; its length is the item count

    @property
    def n(self) -> int:
        return len(self.idx)

    def __len__(self) -> int:
        n = self.n // distrib.world() if self.sharded else self.n
        return n // self.bs if self.drop_last else -(-n // self.bs)

    def to(self, device):
        self.device = torch.device(device)
        if self.device.type != "cuda" and self.x.is_cuda:
            self.x, self.y = self.x.cpu(), self.y.cpu()
        return self

    def __iter__(self):
        idx = self.idx[torch.randperm(self.n, generator=self.gen)] if self.shuffle else self.idx
        if self.sharded:
            idx = distrib.shard(idx)  # the same permutation everywhere (same seed): disjoint slices
        pin = self.device.type == "cuda" and not self.x.is_cuda
        for i in range(len(self)):
            b = idx[i * self.bs:(i + 1) * self.bs].to(self.x.device)
            xb, yb = self.x[b], self.y[b]
            self.pages.read(xb.nbytes)
            if pin:
                xb, yb = xb.pin_memory(), yb.pin_memory()
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)


def dataloaders(ds, bs: int, seed: int, device, size: int | None = None) -> DataLoaders:
    """Train (shuffled, by seed) and valid loaders; images resized once to the model's size when it differs (in
    memory; a memory-mapped cache is read a batch at a time)."""
    tr, va = ds.idx("train"), ds.idx("valid")
    images, labels = ds.images, ds.labels
    # only train and valid images, resized once: tr and va become positions in them. Not for a memory-mapped cache:
    # the model resizes each batch itself (identically: Prep.resize), so memory stays bounded by the batch
    if size and size != ds.size and not ondisk.is_mapped(ds.images):
        keep = np.concatenate([tr, va])
        images, labels = M.resize_images(ds.images, size, keep), ds.labels[keep]
        tr, va = np.arange(len(tr)), np.arange(len(tr), len(keep))
    per_process = max(1, bs // distrib.world()) if distrib.active() else bs  # the global batch stays bs
    train = TensorLoader(images, labels, tr, per_process, shuffle=True, seed=seed, drop_last=True, device=device)
    valid_bs = min(bs * 2, max(bs, 2**24 // max(1, images[0].size)))  # big images: no larger than a train batch
    valid = TensorLoader(images, labels, va, valid_bs, device=device)
    return DataLoaders(train, valid, device=device)


def channel_stats(ds, n: int = 2048, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (a sample of) the training images, for normalisation."""
    tr = ds.idx("train")
    pick = np.random.default_rng(seed).choice(tr, min(n, len(tr)), replace=False) if len(tr) else tr
    pick, c = np.sort(pick), ds.channels
    s, s2, n_px = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    step, pages = max(1, 2**22 // max(1, ds.images[0].size)), ondisk.Reader(ds.images)  # 4M values at a time
    for i in range(0, len(pick), step):
        block = ds.images[pick[i:i + step]]
        pages.read(block.nbytes)
        x = torch.from_numpy(block).flatten(0, 2).double().div_(255)
        s, s2, n_px = s + x.sum(0), s2 + (x * x).sum(0), n_px + len(x)
    if not n_px:
        return [float("nan")] * c, [float("nan")] * c
    mean = s / n_px
    std = ((s2 - n_px * mean * mean) / max(1, n_px - 1)).clamp(min=0).sqrt()  # unbiased, as Tensor.std
    return mean.float().tolist(), std.float().clamp(min=1e-3).tolist()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Events(Callback):
    """Turns fastai's batches and epochs into event records; checks the stop flag before every batch."""
    order = 60  # after the Recorder has written this epoch's metrics

    def __init__(self, emit: Callable[[Event], None], stop: threading.Event, total_epochs: int):
        self.emit, self.stop, self.total = emit, stop, total_epochs
        self.t_fit, self.last, self.n_seen, self.stopped, self.epochs = None, 0.0, 0, False, []
        self.acc_avg, self.n_batches = 0.0, 0  # exponential moving average of batch accuracy, like fastai's smooth_loss

    def before_fit(self):  # fine_tune runs two fits (frozen, then unfrozen): one timeline across both
        self.t_fit = self.t_fit or time.perf_counter()

    def before_epoch(self):
        self.t_epoch, self.correct, self.count, self.loss_sum = time.perf_counter(), 0, 0, 0.0

    def before_batch(self):
        if self.stop.is_set():
            self.stopped = True
            raise CancelFitException()

    def after_batch(self):
        if not self.training:
            return
        bs = len(self.yb[0])
        self.n_seen += bs
        self.count += bs
        self.loss_sum += float(self.loss) * bs
        correct = int((self.pred.argmax(1) == self.yb[0]).sum())
        self.correct += correct
        self.n_batches += 1
        self.acc_avg = 0.98 * self.acc_avg + 0.02 * correct / bs
        now, last_batch = time.perf_counter(), self.iter == self.n_iter - 1
        if now - self.last >= 1 / MAX_UPDATES_PER_S or last_batch:
            self.last = now
            ep = len(self.epochs)
            self.emit(Batch(epoch=ep, iter=self.iter, n_iter=self.n_iter, n_epoch=self.total,
                            train_loss=self.loss_sum / self.count, train_acc=self.correct / self.count,
                            smooth_loss=float(self.learn.smooth_loss),
                            smooth_acc=self.acc_avg / (1 - 0.98 ** self.n_batches),
                            lr=float(self.opt.hypers[-1]["lr"]),
                            progress=min(1.0, (ep + (self.iter + 1) / self.n_iter) / self.total),
                            elapsed=now - self.t_fit))

    def after_epoch(self):
        vals = self.recorder.values[-1] if self.recorder.values else []
        names = list(self.recorder.metric_names[1:-1])
        rec = {k: (float("nan") if v is None else v) for k, v in zip(names, vals)}  # None: no validation split
        e = Epoch(epoch=len(self.epochs), n_epoch=self.total, train_loss=float(rec.get("train_loss", float("nan"))),
                  valid_loss=float(rec.get("valid_loss", float("nan"))),
                  accuracy=float(rec.get("accuracy", float("nan"))),
                  seconds=time.perf_counter() - self.t_epoch, elapsed=time.perf_counter() - self.t_fit)
        self.epochs.append(e)
        self.emit(e)


def mixed_precision(dev: torch.device) -> bool:
    """Float16 autocast with a gradient scaler: on GPUs (CPUs lack fast float16; cnn-wide uses bfloat16 there)."""
    return dev.type == "cuda"


class Mixed(MixedPrecision):
    """fastai's mixed precision on the data's device: its own callback hard-codes CUDA, this one takes the device
    type from the DataLoaders, so the GPU path's logic (autocast, scaled gradients, skipped steps) also runs on a
    CPU in the tests."""

    def before_fit(self):
        dtype = torch.float16 if self.amp_mode == AMPMode.FP16 else torch.bfloat16
        self.kwargs["enabled"] = dtype == torch.float16  # bfloat16 has float32's range: no scaler needed
        dev = torch.device(self.dls.device or "cpu").type
        self.autocast = torch.autocast(dev, dtype=dtype)
        self.learn.scaler, self.scales = torch.amp.GradScaler(dev, **self.kwargs), []


def make_learner(ds, cfg: TrainConfig, dev=None, cbs=(), weights: Path | None = None) -> tuple[Learner, dict]:
    """A fastai Learner for cfg.model on ds, with the prep (normalisation, size) and augmentation inside the model.
    weights: the backbone's ImageNet file (backbone_weights); for a features rung the Learner trains the head only
    on cached features, and info["net"] is the whole model."""
    dev = dev or M.device()
    seed_everything(cfg.seed)
    rung = M.get(cfg.model)
    # ImageNet backbones get ImageNet's normalisation (build picks it), trained from its weights or not
    mean, std = (None, None) if rung.weights else channel_stats(ds, seed=cfg.seed)
    aug = {**M.default_aug(ds.channels, enabled=cfg.aug and not rung.head_only), **(rung.aug or {})}
    model, info = M.build(cfg.model, ds.channels, ds.c, ds.size, cfg.size, mean, std, aug,
                          pretrained=False, weights=weights)
    mean, std = model.prep.mean.flatten().tolist(), model.prep.std.flatten().tolist()
    if not rung.weights:
        info["weights_note"] = ""
    elif not cfg.pretrained and not rung.head_only:
        info["weights_note"] = "random init, as asked (no ImageNet weights)"
    if rung.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if rung.head_only:
        from .features import head_learner
        info["net"] = model.eval()
        learn = head_learner(ds, cfg, model, info, dev, cbs)
    else:
        extra = {"splitter": rung.groups} if rung.groups else {}  # parameter groups: fine_tune freezes the body
        rec = rung.recipe(cfg) if rung.recipe else {}  # a rung's own optimizer, loss and schedule (wide.py)
        if "opt_func" in rec:
            extra["opt_func"] = rec["opt_func"]
        learn = Learner(dataloaders(ds, cfg.bs, cfg.seed, dev, info["size"]), model,
                        loss_func=rec.get("loss_func") or nn.CrossEntropyLoss(), metrics=accuracy,
                        wd=rec.get("wd", cfg.wd), cbs=list(cbs) + rec.get("cbs", []), **extra)
        info["one_cycle"] = rec.get("one_cycle", {})
    learn.logger = lambda *a, **k: None
    from fastai.callback.progress import ProgressCallback
    if ProgressCallback in [type(c) for c in learn.cbs]:
        learn.remove_cb(ProgressCallback)
    if mixed_precision(dev):
        learn.add_cb(Mixed())
    info.update(mean=mean, std=std, aug=aug, device=str(dev))
    return learn, info


def lr_find(ds, cfg: TrainConfig) -> dict:
    """fastai's learning-rate finder: the suggested rate and the (lr, loss) curve."""
    cfg = cfg.resolved(ds)
    learn, _ = make_learner(ds, cfg, weights=backbone_weights(cfg))
    n = max(40, min(100, len(learn.dls.train) * 3))  # fastai repeats epochs as needed: small sets still get a curve
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sug = learn.lr_find(num_it=n, show_plot=False)
    rec = learn.recorder
    lrs, losses = [float(x) for x in rec.lrs], [float(x) for x in rec.losses]
    return {"suggested": float(sug.valley), "lrs": lrs, "losses": losses}


def fit(ds, cfg: TrainConfig, emit: Callable[[Event], None] = lambda e: None, stop: threading.Event | None = None,
        out: str | Path | None = None) -> Done:
    """Train cfg.model on ds, calling emit(event) as it goes; returns the Done record. When out is given it saves
    there, first fitting the calibration and the unknown-input test on the validation (else test) split when there
    is one (calibrate.fit_calibration): the model folder then answers with calibrated probabilities and "unknown"."""
    from . import calibrate, store
    from .evaluate import evaluate
    cfg = cfg.resolved(ds)
    stop = stop or threading.Event()
    if distrib.active() and distrib.rank() != 0:  # one of several processes: rank 0 reports and saves
        emit, out = (lambda e: None), None
    ev = Events(emit, stop, cfg.epochs)
    learn, info = make_learner(ds, cfg, cbs=[ev, distrib.DataParallel()] if distrib.active() else [ev],
                               weights=backbone_weights(cfg))
    tune = info["pretrained"] and not M.get(cfg.model).head_only
    if tune:
        ev.total = cfg.epochs + 1  # fine_tune: one frozen epoch first
    emit(Start(model=cfg.model, config=asdict(cfg), n_train=int(len(ds.idx("train"))),
               n_valid=int(len(ds.idx("valid"))), n_params=M.n_params(info.get("net", learn.model)),
               device=info["device"],
               weights_note=info["weights_note"], n_iter=len(learn.dls.train)))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if tune:  # fastai's fine_tune: the head alone for an epoch, then all with discriminative learning rates
            learn.fine_tune(cfg.epochs, cfg.lr)
        else:
            learn.fit_one_cycle(cfg.epochs, **{"lr_max": cfg.lr, **info.get("one_cycle", {})})
    seconds = time.perf_counter() - t0
    learn.to_fp32()  # drops the mixed-precision callback, if any
    model = info.get("net", learn.model).eval().to("cpu").to(memory_format=torch.contiguous_format)
    res = evaluate(model, ds, "valid")
    history = [e.history() for e in ev.epochs]
    meta = {"arch": cfg.model, "vocab": ds.vocab, "size": info["size"], "data_size": ds.size, "channels": ds.channels,
            "mean": info["mean"], "std": info["std"], "aug": info["aug"], "train": asdict(cfg),
            "metrics": {"accuracy": res.accuracy, "per_class": res.per_class, "history": history,
                        "seconds": seconds, "stopped": ev.stopped},
            "data": {"root": ds.root, "n_train": int(len(ds.idx("train"))), "n_valid": int(len(ds.idx("valid"))),
                     "valid_pct": ds.valid_pct, "seed": ds.seed, "presplit": ds.presplit},
            "pretrained": info["pretrained"], "n_params": M.n_params(model), "weights_note": info["weights_note"]}
    meta.update(store.input_meta(ds))  # how prediction reads inputs as training did: background, resize method
    if info["backbone"]:
        meta.update(backbone=info["backbone"], rgba=("composed on white before the ImageNet backbone"
                                                     if info["compose"] else None))
    if "features" in info:
        meta["metrics"]["features"] = info["features"]
    extra, cal_s = None, None
    if out and res.n:  # a folder the app and CLI use: calibrated, with its unknown test (needs held-out images)
        t1 = time.perf_counter()
        add, extra = calibrate.fit_calibration(model, ds)
        cal_s = time.perf_counter() - t1
        meta.update(add)
        meta["metrics"]["calibration_seconds"] = cal_s
    path = str(store.save(model, meta, out, extra=extra)) if out else None
    return Done(model=cfg.model, accuracy=res.accuracy, per_class=res.per_class, history=history, seconds=seconds,
                images_per_second=ev.n_seen / seconds if seconds else 0.0, n_params=M.n_params(model),
                stopped=ev.stopped, pretrained=info["pretrained"], weights_note=info["weights_note"],
                model_path=path, temperature=meta.get("temperature"), unknown=meta.get("unknown"),
                calibration_seconds=cal_s, net=model, meta=meta, extra=extra or {})


def train(ds, cfg: TrainConfig, stop: threading.Event | None = None, out=None) -> Iterator[Event]:
    """Train in a worker thread, yielding Start, Batch and Epoch records then one Done (or Error) record.
    Closing the iterator early sets the stop flag."""
    q: queue.Queue = queue.Queue()
    stop = stop or threading.Event()

    def run():
        try:
            q.put(fit(ds, cfg, q.put, stop, out))
        except Exception as e:  # reported as an event: the UI shows it, nothing crashes
            q.put(Error(message=f"{type(e).__name__}: {e}"))
        q.put(None)

    th = threading.Thread(target=run, daemon=True, name="logoapp-train")
    th.start()
    try:
        while (e := q.get()) is not None:
            yield e
    finally:
        stop.set()
        th.join()
