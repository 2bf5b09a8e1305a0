"""Training: logoapp's fastai path vs a bare PyTorch loop, the model ladder, the cnn's time to its target accuracy."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from logoapp import ideal
from logoapp import models as M
from logoapp import train as T
from logoapp.train import TrainConfig

from .common import figure, log, median, paired, ratio


class BareLoop:
    """The reference: the model as make_learner prepares it (build + channels-last), the same TensorLoader over the
    same uint8 tensors, Adam + cross-entropy, one step per call; nothing else."""

    def __init__(self, ds, bs: int):
        cfg = TrainConfig("cnn", epochs=1, bs=bs).resolved()
        T.seed_everything(cfg.seed)
        mean, std = T.channel_stats(ds, seed=cfg.seed)
        aug = M.default_aug(ds.channels, cfg.aug)
        model, info = M.build("cnn", ds.channels, ds.c, ds.size, cfg.size, mean, std, aug)
        self.model = model.to(memory_format=torch.channels_last).train()
        self.batches = iter(T.dataloaders(ds, bs, cfg.seed, torch.device("cpu"), info["size"]).train)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)

    def step(self) -> None:
        xb, yb = next(self.batches)
        loss = F.cross_entropy(self.model(xb), yb)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


def lockstep(ds, bs: int) -> tuple[list[float], list[float]]:
    """One epoch of `logoapp.train.fit` (Learner, callbacks, events) with one bare-loop step run inside each batch
    event, so the two alternate step by step and see the same machine load. Returns per-step seconds of each side
    (steps 1..n-1: the first, warm-up step of each is left out); logoapp's exclude the bare step run between them."""
    bare = BareLoop(ds, bs)
    stamps, inside = [], []

    def emit(e):
        if e.type != "batch":
            return
        t = time.perf_counter()
        stamps.append(e.elapsed)
        bare.step()
        inside.append(time.perf_counter() - t)

    every = T.MAX_UPDATES_PER_S
    T.MAX_UPDATES_PER_S = float("inf")  # an event after every batch (more work on logoapp's side, not less)
    try:
        T.fit(ds, TrainConfig("cnn", epochs=1, bs=bs), emit)
    finally:
        T.MAX_UPDATES_PER_S = every
    ours = [stamps[k] - stamps[k - 1] - inside[k - 1] for k in range(1, len(stamps))]
    return ours, inside[1:]


def throughput(ds, bs: int, rounds: int) -> dict:
    """Images/s of training steps, logoapp vs bare loop in lockstep; median step times over all rounds."""
    log(f"training throughput: {rounds} lockstep epoch(s) of logoapp's cnn fit and the bare loop, bs {bs}")
    ours, bare = [], []
    for _ in range(rounds):
        a, b = lockstep(ds, bs)
        ours += a
        bare += b
    a, b = bs / median(ours), bs / median(bare)
    return figure(
        "training throughput (cnn)", a, "img/s", b, "img/s (bare PyTorch loop)", paired(bare, ours), ">=", 0.9,
        f"{len(ours)} optimizer steps each ({rounds} epoch(s) of {len(ours) // rounds + 1} steps of bs {bs}, the "
        "first left out), taking turns step by step: one bare-loop step runs inside each logoapp batch event "
        "(and is subtracted from logoapp's time); a step is batch to batch, data loading included. Value and "
        "reference: bs / median step time; ratio: median of the per-step paired ratios",
        samples={"logoapp_ms": [round(x * 1000, 1) for x in ours], "bare_ms": [round(x * 1000, 1) for x in bare]},
        ratio_of_totals=ratio(sum(bare), sum(ours)))


# What the built-in set is built to show with every rung at its defaults: each rung earns its place (issue 16)
RANGES = {"pixel": (0.55, 0.75), "linear": (0.70, 0.88), "cnn": (0.97, 1.0), "pair": (0.70, 0.92)}
MLP_OVER_LINEAR = 0.03


