"""Figures and tables for the UI: drawing only, every number comes from the core modules.

Figures are plain `matplotlib.figure.Figure` objects on the Agg canvas (no pyplot state), so handlers running
in several threads at once never share a current figure and nothing needs closing.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

TRAIN_C, VALID_C, ACC_C = "#2563eb", "#ea580c", "#16a34a"   # blue train, orange valid, green accuracy
SPLIT_COLOURS = {"train": TRAIN_C, "valid": VALID_C, "test": "#9ca3af"}


def _fig(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    return fig


def _style(ax, title=None, xlabel=None, ylabel=None):
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(alpha=0.25)
    if title:
        ax.set_title(title, fontsize=11)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)


def message(text: str, w: float = 6, h: float = 2.2) -> Figure:
    """A placeholder figure that says why there is nothing to draw yet."""
    fig = _fig(w, h)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color="#6b7280", wrap=True,
            transform=ax.transAxes)
    return fig


# ---------------------------------------------------------------------------------------------- images

def checkerboard(h: int, w: int, cell: int = 8) -> np.ndarray:
    """(h, w, 3) float light-grey checkerboard: shows where an image is transparent."""
    yy, xx = np.mgrid[:h, :w]
    c = ((yy // cell + xx // cell) % 2).astype(np.float32)
    return np.repeat((0.86 + 0.1 * c)[..., None], 3, -1)


def over(rgba: np.ndarray, background: str = "checker") -> np.ndarray:
    """(H, W, 3|4) uint8 or float in [0, 1] -> (H, W, 3) float composited on a checkerboard or white."""
    a = rgba.astype(np.float32) / (255 if rgba.dtype == np.uint8 else 1)
    if a.shape[-1] == 3:
        return a.clip(0, 1)
    h, w = a.shape[:2]
    bg = checkerboard(h, w, max(2, h // 12)) if background == "checker" else np.ones((h, w, 3), np.float32)
    alpha = a[..., 3:4]
    return (a[..., :3] * alpha + bg * (1 - alpha)).clip(0, 1)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def enlarge(img: np.ndarray, box: tuple[int, int, int] | None = None, scale: int | None = None) -> np.ndarray:
    """A uint8 image blown up with visible pixels (nearest neighbour), optionally with a red patch outline (x, y, n)."""
    rgb = to_uint8(over(img))
    s = scale or max(1, 320 // max(rgb.shape[:2]))
    big = np.repeat(np.repeat(rgb, s, 0), s, 1)
    if box is not None:
        x, y, n = box
        x0, y0, x1, y1 = x * s, y * s, (x + n) * s - 1, (y + n) * s - 1
        t = max(1, s // 3)
        red = np.array([230, 20, 40], np.uint8)
        big[y0:y0 + t, x0:x1 + 1] = red
        big[y1 - t + 1:y1 + 1, x0:x1 + 1] = red
        big[y0:y1 + 1, x0:x0 + t] = red
        big[y0:y1 + 1, x1 - t + 1:x1 + 1] = red
    return big


def image_grid(images: list[np.ndarray], titles: list[str] | None = None, cols: int = 6, size: float = 1.6,
               suptitle: str | None = None) -> Figure:
    """Images in a grid on a checkerboard (so transparency shows), each with an optional title."""
    n = max(1, len(images))
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = _fig(cols * size, rows * size + (0.35 if suptitle else 0) + (0.2 * rows if titles else 0))
    for i, img in enumerate(images):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(over(img), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles:
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return fig


# ---------------------------------------------------------------------------------------------- data

def counts_bar(counts: dict[str, dict[str, int]]) -> Figure:
    """Stacked horizontal bars: images per class, split into train / valid (/ test)."""
    names = list(counts)
    splits = [s for s in ("train", "valid", "test") if any(c.get(s) for c in counts.values())]
    fig = _fig(6.4, max(2.2, 0.32 * len(names) + 1.0))
    ax = fig.add_subplot()
    left = np.zeros(len(names))
    y = np.arange(len(names))
    for s in splits:
        v = np.array([counts[n].get(s, 0) for n in names], float)
        ax.barh(y, v, left=left, color=SPLIT_COLOURS[s], label=s, height=0.7)
        left += v
    ax.set_yticks(y, names, fontsize=9)
    ax.invert_yaxis()
    _style(ax, "Images per class", "number of images", None)
    ax.grid(axis="y", visible=False)
    ax.legend(title="split", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)  # off the bars
    return fig


def sizes_table(summary: dict) -> pd.DataFrame:
    """Original image sizes and modes, most frequent first."""
    rows = [("size", k, v) for k, v in summary["sizes"].items()] + [("mode", k, v) for k, v in summary["modes"].items()]
    return pd.DataFrame(rows, columns=["what", "value", "images"])


def bad_table(summary: dict) -> pd.DataFrame:
    """Files left out and why, with paths shown relative to the dataset folder."""
    root = str(summary.get("root") or "").rstrip("/") + "/"
    rows = [(b["path"][len(root):] if b["path"].startswith(root) else b["path"], b["reason"]) for b in summary["bad"]]
    return pd.DataFrame(rows or [("(none)", "every file was readable")], columns=["file", "why it was left out"])


def pixel_patch(patch: np.ndarray, x0: int = 0, y0: int = 0):
    """A small (n, n, C) uint8 patch as a table whose cells are coloured like the pixels and show their values."""
    n, m, _ = patch.shape
    shown = to_uint8(over(patch, "white"))
    text, css = {"": [f"y={y0 + i}" for i in range(n)]}, {"": [""] * n}
    for j in range(m):
        text[f"x={x0 + j}"] = [" ".join(str(int(v)) for v in patch[i, j]) for i in range(n)]
        col = []
        for i in range(n):
            r, g, b = (int(v) for v in shown[i, j])
            ink = "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#fff"
            col.append(f"background-color: rgb({r},{g},{b}); color: {ink}")
        css[f"x={x0 + j}"] = col
    df, styles = pd.DataFrame(text), pd.DataFrame(css)
    return df.style.apply(lambda _: styles, axis=None)


# ---------------------------------------------------------------------------------------------- ideal

def ideal_grid(means: np.ndarray, vocab: list[str], grey: np.ndarray | None = None,
               background: str = "checker") -> Figure:
    """One column per class: the mean ('ideal') image composited, its alpha channel, and the grey channel-average."""
    k, c = means.shape[:2]
    rows = ([("ideal image", "rgb")] + ([("alpha (opacity)", "alpha")] if c == 4 else [])
            + ([("grey average", "grey")] if grey is not None else []))
    cols = min(k, 10)
    blocks = math.ceil(k / cols)
    fig = _fig(cols * 1.35 + 0.9, blocks * len(rows) * 1.45 + 0.2)
    gs = fig.add_gridspec(blocks * len(rows), cols)
    for i in range(k):
        b, j = divmod(i, cols)
        img = np.transpose(means[i], (1, 2, 0))
        for r, (name, kind) in enumerate(rows):
            ax = fig.add_subplot(gs[b * len(rows) + r, j])
            if kind == "rgb":
                ax.imshow(over(img, background))
                ax.set_title(_short(vocab[i]), fontsize=8)
            elif kind == "alpha":
                ax.imshow(img[..., 3], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(grey[i], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    return fig


def _short(name: str, n: int = 16) -> str:
    """A class name for a plot: whole, wrapped onto two lines at a space, '-' or '_' when long (cut only beyond)."""
    if len(name) <= n:
        return name
    cut = max((i for i, ch in enumerate(name[:n + 1]) if ch in " -_"), default=n - 1) + 1
    rest = name[cut:]
    return name[:cut].rstrip() + "\n" + (rest if len(rest) <= n else rest[: n - 1] + "…")


def distance_hist(dists: np.ndarray, targs: np.ndarray, vocab: list[str], kind: str) -> Figure:
    """For each class's ideal: how far its own images are vs every other image (the gap is why the baseline works)."""
    k = len(vocab)
    cols = min(5, k)
    rows = math.ceil(k / cols)
    fig = _fig(cols * 2.5, rows * 2.1 + 0.5)
    lo, hi = (np.percentile(dists, [0, 99.5]) if dists.size else (0.0, 1.0))
    bins = np.linspace(float(lo), float(hi) + 1e-9, 32)
    for i in range(k):
        ax = fig.add_subplot(rows, cols, i + 1)
        own = dists[targs == i, i]
        other = dists[targs != i, i]
        ax.hist(other, bins=bins, color="#9ca3af", alpha=0.7, label="other classes", density=True)
        ax.hist(own, bins=bins, color=TRAIN_C, alpha=0.75, label="this class", density=True)
        _style(ax, _short(vocab[i], 22))
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
        if i % cols == 0:
            ax.set_ylabel("share of images", fontsize=8)
        if i // cols == rows - 1:
            ax.set_xlabel(f"{kind.upper()} distance to ideal", fontsize=8)
        if i == 0:
            ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("Distance of each validation image to each class's ideal", fontsize=11)
    return fig


