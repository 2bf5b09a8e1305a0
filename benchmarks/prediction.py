"""Prediction: Predictor.predict vs the raw forward and vs fastai's learn.predict; predict_many vs batched forward;
the explain call (Grad-CAM heatmap and overlay) vs predict."""
from __future__ import annotations

import warnings

import numpy as np
import torch

from logoapp import models as M
from logoapp.predict import Predictor

from .common import alternate, calls, figure, log, median, paired, per_call


def fastai_learner(ds, model):
    """A fastai Learner over the same folder (DataBlock + ImageDataLoaders-style pipeline) around the same model:
    the model takes fastai's float (N, C, H, W) batches in [0, 1] as well as logoapp's uint8 NHWC."""
    from fastai.callback.progress import ProgressCallback
    from fastai.vision.all import (CategoryBlock, CrossEntropyLossFlat, DataBlock, ImageBlock, Learner, PILImage,
                                   RandomSplitter, Resize, get_image_files, parent_label)

    class PILImageRGBA(PILImage):
        _open_args = {"mode": "RGBA"}

    block = DataBlock(blocks=(ImageBlock(PILImageRGBA if ds.channels == 4 else PILImage), CategoryBlock),
                      get_items=get_image_files, get_y=parent_label, splitter=RandomSplitter(0.2, seed=42),
                      item_tfms=Resize(ds.size, method="squish"))
    dls = block.dataloaders(ds.root, bs=64, num_workers=0)
    assert list(dls.vocab) == ds.vocab, (dls.vocab, ds.vocab)
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat())  # its activation: softmax, as in the book
    learn.logger = lambda *a, **k: None
    if ProgressCallback in [type(c) for c in learn.cbs]:
        learn.remove_cb(ProgressCallback)  # no bar: fastai's best case, and stdout stays clean
    return learn