def pair_baseline(ds) -> float | None:
    """Pixel baseline on the look-alike red pair alone (the first two built-in clubs), on ds's own split."""
    from logoapp.synth import class_names
    if not set(class_names(2)) <= set(ds.vocab):
        return None
    ks = [ds.vocab.index(c) for c in class_names(2)]
    keep = lambda idx: idx[np.isin(ds.labels[idx], ks)]  # noqa: E731
    tr, va = keep(ds.idx("train")), keep(ds.idx("valid"))
    remap = np.full(ds.c, -1)
    remap[ks] = [0, 1]
    model = ideal.PixelSimilarity(ideal.class_means(ds.images[tr], remap[ds.labels[tr]], 2))
    preds, _ = ideal.predict_idx(model, ds.images[va])
    return float((preds.numpy() == remap[ds.labels[va]]).mean())


def pretrained_rungs(quick: bool) -> list[str]:
    """The ImageNet rungs whose weights are on disk, in full mode (the benchmarks never download; quick mode keeps
    to the from-scratch ladder, so its figures do not depend on what a machine has cached)."""
    from logoapp import weights as W
    return [] if quick else [n for n in ("features", "resnet18") if W.path(M.get(n).weights) is not None]


def ladder(ds, quick: bool) -> tuple[list[dict], dict, dict | None]:
    """Pixel baseline, linear, mlp, cnn (resnet18 from scratch in full mode) at their defaults on ds, and the
    pretrained rungs whose ImageNet weights are on disk (features: a second run with other epochs shows what a
    retrain costs once its features are cached), each judged against the rung below it. Returns (rows, figures by
    name, the cnn run's epochs and seconds)."""
    rows, cnn = [], None
    log("ladder: pixel baseline")
    t = time.perf_counter()
    b = ideal.baseline(ds)
    rows.append({"model": "pixel", "accuracy": b["accuracy"], "seconds": time.perf_counter() - t,
                 "n_params": int(b["model"].means.numel()), "epochs": 0})
    runs = [(n, n, n != "resnet18") for n in ["linear", "mlp", "cnn"] + ([] if quick else ["resnet18"])]
    runs += [(n if n == "features" else f"{n}_imagenet", n, True) for n in pretrained_rungs(quick)]
    for label, name, pretrained in runs:
        cfg = TrainConfig(name, epochs=1 if quick and name != "features" else None, pretrained=pretrained)
        log(f"ladder: {name} ({cfg.resolved().epochs} epoch(s))")
        events = []
        t = time.perf_counter()
        done = T.fit(ds, cfg, events.append)
        rows.append({"model": label,
                     "accuracy": done.accuracy, "seconds": done.seconds, "n_params": done.n_params,
                     "epochs": len(done.history), "pretrained": done.pretrained,
                     "wall_seconds": time.perf_counter() - t, "features": done.meta["metrics"].get("features")})
        if name == "cnn":
            cnn = {"epochs": [e.to_dict() for e in events if e.type == "epoch"], "seconds": done.seconds}
    figs = features_figure(ds, rows)
    figs |= {f"ladder_{row['model']}": rung_figure(rows, k, quick, 1 / ds.c) for k, row in enumerate(rows)}
    pair = pair_baseline(ds)
    if pair is not None:
        figs["ladder_pair"] = banded(figure(
            "ladder: pixel accuracy, red pair", pair, "accuracy", 0.5, "accuracy (chance)", ratio(pair, 0.5), ">=",
            1.0, "the pixel baseline on the two look-alike red clubs alone (their images in the same split)"), "pair")
    return rows, figs, cnn