def per_class_table(per_class: dict[str, float], counts: dict[str, int] | None = None,
                    prf: dict[str, dict] | None = None) -> pd.DataFrame:
    """Accuracy per class; with prf ({"precision", "recall", "f1", "support"}: class -> value) those columns too."""
    rows = [(name, round(acc * 100, 1), (counts or {}).get(name, "")) for name, acc in per_class.items()]
    df = pd.DataFrame(rows, columns=["class", "accuracy %", "validation images"])
    if prf:
        for key, col in (("precision", "precision %"), ("recall", "recall %"), ("f1", "F1 %")):
            df[col] = [_pct(prf[key].get(c)) for c in df["class"]]
        df["support"] = [prf["support"].get(c, "") for c in df["class"]]
        df = df.drop(columns="validation images")
    return df


def _pct(v) -> float | None:
    return round(100 * float(v), 1) if isinstance(v, (int, float)) and math.isfinite(v) else None


# ---------------------------------------------------------------------------------------------- training

def loss_curves(batches: list[tuple[float, float]], epochs: list[tuple[float, float]],
                n_epoch: int | None = None) -> Figure:
    """Smoothed training loss and validation loss per epoch, against (fractional) epochs."""
    fig = _fig(5.6, 3.2)
    ax = fig.add_subplot()
    if batches:
        x, y = zip(*batches)
        ax.plot(x, y, color=TRAIN_C, lw=1.6, label="train loss")
    if epochs:
        x, y = zip(*epochs)
        ax.plot(x, y, "o-", color=VALID_C, lw=1.8, ms=5, label="valid loss")
    if n_epoch:
        ax.set_xlim(0, n_epoch * 1.03)
    ax.set_ylim(bottom=0)
    _style(ax, "Loss", "epoch", "cross-entropy loss")
    if batches or epochs:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "the curves appear once training runs", ha="center", va="center", color="#6b7280",
                transform=ax.transAxes)
    return fig