def bench(ds, quick: bool) -> dict:
    """Figures for single-image latency (vs forward, vs fastai) and batch throughput."""
    model, info = M.build("cnn", ds.channels, ds.c, ds.size, aug=M.default_aug(ds.channels))
    pred = Predictor(model, {"vocab": ds.vocab, "data_size": ds.size, "channels": ds.channels})
    path = ds.items[int(ds.idx("valid")[0])]
    x = torch.from_numpy(pred.prepare(path)[None])

    @torch.inference_mode()
    def forward():
        return model(x)

    @torch.inference_mode()
    def own_forward():  # the Predictor's inference copy (batch-norm folded, channels-last), for the record
        return pred.fast(x)

    log("prediction: building a fastai Learner over the same images")
    learn = fastai_learner(ds, model)
    fa_label, _, fa_probs = learn.predict(path)
    ours = pred.predict(path)
    assert max(ours, key=ours.get) == fa_label, (ours, fa_label)  # same model, same input, same answer
    assert np.allclose([ours[c] for c in ds.vocab], fa_probs.numpy(), atol=1e-3), (ours, fa_probs)
    rounds = 30 if quick else 300
    log(f"prediction latency: {rounds} rounds of predict / forward, then of predict / learn.predict, taking turns "
        "call by call")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fn in (lambda: pred.predict(path), forward, own_forward, lambda: learn.predict(path)):
            fn()  # warm-up
        # two separate contests, so fastai's heavier calls (which flush caches) sit between neither side of the first
        r = calls({"predict": lambda: pred.predict(path), "forward": forward, "own_forward": own_forward}, rounds)
        rf = calls({"predict": lambda: pred.predict(path), "fastai": lambda: learn.predict(path)}, rounds)
    r["fastai"], r["predict_vs_fastai"] = rf["fastai"], rf["predict"]
    p, f, fa, of = (median(r[k]) * 1000 for k in ("predict", "forward", "fastai", "own_forward"))
    spread = {k: [round(float(np.percentile(v, q)) * 1000, 3) for q in (10, 50, 90)] for k, v in r.items()}
    figs = {
        "predict_vs_forward": figure(
            "predict latency vs raw forward", p, "ms", f, "ms (model forward on a prepared tensor)",
            paired(r["predict"], r["forward"]),
            "<=", 1.3, f"one {ds.size}px file through Predictor.predict (decode + forward + softmax) vs model(x) on "
            f"the already-decoded uint8 tensor; {rounds} calls each, taking turns call by call; values are medians, "
            f"the ratio is the median of per-round paired ratios. Predict runs an inference copy of the model "
            "(batch-norm folded, channels-last, run as one flat loop of tensor functions) whose forward took "
            f"{of:.2f} ms ({paired(r['own_forward'], r['forward']):.2f}x the raw forward): the rest is decoding",
            percentiles_10_50_90_ms=spread, predictor_forward_ms=of),
        "predict_vs_fastai": figure(
            "predict latency vs fastai", median(rf["predict"]) * 1000, "ms", fa,
            "ms (fastai learn.predict, same model)",
            paired(rf["predict"], rf["fastai"]),
            "<=", 0.6, "Predictor.predict(path) vs learn.predict(path) on a fastai Learner (DataBlock over the same "
            f"folder, no progress bar, num_workers=0) wrapping the same model; its own {rounds} rounds, taking turns "
            "call by call",
            percentiles_10_50_90_ms=spread),
    }

    figs["explain_vs_predict"] = explain_latency(model, pred, path, ds, 20 if quick else 100)

    n_files = 64 if quick else 256
    files = list(ds.items[:n_files])
    xs = torch.from_numpy(np.stack([pred.prepare(f) for f in files]))

    @torch.inference_mode()
    def batched():
        for i in range(0, len(xs), 64):
            model(xs[i:i + 64])

    log(f"batch prediction: predict_many on {n_files} files vs batched forward")
    rounds = 3 if quick else 8
    r = alternate({"many": per_call(lambda: pred.predict_many(files, bs=64), 1), "forward": per_call(batched, 1)},
                  rounds)
    a, b = n_files / median(r["many"]), n_files / median(r["forward"])
    figs["predict_many"] = figure(
        "batch prediction throughput", a, "img/s", b, "img/s (batched forward, bs 64)",
        paired(r["forward"], r["many"]), ">=", 0.6,
        f"predict_many on {n_files} files (decode + forward) vs model(x) on the same images already decoded "
        "(goal ours: decoding may add at most 2/3 of the forward time), "
        f"bs 64; {rounds} interleaved rounds; values are medians, the ratio is the median of paired ratios",
        samples={k: [round(n_files / s, 1) for s in v] for k, v in r.items()})
    return figs


def explain_latency(model, pred: Predictor, path: str, ds, rounds: int) -> dict:
    """explain(model, meta, path) (Grad-CAM on the cnn: a forward and a backward pass on the model itself, the
    heatmap scaled to the image and drawn over it) against Predictor.predict(path), taking turns call by call."""
    from logoapp.explain import explain
    meta = {"arch": "cnn", "vocab": ds.vocab, "data_size": ds.size, "channels": ds.channels}
    log(f"explain latency: {rounds} rounds of explain / predict, taking turns call by call")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explain(model, meta, path)  # warm-up
        r = calls({"explain": lambda: explain(model, meta, path), "predict": lambda: pred.predict(path)}, rounds)
    e, p = median(r["explain"]) * 1000, median(r["predict"]) * 1000
    return figure(
        "explain latency vs predict", e, "ms", p, "ms (Predictor.predict, same file)",
        paired(r["explain"], r["predict"]), "<=", 10,
        f"one {ds.size}px file through logoapp.explain.explain (decode, Grad-CAM forward and backward on the cnn "
        f"itself, heatmap resized to the image, overlay drawn) vs Predictor.predict on the same file; {rounds} "
        "calls each, taking turns call by call; values are medians, the ratio is the median of paired ratios "
        "(goal ours: a heatmap costs at most ten predictions)",
        percentiles_10_50_90_ms={k: [round(float(np.percentile(v, q)) * 1000, 3) for q in (10, 50, 90)]
                                 for k, v in r.items()})