def rung_figure(rows: list[dict], k: int, quick: bool, chance: float) -> dict:
    """A rung's figure: its accuracy against the rung below (chance for the pixel baseline; linear + 3 points for
    the mlp; the pixel baseline for a ResNet without ImageNet weights), and the range the built-in set aims at."""
    row, below = rows[k], rows[k - 1] if k else None
    name, pixel = row["model"], rows[0]["accuracy"]
    if below is None:
        ref, ref_name = chance, "chance"
    elif name == "mlp":
        ref, ref_name = below["accuracy"] + MLP_OVER_LINEAR, "linear + 3 points"
    elif name.startswith("resnet") and not row.get("pretrained"):
        ref, ref_name = pixel, "pixel baseline; random init"
    elif row.get("pretrained") and name not in ("linear", "mlp", "cnn"):
        cnn = next(r for r in rows if r["model"] == "cnn")
        ref, ref_name = cnn["accuracy"], "cnn; ImageNet weights"
    else:
        ref, ref_name = below["accuracy"], below["model"]
    what = ("class means of the training split, nearest mean by L1 distance" if below is None else
            f"{row['epochs']} epoch(s), {'quick: 1 epoch' if quick else 'default settings'}")
    fig = figure(f"ladder: {name} accuracy", row["accuracy"], "accuracy", ref, f"accuracy ({ref_name})",
                 ratio(row["accuracy"], ref), ">=", 1.0,
                 f"valid accuracy ({what}) vs the {ref_name}; {row['seconds']:.1f} s, {row['n_params']:,} "
                 f"{'values in the class means' if below is None else 'parameters'}",
                 seconds=row["seconds"], n_params=row["n_params"], epochs=row["epochs"])
    return banded(fig, name)


def banded(fig: dict, key: str) -> dict:
    """Add the accuracy range of RANGES[key] (when there is one) to a figure's goal: it passes only inside it."""
    if key not in RANGES:
        return fig
    lo, hi = RANGES[key]
    inside = fig["value"] is not None and lo <= fig["value"] <= hi
    fig["goal"]["text"] += f"; {lo:.0%}-{hi:.0%}" if hi < 1 else f"; ≥ {lo:.0%}"
    fig.update({"range": [lo, hi], "in_range": inside, "pass": fig["pass"] and inside})
    return fig


def features_figure(ds, rows: list[dict]) -> dict:
    """The features rung retrained with other epochs (its features cached by the ladder's run) vs the cnn's run."""
    cnn = next((r for r in rows if r["model"] == "cnn"), None)
    if not any(r["model"] == "features" for r in rows) or cnn is None:
        log("features rung not run: full mode with mobilenet_v3_large's weights on disk (logoapp weights download "
            "mobilenet_v3_large)")
        return {}
    done = T.fit(ds, TrainConfig("features", epochs=5))
    f = done.meta["metrics"]["features"]
    return {"features_retrain": figure(
        "features rung: retrain seconds", done.seconds, "s", cnn["seconds"], "s (cnn run)",
        ratio(done.seconds, cnn["seconds"]), "<=", 0.25,
        f"5 epochs of the head on cached features ({f['cached']} cached, {f['computed']} computed), valid accuracy "
        f"{done.accuracy:.1%} vs the cnn's {cnn['accuracy']:.1%}", accuracy=done.accuracy)}


def time_to(cnn: dict | None, target: float) -> dict:
    """Seconds of the default cnn run until an epoch's valid accuracy reaches target, vs the whole run."""
    if not cnn:
        return figure(f"time to {target:.0%} (cnn)", None, "s", None, "s (whole default run)", None, "<=", 1.0,
                      "cnn rung was not run")
    hit = next((e for e in cnn["epochs"] if e["accuracy"] >= target), None)
    best = max((e["accuracy"] for e in cnn["epochs"]), default=float("nan"))
    value = hit["elapsed"] if hit else None
    return figure(f"time to {target:.0%} (cnn)", value, "s", cnn["seconds"], "s (whole default run)",
                  ratio(value, cnn["seconds"]), "<=", 1.0,
                  (f"reached after epoch {hit['epoch'] + 1} of {len(cnn['epochs'])}" if hit else
                   f"not reached in {len(cnn['epochs'])} epoch(s) (best {best:.1%})") +
                  "; elapsed from the epoch events of the ladder's cnn run",
                  reached=hit is not None, best_accuracy=best)