def accuracy_curve(batches: list[tuple[float, float]], epochs: list[tuple[float, float]],
                   n_epoch: int | None = None) -> Figure:
    """Smoothed training accuracy and validation accuracy per epoch."""
    fig = _fig(5.6, 3.2)
    ax = fig.add_subplot()
    if batches:
        x, y = zip(*batches)
        ax.plot(x, np.asarray(y) * 100, color=TRAIN_C, lw=1.4, alpha=0.8, label="train (smoothed)")
    if epochs:
        x, y = zip(*epochs)
        ax.plot(x, np.asarray(y) * 100, "o-", color=ACC_C, lw=1.8, ms=5, label="valid")
    if n_epoch:
        ax.set_xlim(0, n_epoch * 1.03)
    ax.set_ylim(0, 103)
    _style(ax, "Accuracy", "epoch", "accuracy %")
    if batches or epochs:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def lr_finder(lrs: list[float], losses: list[float], suggested: float | None = None) -> Figure:
    """fastai's LR-finder curve on a log axis, with the suggested rate marked."""
    fig = _fig(5.6, 3.0)
    ax = fig.add_subplot()
    ax.plot(lrs, losses, color=TRAIN_C, lw=1.6, label="loss")
    ax.set_xscale("log")
    if suggested:
        ax.axvline(suggested, color=VALID_C, ls="--", lw=1.4, label=f"suggested {suggested:.1e}")
    if losses:
        lo, hi = min(losses), np.percentile(losses, 90)
        ax.set_ylim(lo - 0.05 * (hi - lo + 1e-6), hi + 0.3 * (hi - lo + 1e-6))
    _style(ax, "Learning-rate finder", "learning rate (log scale)", "loss")
    ax.legend(fontsize=8)
    return fig


def metrics_table(history: list[dict]) -> pd.DataFrame:
    """fastai's per-epoch table, counted from 1 with accuracy in %: epoch, train_loss, valid_loss, accuracy %, time."""
    rows = [(h["epoch"] + 1, round(h["train_loss"], 4), round(h["valid_loss"], 4), _pct(h["accuracy"]),
             f"{int(h['seconds'] // 60):02d}:{int(h['seconds'] % 60):02d}") for h in history]
    return pd.DataFrame(rows, columns=["epoch", "train_loss", "valid_loss", "accuracy %", "time"])


