"""What the app shows, computed without Gradio: each view returns plain values keyed by component name, and
the app turns them into component updates. DataCtx holds one loaded dataset and what is derived from it."""
from __future__ import annotations

import html
import math
import re
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import data as datamod
from . import ideal, models, plots, store
from .evaluate import Evaluation, evaluate
from .images import background_of, method_of

PAGE = 30                       # thumbnails per gallery page (3 rows of 10)
PATCH = 5                       # side of the pixel-value table
CELL_MAX = 30                   # images shown for one confusion-matrix cell


class ViewError(ValueError):
    """A request the loaded data cannot answer, with a message for the user."""


class DataCtx:
    """One loaded dataset and what the UI derives from it; computed once, then only read (safe to share)."""

    def __init__(self, ds: datamod.Dataset, name: str, tmpdir: str | None = None):
        self.ds, self.name, self.tmpdir = ds, name, tmpdir
        base = Path(name).name if "/" in name else name  # a folder path: its own name
        self.slug = store.safe_name(re.sub(r"\.zip$", "", base, flags=re.I))  # an uploaded zip: without .zip
        self.summary = ds.summary()
        self.by_class = {k: np.flatnonzero(ds.labels == k) for k in range(ds.c)}
        rank = np.zeros(len(ds.labels), np.int64)
        for idx in self.by_class.values():
            rank[idx] = np.arange(len(idx))
        self.mixed = np.lexsort((ds.labels, rank))  # 'all classes' browses round-robin: one of each class in turn
        self._base: dict[str, dict] = {}
        self._base_split: dict[str, Evaluation] = {}
        self._lock = threading.Lock()

    def baseline(self, kind: str = "l1") -> dict:
        """The pixel-similarity baseline (fit on train, scored on valid, else test) with its Evaluation."""
        with self._lock:
            if kind not in self._base:
                t = time.perf_counter()
                b = ideal.baseline(self.ds, kind)
                b["seconds"] = time.perf_counter() - t
                b["meta"] = {"arch": "pixel", "distance": kind, "vocab": self.ds.vocab, "size": self.ds.size,
                             "data_size": self.ds.size, "channels": self.ds.channels,
                             "n_params": int(b["model"].means.numel()),  # one number per pixel, channel and class
                             "metrics": {"accuracy": b["accuracy"], "per_class": b["per_class"],
                                         "seconds": b["seconds"]}, **store.input_meta(self.ds)}
                self._base[kind] = b
            return self._base[kind]

    def computed(self) -> list[str]:
        return list(self._base)

    @property
    def has_test(self) -> bool:
        """Whether the data has a test split of its own (a pre-split train/valid/test folder)."""
        return bool(self.summary["n_test"]) and bool(self.summary["n_valid"])

    def baseline_on(self, kind: str, split: str) -> Evaluation:
        """The pixel baseline's Evaluation on 'valid' (as computed by baseline) or 'test'."""
        b = self.baseline(kind)
        if split == "valid":
            return b["evaluation"]
        with self._lock:
            key = f"{kind}@{split}"
            if key not in self._base_split:
                self._base_split[key] = evaluate(b["model"], self.ds, split)
            return self._base_split[key]


def file_name(path: str) -> str:
    return Path(path).name


def caption_stem(path: str, cls: str = "") -> str:
    """A file's name without extension and without a leading class name: short enough for a caption."""
    st = Path(path).stem
    return st[len(cls):].lstrip("_-. ") or st if cls and st.startswith(cls) else st


def page_indices(ctx: DataCtx, cls: str, page: int) -> tuple[np.ndarray, int]:
    idx = ctx.by_class[ctx.ds.vocab.index(cls)] if cls in ctx.ds.vocab else ctx.mixed
    n_pages = max(1, math.ceil(len(idx) / PAGE))
    page = min(max(1, int(page or 1)), n_pages)
    return idx[(page - 1) * PAGE: page * PAGE], n_pages