def leaderboard(rows: list[dict], test: bool = False) -> pd.DataFrame:
    """Every model of the session on the same validation split, best first; test: their test-split accuracy too."""
    cols = ["model", "kind", "accuracy %", *(["test accuracy %"] * test), "train time", "parameters", "epochs",
            "input size"]
    out = []
    for r in sorted(rows, key=lambda r: -(r.get("accuracy") or 0)):
        s = r.get("seconds")
        out.append((r["name"], r["arch"], _pct(r.get("accuracy")), *([_pct(r.get("test"))] if test else []),
                    "" if s is None else (f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"),
                    f"{r['n_params']:,}" if r.get("n_params") is not None else "",
                    r.get("epochs", "") if r.get("epochs") is not None else "", r.get("size", "") or ""))
    return pd.DataFrame(out, columns=cols)


# ---------------------------------------------------------------------------------------------- evaluation

def confusion(matrix: np.ndarray | list, labels: list[str], title: str = "Confusion matrix") -> Figure:
    """Counts with actual classes down the side and predictions along the bottom, like fastai's plot."""
    cm = np.asarray(matrix)
    k = len(labels)
    side = min(9.0, max(4.2, 0.55 * k + 2.6))
    fig = _fig(side + 0.8, side)
    ax = fig.add_subplot()
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), [_short(n) for n in labels], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), [_short(n) for n in labels], fontsize=8)
    hi = cm.max(initial=1)
    for i in range(k):
        for j in range(k):
            if cm[i, j] or i == j:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > hi * 0.6 else "#111827")
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title, fontsize=11)
    fig.colorbar(im, ax=ax, shrink=0.8, label="images")
    return fig


def most_confused_table(pairs: list[tuple[str, str, int]]) -> pd.DataFrame:
    rows = pairs or [("(none)", "(none)", 0)]
    return pd.DataFrame(rows, columns=["actual", "predicted", "images"])


def linear_weights(weights: np.ndarray, vocab: list[str]) -> Figure:
    """A linear model's weights, one (H, W) image per class (averaged over channels): red pixels vote for it, blue
    against."""
    k = len(vocab)
    cols = min(5, k)
    rows = math.ceil(k / cols)
    w = weights.mean(1) if weights.ndim == 4 else weights
    lim = float(np.abs(w).max(initial=1e-8)) or 1e-8
    fig = _fig(cols * 2.1 + 0.8, rows * 2.1 + 0.4)
    axes = []
    im = None
    for i in range(k):
        ax = fig.add_subplot(rows, cols, i + 1)
        im = ax.imshow(w[i], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(_short(vocab[i], 20), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        axes.append(ax)
    fig.colorbar(im, ax=axes, shrink=0.8, label="weight (red: evidence for the class)")
    fig.suptitle("Linear model: one weight image per class (mean over channels)", fontsize=11)
    return fig


def reliability(rep: dict) -> Figure:
    """calibrate.report's reliability data, before and after temperature scaling: per confidence bin, a bar of the
    accuracy against the diagonal a perfectly calibrated model would follow."""
    fig = _fig(7.6, 3.5)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key in zip(axes, ("before", "after")):
        r = rep[key]["reliability"]
        lo, width = np.array(r["edges"][:-1]), np.diff(r["edges"])
        acc = [a if a is not None else 0.0 for a in r["accuracy"]]
        ax.plot([0, 1], [0, 1], "--", color="#6b7280", lw=1, label="perfectly calibrated")
        ax.bar(lo, acc, width, align="edge", color=TRAIN_C if key == "before" else ACC_C, alpha=0.8,
               edgecolor="white", label="accuracy")
        conf = [(m, c) for m, c in zip(r["confidence"], r["count"]) if m is not None]
        ax.scatter([m for m, _ in conf], [0.02] * len(conf), marker="|", color="#111827", s=60,
                   label="mean confidence")
        t = "T = 1" if key == "before" else f"T = {rep['temperature']:.2f}"
        _style(ax, f"{key} scaling ({t}): ECE {rep[key]['ece']:.1%}", "confidence", "accuracy" if key == "before"
               else None)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Reliability diagram ({rep['n']:,} {rep.get('images', 'validation')} images)", fontsize=11)
    return fig