def gallery_view(ctx: DataCtx, cls: str, page: int) -> dict:
    idx, n_pages = page_indices(ctx, cls, page)
    page = min(max(1, int(page or 1)), n_pages)
    ds = ctx.ds
    one = cls in ds.vocab
    items = [(ds.images[i], Path(ds.items[i]).stem if one else ds.vocab[ds.labels[i]]) for i in idx]
    n = len(ctx.by_class[ds.vocab.index(cls)]) if one else len(ds.items)
    return {"gallery": items, "page": page, "n_pages": n_pages,
            "page_md": f"page {page} of {n_pages} · {n:,} images"}


def busy_patch(img: np.ndarray) -> tuple[int, int]:
    """Top-left corner of the most varied PATCH x PATCH window (an edge, not a flat area): a good first look."""
    s = img.shape[0] - PATCH
    best, at = -1.0, (s // 2, s // 2)
    for y in range(0, s + 1, 3):
        for x in range(0, s + 1, 3):
            v = float(img[y:y + PATCH, x:x + PATCH].std())
            if v > best:
                best, at = v, (x, y)
    return at


def pixel_view(ctx: DataCtx, i: int, x: int, y: int) -> dict:
    ds = ctx.ds
    i = int(min(max(0, i), len(ds.items) - 1))
    s = ds.size
    x, y = int(min(max(0, x), s - PATCH)), int(min(max(0, y), s - PATCH))
    img = ds.images[i]
    w, h = ds.sizes[i]
    split = str(datamod.Split(ds.split[i]))
    chans = "RGBA" if ds.channels == 4 else "RGB"
    info = (f"**{file_name(ds.items[i])}** — class **{ds.vocab[ds.labels[i]]}**, {split} split  \n"
            f"original: {w}×{h} pixels, mode {ds.modes[i]} → stored as {s}×{s} {chans} uint8 (0-255)  \n"
            f"<span class='la-note'>The table shows the {PATCH}×{PATCH} patch in the red box "
            f"({' '.join(chans)} per pixel); each cell is coloured like its pixel.</span>")
    return {"big": plots.enlarge(img, (x, y, PATCH)), "info": info,
            "patch": plots.pixel_patch(img[y:y + PATCH, x:x + PATCH], x, y)}


def augment_view(ctx: DataCtx, i: int, n: int = 11):
    ds = ctx.ds
    i = int(min(max(0, i), len(ds.items) - 1))
    aug = models.Augment(**models.default_aug(ds.channels)).train()
    x = torch.from_numpy(ds.images[i]).permute(2, 0, 1).float().div(255)[None].repeat(n, 1, 1, 1)
    with torch.no_grad():
        out = aug(x).permute(0, 2, 3, 1).numpy()
    imgs = [ds.images[i]] + list(out)
    titles = ["original"] + [f"augmented {k + 1}" for k in range(n)]
    return plots.image_grid(imgs, titles, cols=6, size=1.7,
                            suptitle="What training sees: random rotation, flip, zoom, shear and lighting "
                                     f"({file_name(ds.items[i])})")


def data_md(ctx: DataCtx) -> str:
    s, ds = ctx.summary, ctx.ds
    chans = "RGBA (with transparency)" if s["channels"] == 4 else "RGB"
    split = f"{s['n_train']:,} train / {s['n_valid']:,} valid" + (f" / {s['n_test']:,} test" if s["n_test"] else "")
    how = "from its train/valid folders" if s["presplit"] else f"random {ds.valid_pct:.0%} held out, seed {ds.seed}"
    lines = [f"### {html.escape(ctx.name)}",
             f"**{s['n_images']:,} images** in **{s['n_classes']} classes** · {split} ({how}) · "
             f"stored as {s['image_size']}×{s['image_size']} {chans}, made square by **{ds.resize}**, "
             f"{s['memory_mb']} MB in memory"]
    if s["bad"]:
        lines.append(f"**{len(s['bad'])} file(s) could not be used**: see *Files left out* below.")
    for note in s["notes"][:8]:
        lines.append(f"- {html.escape(note)}")
    return "\n\n".join(lines)


def data_views(ctx: DataCtx) -> dict:
    v = {"data_md": data_md(ctx), "counts": plots.counts_bar(ctx.summary["counts"]),
         "sizes": plots.sizes_table(ctx.summary), "bad": plots.bad_table(ctx.summary),
         "cls": "(all classes)"}
    v.update(gallery_view(ctx, "(all classes)", 1))
    x, y = busy_patch(ctx.ds.images[0])
    v.update(pixel_view(ctx, 0, x, y), px=x, py=y)
    v["augment"] = augment_view(ctx, 0)
    return v


def ideal_views(ctx: DataCtx, kind: str = "l1", background: str = "checker") -> dict:
    b = ctx.baseline(kind)
    means = b["model"].means.numpy()
    grey = ideal.grey(b["model"].means).numpy()
    n_valid = {c: ctx.summary["counts"][c]["valid"] for c in ctx.ds.vocab}
    acc = (f"### Nearest-ideal baseline ({kind.upper()}): **{b['accuracy']:.1%}** accuracy\n\n"
           f"Each of the {b['n_valid']:,} validation images is given the class whose ideal image is closest "
           f"({'mean absolute difference' if kind == 'l1' else 'root of the mean squared difference'} over every pixel "
           f"and channel). The means come from {b['n_train']:,} training images; nothing is learned. "
           f"Chance would be {1 / ctx.ds.c:.0%}.")
    return {"ideal": plots.ideal_grid(means, ctx.ds.vocab, grey, background), "ideal_md": acc,
            "ideal_table": plots.per_class_table(b["per_class"], n_valid),
            "hist": plots.distance_hist(b["distances"], b["targs"], ctx.ds.vocab, kind)}


def board_rows(board: dict[str, dict], ctx: DataCtx) -> list[dict]:
    """The leaderboard: the pixel baselines computed on this data, then a session's own rows (name -> row)."""
    rows = []
    for kind in ctx.computed():
        b = ctx.baseline(kind)
        rows.append({"name": f"pixel baseline ({kind.upper()})", "arch": "pixel", "accuracy": b["accuracy"],
                     "seconds": b["seconds"], "n_params": b["meta"]["n_params"], "epochs": None,
                     "size": ctx.ds.size, "test": ctx.baseline_on(kind, "test").accuracy if ctx.has_test else None})
    return rows + list(board.values())


def board_df(board: dict[str, dict], ctx: DataCtx) -> pd.DataFrame:
    return plots.leaderboard(board_rows(board, ctx), test=ctx.has_test)


def misfit(meta: dict, ctx: DataCtx) -> str | None:
    """Why a model cannot be scored on the loaded data (other classes; a pixel model of another image size), or
    None when it can."""
    ds = ctx.ds
    if list(meta["vocab"]) != list(ds.vocab):
        return (f"it knows {len(meta['vocab'])} classes ({', '.join(meta['vocab'][:4])}…), the loaded data has "
                f"{ds.c} ({', '.join(ds.vocab[:4])}…)")
    if meta["arch"] == "pixel" and meta["data_size"] != ds.size:
        return f"it compares {meta['data_size']}px images, the data is stored at {ds.size}px"
    return None


def evaluate_on(model, meta: dict, ctx: DataCtx, split: str = "valid") -> Evaluation:
    """Score a (saved) model on the current data's validation (or test) split."""
    why = misfit(meta, ctx)
    if why:
        raise ViewError(f"This model does not fit the loaded data: {why}. Load matching data to evaluate it.")
    if split == "test" and not ctx.has_test:
        raise ViewError("The loaded data has no test split (only a pre-split folder with train/, valid/ and test/ "
                        "has one).")
    return evaluate(model, ctx.ds, split, channels=meta["channels"], temperature=meta.get("temperature", 1.0),
                    background=background_of(meta))


def split_word(res: Evaluation) -> str:
    """'test' or 'validation': the images an Evaluation scored."""
    return "test" if getattr(res, "split", "valid") == "test" else "validation"


def eval_views(res: Evaluation, meta: dict, ctx: DataCtx, name: str, label: str) -> dict:
    ds = ctx.ds
    col = "test" if split_word(res) == "test" else "valid"
    n_valid = {c: ctx.summary["counts"][c][col] or ctx.summary["counts"][c]["test"] for c in ds.vocab}
    tops = [(ds.images[t["index"]], f"{t['actual']} → {t['predicted']}\np {t['probability']:.2f} · loss "
             f"{t['loss']:.2f}") for t in res.top_losses()]
    confused = res.most_confused()
    worst = confused[0] if confused else (ds.vocab[0], ds.vocab[0], 0)
    arch = meta["arch"]
    md = (f"### {html.escape(label)}\n\n**{res.accuracy:.1%}** of {res.n:,} {split_word(res)} images right"
          f"{summary_extra(res)} · {models.describe_meta(meta)}")
    if arch != "pixel" and method_of(meta) != ds.resize:
        md += (f"\n\n**Note:** this model was trained on images made square by *{method_of(meta)}*; the loaded data "
               f"used *{ds.resize}*. Reload the data with resize method {method_of(meta)} for a fair score.")
    v = {"eval_md": md, "cm": plots.confusion(res.confusion.tolist(), ds.vocab),
         "eval_table": plots.per_class_table(res.per_class, n_valid, class_metrics(res)),
         "confused": plots.most_confused_table(confused[:12]), "tops": tops,
         "actual": worst[0], "predicted": worst[1]}
    v.update(cell_view(res, ctx, worst[0], worst[1]))
    v.update(calibration_view(res, meta))
    v["weights_visible"] = arch == "linear"
    return v


def linear_weights_view(model, meta: dict):
    """A linear model's weight matrix (K, C*S*S) as one image per class."""
    lin = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if meta["arch"] != "linear" or not lin:
        return None
    w = lin[-1].weight.detach().float().cpu().numpy()
    s, c = meta["size"], meta["channels"]
    return plots.linear_weights(w.reshape(len(meta["vocab"]), c, s, s), meta["vocab"])


def cell_view(res: Evaluation, ctx: DataCtx, actual: str, predicted: str) -> dict:
    ds = ctx.ds
    if actual not in ds.vocab or predicted not in ds.vocab:
        return {"cell": [], "cell_md": ""}
    a, p = ds.vocab.index(actual), ds.vocab.index(predicted)
    pos = res.cell(a, p)
    items = [(ds.images[res.idx[j]], f"{caption_stem(ds.items[res.idx[j]], actual)}\np={res.probs[j, p]:.2f}")
             for j in pos[:CELL_MAX]]
    what = "correctly classified" if a == p else f"predicted as **{predicted}**"
    md = (f"{len(pos)} {split_word(res)} image(s) of **{actual}** {what}"
          + (f" (showing {CELL_MAX})" if len(pos) > CELL_MAX else ""))
    return {"cell": items, "cell_md": md}


# ============================================================================================= explain, calibrate

def explain_view(model, meta: dict, image, target=None) -> dict:
    """The heatmap of where the model looked for one image (a path or an array), for the predicted class or target:
    {"overlay": uint8 RGB, "label": the class explained, "caption": method, class and probability}."""
    from .explain import explain
    try:
        e = explain(model, meta, image, target)
    except ValueError as err:  # a model kind without a method, or a class the model does not know
        raise ViewError(str(err)) from None
    p = e.probs.get(e.label, 0.0)
    return {"overlay": e.overlay, "label": e.label, "kind": e.kind,
            "caption": f"{e.kind}: where the model found **{e.label}** (p={p:.0%}); red = most evidence"}


def colour_name(rgb) -> str:
    """'white', 'black' or '#rrggbb'."""
    rgb = tuple(int(v) for v in rgb)
    return "white" if min(rgb) >= 240 else "black" if max(rgb) <= 15 else "#{:02x}{:02x}{:02x}".format(*rgb)


def input_note(h, meta: dict) -> str:
    """How Predict read an image (h: images.header of it) for a model: the resize method and sizes (the stored
    square, then the model's own input size) and, for a transparent image and an RGB model, the background it was
    flattened on."""
    n, m = meta["data_size"], meta.get("size", meta["data_size"])
    method = method_of(meta)
    how = {"squish": "squished", "crop": "centre-cropped", "pad": "padded"}[method]
    out = (f"Input {h.width}×{h.height} {h.mode} ({h.format}) → {how} to {n}×{n}"
           + (f", then the model's {m}×{m}" if m != n else "") + f" {'RGBA' if meta['channels'] == 4 else 'RGB'}")
    if h.alpha and meta["channels"] == 3:
        learned = "background" in meta
        out += (f"; transparent pixels flattened on {colour_name(background_of(meta))} "
                + ("(the training images' background)" if learned else "(this model was saved without its "
                   "training background)"))
    return out + ", as in training."


def unknown_note(r: dict, threshold: float | None) -> str:
    """The prediction note's unknown-input line for Predictor.predict(..., with_unknown=True)'s answer r, judged
    against threshold (the stored one unless moved); "" for a model without an unknown-input test."""
    score = r.get("score")
    if score is None or threshold is None:
        return ""
    top = r["probs"][r["label"]]
    if score > threshold:
        return (f"**unknown** — closest: **{html.escape(r['label'])}** ({top:.0%}) · far from the training data "
                f"(score {score:.3g} > threshold {threshold:.3g})")
    return f"like the training data (score {score:.3g} ≤ threshold {threshold:.3g})"


def calibration_view(res: Evaluation, meta: dict) -> dict:
    """Reliability diagram and ECE before and after temperature scaling, from the evaluation's probabilities (their
    logs stand in for logits). The model's stored temperature, else one fitted on these images."""
    from . import calibrate
    if not res.n:
        return {"reliability": plots.message(f"No {split_word(res)} images to calibrate on."), "calib_md": ""}
    z = torch.from_numpy(np.log(np.clip(res.probs.astype(np.float64), 1e-12, None)))
    t = meta.get("temperature")
    stored = isinstance(t, (int, float)) and not isinstance(t, bool)
    t = float(t) if stored else calibrate.temperature_from_logits(z, res.targs)
    rep = {**calibrate.report(z, res.targs, t), "images": split_word(res)}
    how = "stored with the model" if stored else "fitted on these images"
    md = (f"**ECE** {rep['before']['ece']:.1%} → **{rep['after']['ece']:.1%}** after temperature scaling "
          f"(T = {t:.2f}, {how})")
    return {"reliability": plots.reliability(rep), "calib_md": md}


def class_metrics(res: Evaluation) -> dict | None:
    """Precision, recall, F1 and support per class when the Evaluation has them (None for one that does not)."""
    cols = {k: getattr(res, k, None) for k in ("precision", "recall", "f1", "support")}
    return cols if all(isinstance(v, dict) for v in cols.values()) else None


def summary_extra(res: Evaluation) -> str:
    """' · macro F1 … · balanced accuracy …' when the Evaluation has them."""
    out = ""
    for key, name in (("macro_f1", "macro F1"), ("balanced_accuracy", "balanced accuracy")):
        v = getattr(res, key, None)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out += f" · {name} **{v:.1%}**"
    return out


def item_heat(model, meta: dict, ctx: DataCtx, i: int, target: str, head: str) -> dict:
    """The heatmap of dataset item i for class target, captioned with head first."""
    v = explain_view(model, meta, ctx.ds.images[i], target)
    return {"heat": v["overlay"], "heat_md": f"{head} · {v['caption']}"}


def top_loss_heat(model, meta: dict, res: Evaluation, ctx: DataCtx, k: int) -> dict | None:
    """The heatmap of the k-th top loss, for the class the model predicted (None when there is no such image)."""
    tops = res.top_losses()
    if not 0 <= k < len(tops):
        return None
    t = tops[k]
    head = (f"**{html.escape(file_name(ctx.ds.items[t['index']]))}**: actual {t['actual']}, predicted "
            f"{t['predicted']} ({t['probability']:.0%})")
    return item_heat(model, meta, ctx, t["index"], t["predicted"], head)


def cell_heat(model, meta: dict, res: Evaluation, ctx: DataCtx, actual: str, predicted: str, k: int) -> dict | None:
    """The heatmap of the k-th image of one confusion-matrix cell, for the predicted class."""
    ds = ctx.ds
    if actual not in ds.vocab or predicted not in ds.vocab:
        return None
    pos = res.cell(ds.vocab.index(actual), ds.vocab.index(predicted))[:CELL_MAX]
    if not 0 <= k < len(pos):
        return None
    i = int(res.idx[pos[k]])
    head = f"**{html.escape(file_name(ds.items[i]))}**: actual {actual}, predicted {predicted}"
    return item_heat(model, meta, ctx, i, predicted, head)
