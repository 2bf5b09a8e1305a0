"""The Gradio app: one tab per step of the chapter-4 ladder. Handlers convert inputs, call logoapp, format results.

Data -> Ideal (pixel means, nearest-ideal baseline) -> Train (linear, mlp, cnn, resnet) -> Evaluate -> Predict.
What a user does lives in their own `Session` (a gr.State); what every user shares (the dataset loaded at
start-up, the models folder) is read-only or on disk. What the tabs show is computed in `views` (no Gradio
there); uploaded zips are unpacked by `uploads`.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry, no version check
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import html  # noqa: E402
import math  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
import torch  # noqa: E402

from . import __version__, ideal, models, plots, store  # noqa: E402
from . import data as datamod  # noqa: E402  (build_app's `data` argument is a path)
from .config import Settings, models_dir as default_models_dir  # noqa: E402
from . import tmpdirs  # noqa: E402
from .images import ImageError, header, plain  # noqa: E402
from .predict import Predictor  # noqa: E402
from .ui_guard import Guard, UploadError, uploaded  # noqa: E402
from .uploads import extract_zip, zip_directory  # noqa: E402
from .views import (PAGE, PATCH, DataCtx, ViewError, augment_view, board_df, cell_view, data_views,  # noqa: E402
                    eval_views, evaluate_on, file_name, gallery_view, ideal_views, linear_weights_view, page_indices,
                    pixel_view)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DELETE_CACHE = (3600, 86400)    # hourly, Gradio deletes uploads and generated files older than a day (all at exit)
MAX_MODEL_ZIP_FILES = 16        # an exported model zip holds 2 members (model.json, weights); refuse junk early
BASE = "@baseline-"             # model-picker values of the pixel baselines ('@' never appears in a saved model's name)
START = "the app's start-up data"  # a Data-tab choice when --data was given but server folders are off

FONT = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
FONT_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]

CSS = """
.la-progress {margin: 2px 0 6px 0}
.la-track {height: 14px; border-radius: 7px; background: var(--neutral-200); overflow: hidden}
.la-fill {height: 100%; background: linear-gradient(90deg, #3b82f6, #2563eb); transition: width .25s ease}
.la-fill.done {background: linear-gradient(90deg, #22c55e, #16a34a)}
.la-fill.stopped {background: linear-gradient(90deg, #f59e0b, #d97706)}
.la-fill.error {background: #dc2626}
.la-text {font-size: 0.9em; margin-top: 4px; color: var(--body-text-color-subdued); font-variant-numeric: tabular-nums}
.la-note {color: var(--body-text-color-subdued); font-size: 0.92em}
#la-header h1 {margin-bottom: 0}
.la-align-end {align-items: flex-end !important}
.la-inline-btn {margin-bottom: 10px; max-height: 44px}
.la-captions .caption-label {white-space: pre-line !important; max-width: 100% !important; left: 0; right: 0 !important;
  bottom: 0 !important; font-size: 11px !important; line-height: 1.25 !important; text-align: center !important;
  border-radius: 0 !important; padding: 2px 3px !important; background: rgba(255, 255, 255, 0.85) !important;
  overflow-wrap: anywhere}
.dark .la-captions .caption-label {background: rgba(20, 20, 20, 0.8) !important}
.la-captions .grid-wrap {min-height: 0 !important; max-height: none !important; height: auto !important;
  overflow-y: visible !important}
"""


def theme():
    """Soft theme with system fonts only: nothing to download, works offline."""
    return gr.themes.Soft(primary_hue="blue", secondary_hue="orange", font=FONT, font_mono=FONT_MONO)


# ============================================================================================= state

class Session:
    """Everything one browser session owns: its dataset (None: the shared one), leaderboard, evaluations, stop flag."""

    def __init__(self):
        self.ctx: DataCtx | None = None
        self.board: dict[str, dict] = {}
        self.evals: dict[str, tuple[dict, dict]] = {}
        self.stop = threading.Event()
        self.sel = 0
        self.running = False
        self.imported: str | None = None  # the model the last import added

    def __deepcopy__(self, memo):  # gr.State copies its initial value per session: give each a fresh one
        return Session()

    def use(self, ctx: DataCtx | None) -> None:
        """Switch to another dataset (None: the shared start-up one); what was measured on the old one goes."""
        old, self.ctx = self.ctx, ctx
        if old is not None and old is not ctx and old.tmpdir:
            tmpdirs.remove(old.tmpdir)
        self.board, self.evals, self.sel = {}, {}, 0

    def close(self) -> None:
        """Called by Gradio when the session's state is dropped: remove an unpacked zip, stop a run."""
        self.stop.set()
        self.use(None)


class Registry:
    """Models a picker can offer: the pixel baselines of the current data plus every model folder on disk."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._cache: dict[str, tuple[float, torch.nn.Module, dict]] = {}
        self._lock = threading.Lock()

    def saved(self) -> list[dict]:
        return store.list_models(self.folder)

    def choices(self, ctx: DataCtx | None) -> list[tuple[str, str]]:
        out = []
        if ctx is not None:
            for kind in ideal.DISTANCES:
                acc = ctx.baseline(kind)["accuracy"] if kind in ctx.computed() else None
                out.append((f"pixel-similarity baseline · {kind.upper()}" + (f" · {acc:.1%}" if acc is not None else ""),
                            BASE + kind))
        for m in self.saved():
            acc = m.get("accuracy")
            out.append((f"{m['name']} · {m['arch']}" + (f" · {acc:.1%}" if isinstance(acc, (int, float)) else ""), m["name"]))
        return out

    def default(self, ctx: DataCtx | None) -> str | None:
        """The newest saved model for these classes, else the L1 baseline."""
        for m in self.saved():
            if ctx is None:
                return m["name"]
            try:
                if store.read_meta(m["path"])["vocab"] == ctx.ds.vocab:
                    return m["name"]
            except store.ModelError:
                continue
        return BASE + "l1" if ctx is not None else None

    def get(self, name: str, ctx: DataCtx | None) -> tuple[torch.nn.Module, dict]:
        """(model, meta) by picker value; saved models are loaded once and reused until their files change."""
        if not name:
            raise gr.Error("Pick a model first.")
        if name.startswith(BASE):
            if ctx is None:
                raise gr.Error("The pixel baseline needs a dataset.")
            b = ctx.baseline(name[len(BASE):])
            return b["model"], b["meta"]
        known = {m["name"]: m["path"] for m in self.saved()}
        if name not in known:
            raise gr.Error(f"No model named '{name}' in {self.folder}.")
        path = Path(known[name])
        mtime = (path / "model.json").stat().st_mtime
        with self._lock:
            hit = self._cache.get(str(path))
            if hit and hit[0] == mtime:
                return hit[1], hit[2]
        try:
            model, meta = store.load(path)
        except store.ModelError as e:
            raise gr.Error(str(e)) from None
        with self._lock:
            self._cache[str(path)] = (mtime, model, meta)
        return model, meta

    def folder_of(self, name: str) -> Path:
        known = {m["name"]: m["path"] for m in self.saved()}
        if name not in known:
            raise gr.Error(f"No saved model named '{name}'.")
        return Path(known[name])


# ============================================================================================= helpers

def share_possible(timeout: float = 3.0) -> bool:
    """Whether Gradio's share server can be reached at all (a quick TCP check, instead of a 30 s hang offline)."""
    try:
        with socket.create_connection(("api.gradio.app", 443), timeout=timeout):
            return True
    except OSError:
        return False


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    user, sep, pw = text.partition(":")
    if not sep or not user or not pw:
        raise SystemExit("logoapp: --auth / LOGOAPP_AUTH must look like USER:PASSWORD")
    return user, pw


def bar(frac: float, text: str, state: str = "running") -> str:
    pct = 100 * min(1.0, max(0.0, frac))
    return (f'<div class="la-progress"><div class="la-track"><div class="la-fill {state}" style="width:{pct:.1f}%">'
            f'</div></div><div class="la-text">{html.escape(text)}</div></div>')


def _secs(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{s} s"


def _cli_progress(label: str):
    """A progress callback for start-up: prints a line at 0, 25, 50, 75 and 100%."""
    last = [-1]

    def report(done, total, msg=None):
        q = int(4 * done / total) if total else 4
        if q != last[0]:
            last[0] = q
            print(f"  {msg or label}: {done}/{total}", file=sys.stderr, flush=True)
    return report


def _gr_progress(progress: gr.Progress):
    def report(done, total, msg=None):
        progress(done / total if total else 1, desc=msg or "generating the crest set")
    return report


# ============================================================================================= the app

def _examples(vocab: list[str] | None) -> list[str]:
    """Example crests from assets/ whose file name starts with a class the model knows."""
    if not ASSETS.is_dir():
        return []
    files = sorted(p for p in ASSETS.glob("*.png") if not p.name.startswith("screenshot"))
    if vocab is None:
        return [str(p) for p in files]
    return [str(p) for p in files if any(p.stem.startswith(c) for c in vocab)]


def _model_examples(reg: "Registry", name: str | None, ctx: DataCtx | None) -> list[str]:
    """The example crests a picked model knows the classes of (none for a model of other classes)."""
    try:
        return _examples(reg.get(name, ctx)[1]["vocab"]) if name else []
    except gr.Error:
        return []


def _predict_table(rows: list[dict]) -> pd.DataFrame:
    out = []
    for r in rows:
        name = file_name(r["path"]) if r.get("path") else "(image)"
        if "error" in r:
            out.append((name, "—", None, f"error: {r['error']}"))
        else:
            top = list(r["probs"].items())
            out.append((name, r["label"], round(100 * top[0][1], 1),
                        ", ".join(f"{k} {100 * v:.0f}%" for k, v in top[1:3])))
    return pd.DataFrame(out, columns=["file", "predicted", "probability %", "next best"])


def upload(path) -> str:
    """The path of a file uploaded to this app, else a gr.Error: every handler that opens a file a request named
    checks it here (Gradio checks only requests that mark the file as an upload themselves)."""
    try:
        return uploaded(path)
    except UploadError as e:
        raise gr.Error(f"Cannot use this file: {e}.") from None


def unopened(img: gr.Image) -> gr.Image:
    """Make an image input hand its handler the uploaded file's path without Gradio opening it first: logoapp's own
    pipeline then decodes it and says what is wrong with a bad file (Gradio's check raises a raw Pillow error), and
    Gradio never decodes an image before logoapp's size checks (a data: URL is refused instead). An instance
    attribute rather than a subclass: Gradio writes a .pyi stub beside any module that defines a component."""

    def preprocess(payload):
        if payload is None:
            return None
        if (payload.url or "").startswith("data:"):
            raise gr.Error("Cannot use this file: send the image itself as an upload, not a data: URL.")
        return upload(payload.path)

    img.preprocess = preprocess
    return img


def _page(v: dict):
    """The gallery's page slider, from gallery_view's page and page count."""
    return gr.update(value=v["page"], maximum=max(2, v["n_pages"]))


def build_demo(model_dir: str | Path) -> gr.Blocks:
    """Predict-only app for one model: no data, no training, no file browsing, one API endpoint (/predict)."""
    try:
        pred = Predictor.load(model_dir)
    except store.ModelError as e:
        raise SystemExit(f"logoapp: {e}") from None
    meta = pred.meta
    acc = (meta.get("metrics") or {}).get("accuracy")
    with gr.Blocks(title="logoapp — predict", analytics_enabled=False, delete_cache=DELETE_CACHE) as app:
        gr.Markdown(f"# logoapp\nA **{meta['arch']}** classifier for {len(meta['vocab'])} classes"
                    + (f", {acc:.1%} accurate on its validation images" if isinstance(acc, (int, float)) else "")
                    + ". Drop an image to classify it.", elem_id="la-header")
        with gr.Row():
            with gr.Column():
                img = unopened(gr.Image(sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None,
                                        label="Image", format="png", height=340, elem_id="predict-image"))
                ex = _examples(meta["vocab"])
                if ex:
                    gr.Examples(ex, inputs=img, label="Example crests", api_visibility="private")
            with gr.Column():
                out = gr.Label(num_top_classes=5, label="Prediction", elem_id="predict-label")
                gr.Markdown("Classes: " + ", ".join(meta["vocab"]), elem_classes="la-note")

        def predict(image):
            """Classify one image: returns {label: probability} for the most likely classes."""
            if image is None:
                return None
            try:
                return pred.predict(upload(image))
            except ImageError as e:  # what was wrong with the input, never a path or an address on the server
                raise gr.Error(f"Cannot use this image: {plain(e)}") from None

        img.change(predict, img, out, api_name="predict", show_progress="minimal")
    return app


def build_app(data: str | Path | None = None, models_dir: str | Path | None = None, demo: str | Path | None = None,
              allow_folders: bool = True, size: int | None = None, progress=None) -> gr.Blocks:
    """The whole app (or, with demo=MODEL_DIR, the predict-only app for one model)."""
    if demo:
        return build_demo(demo)
    from . import train as T  # fastai is heavy: only the full app needs it

    folder = Path(models_dir or default_models_dir())
    reg = Registry(folder)
    st = Settings()
    size0 = size  # what start-up asked for (None: fitted); on_load's own `size` is the slider's value
    try:
        ds0 = datamod.resolve(data, size=size, progress=progress or _cli_progress("preparing the data"))
    except datamod.DataError as e:
        raise SystemExit(f"logoapp: {e}") from None
    name0 = "embedded crests" if data in (None, "", "embedded") else str(data)
    ctx0 = DataCtx(ds0, name0)
    ctx0.baseline("l1")

    def ctx_of(sess: Session) -> DataCtx:
        return sess.ctx or ctx0

    dv, iv = data_views(ctx0), ideal_views(ctx0)
    b0 = ctx0.baseline("l1")
    ev = eval_views(b0["eval"], b0["meta"], ctx0, BASE + "l1", "pixel-similarity baseline · L1")
    default_model = reg.default(ctx0)
    d0 = models.DEFAULTS["cnn"]

    with gr.Blocks(title="logoapp", analytics_enabled=False, delete_cache=DELETE_CACHE) as app:
        sess = gr.State(Session(), delete_callback=Session.close)
        gr.Markdown("# logoapp\nBuild an image classifier from a folder of pictures, and understand it — the fast.ai "
                    "book's chapter-4 ladder: **pixel means → linear model → small neural net → CNN → ResNet**. "
                    "Work through the tabs from left to right.", elem_id="la-header")
        with gr.Tabs(elem_id="tabs") as tabs:
            # ------------------------------------------------------------------------------- Data
            with gr.Tab("1 · Data", id="data", elem_id="tab-data") as tab_data:
                with gr.Row(equal_height=False):
                    own = data not in (None, "", "embedded")
                    sources = ((["folder on the server"] if allow_folders else [START]) if own else []) + \
                        ["embedded crests"] + (["folder on the server"] if allow_folders and not own else []) + ["zip upload"]
                    source = gr.Radio(sources, value=sources[0], label="Dataset", scale=2)
                    path = gr.Textbox(label="Folder (one sub-folder per class, or train/ and valid/)",
                                      value=str(data) if own else "", placeholder="/path/to/images",
                                      visible=allow_folders and own, scale=3)
                    zfile = gr.File(label="Zip of class folders", file_types=[".zip"], visible=False, scale=3, height=110)
                with gr.Accordion("Loading options", open=False):
                    with gr.Row():
                        opt_size = gr.Slider(0, 256, value=size or 0, step=4, label="Stored image size (pixels, square; 0 = the "
                                             f"images' own size, at most {st.size})", elem_id="opt-size")
                        opt_valid = gr.Slider(0.05, 0.5, value=st.valid_pct, step=0.05, label="Validation fraction")
                        opt_seed = gr.Number(value=st.seed, precision=0, label="Split seed")
                load_btn = gr.Button("Load dataset", variant="primary", elem_id="load-btn")
                data_summary = gr.Markdown(dv["data_md"], elem_id="data-summary")
                with gr.Row(equal_height=False):
                    counts = gr.Plot(dv["counts"], label="Images per class", format="png", scale=3)
                    with gr.Column(scale=2):
                        sizes = gr.Dataframe(dv["sizes"], label="Original sizes and modes", interactive=False, max_height=260)
                        with gr.Accordion("Files left out", open=bool(ctx0.summary["bad"])):
                            bad = gr.Dataframe(dv["bad"], interactive=False, wrap=True, max_height=260, show_label=False)
                gr.Markdown("### Browse the images\nClick a thumbnail to look at its pixels.")
                with gr.Row(equal_height=False, elem_classes="la-align-end"):
                    cls = gr.Dropdown(["(all classes)"] + ds0.vocab, value="(all classes)", label="Class", scale=2)
                    page = gr.Slider(1, max(2, math.ceil(len(ds0.items) / PAGE)), value=1, step=1, label="Page", scale=3,
                                     elem_id="data-page")
                    page_md = gr.Markdown(dv["page_md"], elem_classes="la-note")
                gallery = gr.Gallery(dv["gallery"], columns=10, height="auto", format="png", allow_preview=False,
                                     object_fit="contain", show_label=False, elem_id="data-gallery", elem_classes="la-captions")
                with gr.Row(equal_height=False):
                    big = gr.Image(dv["big"], label="Selected image (pixels enlarged)", format="png", interactive=False,
                                   height=340, scale=1, min_width=300, buttons=["download"])
                    with gr.Column(scale=2):
                        info = gr.Markdown(dv["info"])
                        with gr.Row():
                            px = gr.Slider(0, ds0.size - PATCH, value=dv["px"], step=1, label="patch x (column)")
                            py = gr.Slider(0, ds0.size - PATCH, value=dv["py"], step=1, label="patch y (row)")
                        patch = gr.Dataframe(dv["patch"], interactive=False, show_label=False, elem_id="pixel-table")
                with gr.Row():
                    gr.Markdown("### Augmentation preview\nRandom versions of the selected image, as the CNN and ResNet see "
                                "them in training (the validation images are never augmented).")
                    aug_btn = gr.Button("Show another random batch", scale=0, min_width=220)
                aug_plot = gr.Plot(dv["augment"], format="png", show_label=False)

            # ------------------------------------------------------------------------------- Ideal
            with gr.Tab("2 · Ideal images", id="ideal", elem_id="tab-ideal") as tab_ideal:
                gr.Markdown("The simplest possible classifier (the book's *pixel similarity*): average every training "
                            "image of a class pixel by pixel into one **ideal** image, then call each new image the class "
                            "whose ideal it is closest to. The grey row is the book's 'weird average' over the colour "
                            "channels.")
                with gr.Row():
                    dist = gr.Radio([("L1: mean absolute difference", "l1"), ("RMSE: root mean squared error", "rmse")],
                                    value="l1", label="Distance")
                    bg = gr.Radio([("checkerboard", "checker"), ("white", "white")], value="checker",
                                  label="Show transparency on", visible=ds0.channels == 4)
                ideal_plot = gr.Plot(iv["ideal"], format="png", show_label=False, elem_id="ideal-plot")
                with gr.Row(equal_height=False):
                    ideal_md = gr.Markdown(iv["ideal_md"])
                    ideal_table = gr.Dataframe(iv["ideal_table"], label="Per-class accuracy", interactive=False, max_height=320)
                hist = gr.Plot(iv["hist"], format="png", show_label=False)

            # ------------------------------------------------------------------------------- Train
            with gr.Tab("3 · Train", id="train", elem_id="tab-train") as tab_train:
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=320):
                        arch = gr.Radio(models.TRAINABLE, value="cnn", label="Model (the ladder, simplest first)",
                                        elem_id="arch")
                        arch_md = gr.Markdown(models.DESCRIPTIONS["cnn"], elem_classes="la-note")
                        epochs = gr.Slider(1, 40, value=d0["epochs"], step=1, label="Epochs", elem_id="epochs")
                        with gr.Row(equal_height=False, elem_classes="la-align-end"):
                            lr = gr.Number(value=d0["lr"], label="Learning rate", minimum=0, step=1e-4, elem_id="lr", scale=2)
                            lr_btn = gr.Button("Find LR", scale=1, min_width=90, elem_classes="la-inline-btn")
                        tsize = gr.Slider(16, 256, value=models.default_size("cnn", ds0.size), step=8, label="Input size (pixels the model sees)",
                                          elem_id="size")
                        with gr.Row():
                            bs = gr.Dropdown([16, 32, 64, 128, 256], value=st.bs, label="Batch size", min_width=100)
                            seed = gr.Number(value=st.seed, precision=0, label="Seed", min_width=90)
                        aug = gr.Checkbox(value=d0["aug"], label="Augment training images (see the Data tab's preview)")
                        with gr.Row():
                            train_btn = gr.Button("Train", variant="primary", elem_id="train-btn")
                            stop_btn = gr.Button("Stop", variant="stop", interactive=False, elem_id="stop-btn")
                    with gr.Column(scale=2):
                        prog = gr.HTML(bar(0, "Pick a model and press Train. Training runs on this machine's "
                                           f"{models.device().type.upper()}; Stop keeps the model trained so far.", "idle"),
                                       elem_id="train-progress")
                        with gr.Row(equal_height=False):
                            loss_plot = gr.Plot(plots.loss_curves([], []), format="png", show_label=False, elem_id="loss-plot")
                            acc_plot = gr.Plot(plots.accuracy_curve([], []), format="png", show_label=False, elem_id="acc-plot")
                        metrics = gr.Dataframe(plots.metrics_table([]), label="Per epoch", interactive=False,
                                               elem_id="epoch-table", max_height=260)
                        result = gr.Markdown("", elem_id="train-result")
                        with gr.Accordion("Learning-rate finder", open=False) as lr_acc:
                            lr_plot = gr.Plot(plots.message("Press 'Find LR' to run fastai's learning-rate finder: a short "
                                                            "run with a growing learning rate. Pick a rate where the loss "
                                                            "still falls steeply."), format="png", show_label=False)
                board1 = gr.Dataframe(board_df(Session(), ctx0), label="Leaderboard: every model of this session on the same validation split",
                                      interactive=False, elem_id="leaderboard")

            # ------------------------------------------------------------------------------- Evaluate
            with gr.Tab("4 · Evaluate", id="evaluate", elem_id="tab-evaluate") as tab_eval:
                with gr.Row(equal_height=False, elem_classes="la-align-end"):
                    emodel = gr.Dropdown(reg.choices(ctx0), value=BASE + "l1", label="Model", scale=4, elem_id="eval-model",
                                         allow_custom_value=True)  # API callers may name models saved after start-up
                    eval_btn = gr.Button("Evaluate again", scale=1, elem_classes="la-inline-btn")
                eval_md = gr.Markdown(ev["eval_md"])
                with gr.Row(equal_height=False):
                    cm = gr.Plot(ev["cm"], format="png", show_label=False, scale=3, elem_id="confusion")
                    with gr.Column(scale=2):
                        eval_table = gr.Dataframe(ev["eval_table"], label="Per-class accuracy", interactive=False, max_height=330)
                        confused = gr.Dataframe(ev["confused"], label="Most confused (click a row to see the images)",
                                                interactive=False, max_height=260)
                gr.Markdown("### Top losses\nThe validation images the model was most confidently wrong (or least sure) "
                            "about. Caption: **actual / predicted / probability / loss**.")
                tops = gr.Gallery(ev["tops"], columns=8, height="auto", format="png", allow_preview=True,
                                  object_fit="contain", show_label=False, elem_id="top-losses", elem_classes="la-captions")
                gr.Markdown("### Look inside a cell of the confusion matrix\nPick its actual and predicted class, or "
                            "click a row of *Most confused*.")
                with gr.Row():
                    actual = gr.Dropdown(ds0.vocab, value=ev["actual"], label="Actual class")
                    predicted = gr.Dropdown(ds0.vocab, value=ev["predicted"], label="Predicted class")
                cell_md = gr.Markdown(ev["cell_md"])
                cell = gr.Gallery(ev["cell"], columns=10, height="auto", format="png", object_fit="contain", show_label=False,
                                  elem_classes="la-captions", elem_id="cell-gallery")
                with gr.Column(visible=ev["weights_visible"]) as wgroup:
                    gr.Markdown("### What the linear model learned\nIts weights are one number per pixel, channel and "
                                "class; here each class's weights are drawn as an image (averaged over the channels). "
                                "Red pixels add to the class's score when they are bright, blue ones subtract.")
                    weights = gr.Plot(None, format="png", show_label=False, elem_id="linear-weights")
                board2 = gr.Dataframe(board_df(Session(), ctx0), label="Leaderboard", interactive=False)

            # ------------------------------------------------------------------------------- Predict
            with gr.Tab("5 · Predict", id="predict", elem_id="tab-predict") as tab_pred:
                with gr.Row(equal_height=False):
                    with gr.Column():
                        pmodel = gr.Dropdown(reg.choices(ctx0), value=default_model, label="Model", elem_id="predict-model",
                                             allow_custom_value=True)
                        pimg = unopened(gr.Image(sources=["upload", "webcam", "clipboard"], type="filepath",
                                                 image_mode=None, label="Drop, upload, paste or snap an image",
                                                 format="png", height=320, elem_id="predict-image"))
                        ex = _examples(None)
                        with gr.Column(visible=bool(_model_examples(reg, default_model, ctx0))) as pex:
                            if ex:
                                gr.Examples(ex, inputs=pimg, label="Example crests", examples_per_page=8)
                    with gr.Column():
                        plabel = gr.Label(num_top_classes=5, label="Prediction", elem_id="predict-label")
                        pinfo = gr.Markdown("", elem_classes="la-note")
                with gr.Accordion("Many images at once", open=False):
                    pfiles = gr.File(file_count="multiple", label="Images (any number; unreadable files are reported, not fatal)", height=120)
                    pmany = gr.Dataframe(pd.DataFrame(columns=["file", "predicted", "probability %", "next best"]),
                                         interactive=False, show_label=False)
                with gr.Accordion("Export or import a model", open=False):
                    with gr.Row(equal_height=False):
                        with gr.Column():
                            export_btn = gr.Button("Export the selected model as .zip")
                            export_file = gr.File(label="Model zip", interactive=False, height=90)
                        with gr.Column():
                            import_file = gr.File(label="Import a model zip (from logoapp)", file_types=[".zip"], height=90)
                            import_md = gr.Markdown("")

        # ============================================================================== handlers: Data
        def on_source(choice):
            return gr.update(visible=choice == "folder on the server"), gr.update(visible=choice == "zip upload")

        source.change(on_source, source, [path, zfile], api_visibility="private", show_progress="hidden")

        data_outputs = [sess, data_summary, counts, sizes, bad, cls, page, page_md, gallery, big, info, patch, px, py,
                        aug_plot, ideal_plot, ideal_md, ideal_table, hist, dist, emodel, pmodel, eval_md, cm, eval_table,
                        confused, tops, actual, predicted, cell_md, cell, wgroup, board1, board2, tsize, bg, pex, result]

        def on_load(s: Session, source, folder_path, zip_file, size, valid_fraction, seed, progress=gr.Progress()):
            """Load the chosen dataset into this session and refresh every tab."""
            choice, folder_text, zpath = source, folder_path, zip_file
            want = int(size) or None  # 0: fit to the images
            if want is not None and want < 8:
                raise gr.Error("Stored image size: choose 0 (the images' own size) or 8 pixels and more.")
            kw = dict(size=want, valid_pct=float(valid_fraction), seed=int(seed or 0), progress=_gr_progress(progress))
            tmp = None
            try:
                if choice == "zip upload":
                    if not zpath:
                        raise gr.Error("Upload a .zip of class folders first.")
                    zpath = upload(zpath)
                    tmp = str(tmpdirs.make("zip"))
                    skipped = []
                    root = extract_zip(zpath, tmp, skipped)
                    try:  # cache=False: the unpacked folder is temporary, so a cache entry would never be read
                        # again, and an uploader's images must not outlive their session on the server's disk
                        ds = datamod.open_dataset(root, cache=False, **kw)
                    except datamod.DataError as e:
                        if skipped:
                            raise datamod.DataError(f"{e}; {len(skipped)} zip member(s) skipped, first: "
                                                    f"{skipped[0][0]}: {skipped[0][1]}") from None
                        raise
                    ds.bad += [datamod.BadFile(f"(zip) {m}", why) for m, why in skipped]  # shown in 'Files left out'
                    name = f"uploaded {file_name(zpath)}"
                elif choice == "folder on the server":
                    if not allow_folders:
                        raise gr.Error("Reading server folders is switched off for this app.")
                    if not (folder_text or "").strip():
                        raise gr.Error("Type the path of a folder with one sub-folder per class.")
                    ds, name = datamod.open_dataset(folder_text.strip(), **kw), folder_text.strip()
                elif choice == START:
                    ds, name = None, ctx0.name
                elif (data in (None, "", "embedded") and float(valid_fraction) == ds0.valid_pct
                      and (want == ds0.size or (want is None and size0 is None))  # the same request as start-up
                      and int(seed or 0) == ds0.seed):
                    ds, name = None, ctx0.name       # the start-up set again: share it instead of a second copy
                else:
                    ds, name = datamod.resolve(None, **kw), "embedded crests"
            except datamod.DataError as e:
                tmpdirs.remove(tmp)
                raise gr.Error(str(e)) from None
            except BaseException:  # any other failure must not leave an unpacked upload behind either
                tmpdirs.remove(tmp)
                raise
            s.use(DataCtx(ds, name, tmp) if ds is not None else None)
            progress(0.9, desc="computing the ideal images")
            return refresh_all(s)

        def refresh_all(s: Session) -> dict:
            ctx = ctx_of(s)
            v, i = data_views(ctx), ideal_views(ctx)
            b = ctx.baseline("l1")
            e = eval_views(b["eval"], b["meta"], ctx, BASE + "l1", "pixel-similarity baseline · L1")
            s.evals[BASE + "l1"] = (b["eval"], b["meta"])
            choices = reg.choices(ctx)
            dflt = reg.default(ctx)
            return {sess: s, data_summary: v["data_md"], counts: v["counts"], sizes: v["sizes"], bad: v["bad"],
                    cls: gr.update(choices=["(all classes)"] + ctx.ds.vocab, value="(all classes)"), page: _page(v),
                    page_md: v["page_md"], gallery: v["gallery"], big: v["big"], info: v["info"], patch: v["patch"],
                    px: gr.update(maximum=ctx.ds.size - PATCH, value=v["px"]), py: gr.update(maximum=ctx.ds.size - PATCH, value=v["py"]),
                    aug_plot: v["augment"], ideal_plot: i["ideal"], ideal_md: i["ideal_md"], ideal_table: i["ideal_table"],
                    hist: i["hist"], dist: "l1", emodel: gr.update(choices=choices, value=BASE + "l1"),
                    pmodel: gr.update(choices=choices, value=dflt), eval_md: e["eval_md"], cm: e["cm"],
                    eval_table: e["eval_table"], confused: e["confused"], tops: e["tops"],
                    actual: gr.update(choices=ctx.ds.vocab, value=e["actual"]),
                    predicted: gr.update(choices=ctx.ds.vocab, value=e["predicted"]), cell_md: e["cell_md"],
                    cell: e["cell"], wgroup: gr.update(visible=False), board1: board_df(s, ctx), board2: board_df(s, ctx),
                    tsize: gr.update(value=models.default_size("cnn", ctx.ds.size)), bg: gr.update(visible=ctx.ds.channels == 4),
                    pex: gr.update(visible=bool(_model_examples(reg, dflt, ctx))),
                    result: f"Loaded **{html.escape(ctx.name)}**: {len(ctx.ds.items):,} images, {ctx.ds.c} classes."}

        load_btn.click(on_load, [sess, source, path, zfile, opt_size, opt_valid, opt_seed], data_outputs,
                       api_name="load_data", concurrency_id="data", concurrency_limit=1)

        def on_page(s: Session, c, p):
            v = gallery_view(ctx_of(s), c, int(p or 1))
            return v["gallery"], _page(v), v["page_md"]

        cls.change(lambda s, c: on_page(s, c, 1), [sess, cls], [gallery, page, page_md], api_visibility="private",
                   show_progress="hidden")
        page.release(on_page, [sess, cls, page], [gallery, page, page_md], api_visibility="private",
                     show_progress="hidden", trigger_mode="always_last")

        def on_pick(s: Session, c, p, x, y, evt: gr.SelectData):
            idx, _ = page_indices(ctx_of(s), c, int(p or 1))
            if evt.index is None or evt.index >= len(idx):
                return gr.skip(), gr.skip(), gr.skip(), gr.skip()
            s.sel = int(idx[evt.index])
            v = pixel_view(ctx_of(s), s.sel, x, y)
            return v["big"], v["info"], v["patch"], augment_view(ctx_of(s), s.sel)

        gallery.select(on_pick, [sess, cls, page, px, py], [big, info, patch, aug_plot], api_visibility="private",
                       show_progress="hidden")

        def on_patch(s: Session, x, y):
            v = pixel_view(ctx_of(s), s.sel, x, y)
            return v["big"], v["patch"]

        # change, not release: arrow keys and typed values move the patch too
        gr.on([px.change, py.change], on_patch, [sess, px, py], [big, patch], api_visibility="private",
              show_progress="hidden", trigger_mode="always_last")
        aug_btn.click(lambda s: augment_view(ctx_of(s), s.sel), sess, aug_plot, api_visibility="private")

        # ============================================================================== handlers: Ideal
        def on_ideal(s: Session, distance, background):
            """Ideal images, baseline accuracy and distance histograms for 'l1' or 'rmse'."""
            kind = distance
            v = ideal_views(ctx_of(s), kind, background)
            choices = reg.choices(ctx_of(s))
            return (v["ideal"], v["ideal_md"], v["ideal_table"], v["hist"], board_df(s, ctx_of(s)), board_df(s, ctx_of(s)),
                    gr.update(choices=choices), gr.update(choices=choices))

        gr.on([dist.change, bg.change], on_ideal, [sess, dist, bg],
              [ideal_plot, ideal_md, ideal_table, hist, board1, board2, emodel, pmodel], api_name="ideal")

        # ============================================================================== handlers: Train
        def on_arch(a, s: Session):
            d = models.DEFAULTS[a]
            return (models.DESCRIPTIONS[a], d["epochs"], d["lr"], models.default_size(a, ctx_of(s).ds.size), d["aug"])

        arch.change(on_arch, [arch, sess], [arch_md, epochs, lr, tsize, aug], api_visibility="private",
                    show_progress="hidden")

        def config(model, epochs_, lr_, batch_size, size_, augment, seed_):
            if model not in models.TRAINABLE:
                raise gr.Error(f"Unknown model {model!r}: choose one of {', '.join(models.TRAINABLE)}.")
            if lr_ is None or not lr_ > 0:
                raise gr.Error("The learning rate must be a positive number, e.g. 0.003.")
            if not 1 <= int(epochs_ or 0) <= 1000:
                raise gr.Error("Epochs must be between 1 and 1000.")
            if not 8 <= int(size_ or 0) <= 1024:
                raise gr.Error("The model input size must be between 8 and 1024 pixels.")
            return T.TrainConfig(model, int(epochs_), float(lr_), int(batch_size), int(size_), bool(augment), int(seed_ or 0))

        def on_lr(s: Session, model, epochs, lr, batch_size, size, augment, seed, progress=gr.Progress()):
            """fastai's learning-rate finder for this configuration: the curve and the suggested rate."""
            cfg = config(model, epochs, lr or 1e-3, batch_size, size, augment, seed)
            progress(0.1, desc="running the learning-rate finder (a short training run)…")
            try:
                r = T.lr_find(ctx_of(s).ds, cfg)
            except Exception as e:  # a finder that diverges at once, a model that doesn't fit memory...
                raise gr.Error(f"The learning-rate finder failed: {type(e).__name__}: {e}") from None
            sug = float(f"{r['suggested']:.2g}")
            return plots.lr_finder(r["lrs"], r["losses"], r["suggested"]), sug, gr.update(open=True)

        lr_btn.click(on_lr, [sess, arch, epochs, lr, bs, tsize, aug, seed], [lr_plot, lr, lr_acc], api_name="lr_find",
                     concurrency_id="train", concurrency_limit=1)

        def on_train(s: Session, model, epochs, lr, batch_size, size, augment, seed):
            """Train one model, streaming progress, curves and the per-epoch table; saves it when done."""
            ctx = ctx_of(s)
            cfg = config(model, epochs, lr, batch_size, size, augment, seed)
            if s.running:
                raise gr.Error("A training run is already going in this session.")
            s.running, s.stop = True, threading.Event()
            out = store.unique_dir(folder, f"{cfg.model}-{ctx.slug}")
            tl, ta, vl, va, hist_, final = [], [], [], [], [], {}
            n_epoch, last_draw, started = cfg.epochs, 0.0, time.perf_counter()
            yield {train_btn: gr.update(interactive=False), stop_btn: gr.update(interactive=True),
                   prog: bar(0, f"preparing {cfg.model}…"), loss_plot: plots.loss_curves([], [], n_epoch),
                   acc_plot: plots.accuracy_curve([], [], n_epoch), metrics: plots.metrics_table([]), result: ""}
            try:
                for e in T.train(ctx.ds, cfg, stop=s.stop, out=out):
                    kind, now = e["type"], time.perf_counter()
                    if kind == "start":
                        note = f" · {e['weights_note']}" if e.get("weights_note") else ""
                        yield {prog: bar(0, f"training {cfg.model}: {e['n_params']:,} parameters, {e['n_train']:,} "
                                            f"training images, {e['n_iter']} batches per epoch{note}")}
                    elif kind == "batch":
                        x = e["epoch"] + (e["iter"] + 1) / e["n_iter"]
                        loss, acc = e["smooth_loss"], e["smooth_acc"]
                        tl.append((x, loss))
                        ta.append((x, acc))
                        p, el = e["progress"], e["elapsed"]
                        eta = el * (1 - p) / p if p > 0 else 0
                        upd = {prog: bar(p, f"epoch {e['epoch'] + 1}/{e['n_epoch']} · batch {e['iter'] + 1}/{e['n_iter']} · "
                                            f"{p:.0%} · {_secs(el)} elapsed · about {_secs(eta)} left · "
                                            f"train loss {e['train_loss']:.3f}")}
                        if now - last_draw >= 1.0:
                            last_draw = now
                            upd[loss_plot] = plots.loss_curves(tl, vl, n_epoch)
                            upd[acc_plot] = plots.accuracy_curve(ta, va, n_epoch)
                        yield upd
                    elif kind == "epoch":
                        x = e["epoch"] + 1
                        vl.append((x, e["valid_loss"]))
                        va.append((x, e["accuracy"]))
                        hist_.append(e)
                        last_draw = now
                        yield {loss_plot: plots.loss_curves(tl, vl, n_epoch), acc_plot: plots.accuracy_curve(ta, va, n_epoch),
                               metrics: plots.metrics_table(hist_)}
                    elif kind == "error":
                        final = {prog: bar(1, f"training failed: {e['message']}", "error"),
                                 result: f"**Training failed:** {html.escape(e['message'])}"}
                        yield final
                    elif kind == "done":
                        name = Path(e["model_path"]).name if e.get("model_path") else cfg.model
                        s.board[name] = {"name": name, "arch": cfg.model, "accuracy": e["accuracy"], "seconds": e["seconds"],
                                         "n_params": e["n_params"], "epochs": len(e["history"]), "size": e["_meta"]["size"]}
                        s.evals.pop(name, None)
                        choices = reg.choices(ctx)
                        how = "stopped early" if e["stopped"] else "finished"
                        state = "stopped" if e["stopped"] else "done"
                        msg = (f"**{name}** {how}: **{e['accuracy']:.1%}** validation accuracy after "
                               f"{len(e['history'])} epoch(s), {_secs(e['seconds'])}. Saved to `{e['model_path']}`; "
                               f"it is now selected in Evaluate and Predict.")
                        if e.get("weights_note") and not e.get("pretrained"):
                            msg += f"  \n<span class='la-note'>{html.escape(e['weights_note'])}</span>"
                        final = {prog: bar(1 if not e["stopped"] else (tl[-1][0] / n_epoch if tl else 0),
                                           f"{how} in {_secs(time.perf_counter() - started)} · validation accuracy "
                                           f"{e['accuracy']:.1%}", state),
                                 loss_plot: plots.loss_curves(tl, vl, n_epoch), acc_plot: plots.accuracy_curve(ta, va, n_epoch),
                                 metrics: plots.metrics_table(e["history"]), result: msg,
                                 board1: board_df(s, ctx), board2: board_df(s, ctx),
                                 emodel: gr.update(choices=choices, value=name), pmodel: gr.update(choices=choices, value=name)}
                        yield final
            finally:
                s.running = False
                s.stop.set()
            # the last update repeats the outcome, so an API caller's final value is the result, not a button state
            yield {**final, train_btn: gr.update(interactive=True), stop_btn: gr.update(interactive=False)}

        train_btn.click(on_train, [sess, arch, epochs, lr, bs, tsize, aug, seed],
                        [train_btn, stop_btn, prog, loss_plot, acc_plot, metrics, result, board1, board2, emodel, pmodel],
                        api_name="train", concurrency_id="train", concurrency_limit=1, show_progress="minimal",
                        show_progress_on=prog)  # queue position and timer on the bar only, the plots stay visible

        def on_stop(s: Session):
            s.stop.set()
            return gr.update(interactive=False)

        stop_btn.click(on_stop, sess, stop_btn, api_name="stop", concurrency_limit=None, show_progress="hidden")

        # ============================================================================== handlers: Evaluate
        def on_eval(s: Session, model):
            """Evaluate a model on the current validation split and add it to the leaderboard."""
            ctx, name = ctx_of(s), model
            if not name:
                return {}
            if name not in s.evals:
                model, meta = reg.get(name, ctx)
                try:
                    res = ctx.baseline(name[len(BASE):])["eval"] if name.startswith(BASE) else evaluate_on(model, meta, ctx)
                except ViewError as e:
                    raise gr.Error(str(e)) from None
                s.evals[name] = (res, meta)
                if not name.startswith(BASE):
                    mt = meta.get("metrics") or {}
                    s.board[name] = {"name": name, "arch": meta["arch"], "accuracy": res["accuracy"],
                                     "seconds": mt.get("seconds"), "n_params": meta.get("n_params"),
                                     "epochs": len(mt.get("history") or []) or None, "size": meta.get("size")}
            res, meta = s.evals[name]
            label = dict((v, k) for k, v in reg.choices(ctx)).get(name, name)
            v = eval_views(res, meta, ctx, name, label)
            w = None
            if meta["arch"] == "linear":
                w = linear_weights_view(reg.get(name, ctx)[0], meta)
            return {eval_md: v["eval_md"], cm: v["cm"], eval_table: v["eval_table"], confused: v["confused"],
                    tops: v["tops"], actual: v["actual"], predicted: v["predicted"], cell_md: v["cell_md"], cell: v["cell"],
                    wgroup: gr.update(visible=w is not None), weights: w, board1: board_df(s, ctx), board2: board_df(s, ctx)}

        eval_outputs = [eval_md, cm, eval_table, confused, tops, actual, predicted, cell_md, cell, wgroup, weights, board1, board2]
        gr.on([emodel.change, eval_btn.click], on_eval, [sess, emodel], eval_outputs, api_name="evaluate",
              concurrency_id="eval", concurrency_limit=2)

        def on_cell(s: Session, name, a, p):
            if name not in s.evals:
                if name == BASE + "l1" or (name and name.startswith(BASE)):
                    b = ctx_of(s).baseline(name[len(BASE):])
                    s.evals[name] = (b["eval"], b["meta"])
                else:
                    return gr.skip(), gr.skip()
            v = cell_view(s.evals[name][0], ctx_of(s), a, p)
            return v["cell"], v["cell_md"]

        gr.on([actual.input, predicted.input], on_cell, [sess, emodel, actual, predicted], [cell, cell_md],
              api_visibility="private", show_progress="hidden")

        def on_confused_pick(s: Session, name, evt: gr.SelectData):
            row = evt.row_value or []
            if len(row) < 2 or row[0] not in ctx_of(s).ds.vocab:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip()
            cv = on_cell(s, name, row[0], row[1])
            return row[0], row[1], cv[0], cv[1]

        confused.select(on_confused_pick, [sess, emodel], [actual, predicted, cell, cell_md], api_visibility="private",
                        show_progress="hidden")

        # ============================================================================== handlers: Predict
        def predictor(s: Session, name) -> Predictor:
            model, meta = reg.get(name, ctx_of(s))
            return Predictor(model, meta)

        def on_predict(image, model, s: Session):
            """Classify one image with the chosen model (default: the newest trained one, else the pixel baseline):
            returns {label: probability}, most likely first."""
            try:
                return classify(image, model, s)
            except ImageError as e:
                raise gr.Error(f"Cannot use this image: {e}") from None

        def classify(image, model, s: Session) -> dict | None:
            return None if image is None else predictor(s, model or reg.default(ctx_of(s))).predict(upload(image))

        def on_predict_note(image, model, s: Session):
            if image is None:
                return ""
            try:
                _, meta = reg.get(model or reg.default(ctx_of(s)), ctx_of(s))
                h = header(image)
            except (ImageError, gr.Error):
                return ""
            n = meta["data_size"]
            return (f"Input {h.width}×{h.height} {h.mode} ({h.format}) → resized to {n}×{n} "
                    f"{'RGBA' if meta['channels'] == 4 else 'RGB'}, exactly as in training.")

        def on_repredict(image, model, s: Session):
            """Another model picked (or trained): classify the image again; one it could not use is not reported again."""
            try:
                return classify(image, model, s)
            except ImageError:
                return None

        pimg.change(on_predict, [pimg, pmodel, sess], plabel, api_name="predict", concurrency_id="predict",
                    concurrency_limit=4, show_progress="minimal")
        pmodel.change(on_repredict, [pimg, pmodel, sess], plabel, api_visibility="private", concurrency_id="predict",
                      show_progress="minimal")
        gr.on([pimg.change, pmodel.change], on_predict_note, [pimg, pmodel, sess], pinfo, api_visibility="private",
              show_progress="hidden")

        pmodel.change(lambda m, s: gr.update(visible=bool(_model_examples(reg, m, ctx_of(s)))), [pmodel, sess], pex,
                      api_visibility="private", show_progress="hidden")

        def on_many(files, model, s: Session):
            """Classify several image files: a table of file, predicted class, probability and runners-up."""
            name = model
            if not files:
                return pd.DataFrame(columns=["file", "predicted", "probability %", "next best"])
            files = [upload(f) for f in files]
            p = predictor(s, name or reg.default(ctx_of(s)))
            return _predict_table(p.predict_many(files))

        pfiles.change(on_many, [pfiles, pmodel, sess], pmany, api_name="predict_many", concurrency_id="predict")

        def on_export(s: Session, model):
            """The chosen model as a .zip (model.json + weights) to download."""
            name = model
            if not name:
                raise gr.Error("Pick a model first.")
            if name.startswith(BASE):
                model, meta = reg.get(name, ctx_of(s))
                tmp = tmpdirs.make("export") / f"pixel-{name[len(BASE):]}-{ctx_of(s).slug}"
                src = store.save(model, meta, tmp)
            else:
                src = reg.folder_of(name)
            return str(store.export_zip(src))

        export_btn.click(on_export, [sess, pmodel], export_file, api_name="export_model")

        def on_import(s: Session, zip_file):
            """Add a model .zip exported by logoapp to the models folder."""
            zpath = zip_file
            if not zpath:
                return gr.skip()
            zpath = upload(zpath)
            try:  # count members before zipfile parses the directory: it would build a huge one before any check
                n, _ = zip_directory(zpath, MAX_MODEL_ZIP_FILES)
            except ValueError as e:
                raise gr.Error(f"Not a model zip: {e}.") from None
            if n > MAX_MODEL_ZIP_FILES:
                raise gr.Error(f"Not a model zip: it has more than {MAX_MODEL_ZIP_FILES} files; a model zip from logoapp "
                               "holds model.json and one weights file.")
            try:  # store.import_zip checks sizes, the checksum, and loads the weights with weights_only=True
                dest = store.import_zip(zpath, folder)
            except store.ModelError as e:
                msg = str(e)
                raise gr.Error(msg[:1].upper() + msg[1:]) from None
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, TypeError) as e:
                # a corrupt member (bad CRC), an encrypted one, a model.json nested too deep, a non-text name...
                raise gr.Error(f"Not a usable model zip ({type(e).__name__}: {str(e)[:200]}).") from None
            m = store.read_meta(dest)
            s.imported = dest.name
            return f"Imported **{dest.name}** ({m['arch']}, {len(m['vocab'])} classes) into `{folder}`."

        def on_imported(s: Session):
            """After a successful import only (a refused zip leaves both pickers as they were): select the new model."""
            if not s.imported:
                return gr.skip(), gr.skip()
            name, s.imported = s.imported, None
            choices = reg.choices(ctx_of(s))
            return gr.update(choices=choices, value=name), gr.update(choices=choices, value=name)

        import_file.upload(on_import, [sess, import_file], import_md, api_name="import_model").success(
            on_imported, sess, [pmodel, emodel], api_visibility="private", show_progress="hidden")

        def on_models_tab(s: Session, e_val, p_val):
            choices = reg.choices(ctx_of(s))
            vals = [v for _, v in choices]
            return (gr.update(choices=choices, value=e_val if e_val in vals else reg.default(ctx_of(s))),
                    gr.update(choices=choices, value=p_val if p_val in vals else reg.default(ctx_of(s))))

        for t in (tab_eval, tab_pred):  # models saved by other sessions (or copied in) show up when a tab opens
            t.select(on_models_tab, [sess, emodel, pmodel], [emodel, pmodel], api_visibility="private",
                     show_progress="hidden")
    return app


# ============================================================================================= main

def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="app.py", description="logoapp: build an image classifier from a folder of pictures and understand it "
                                   "(a Gradio web app; open the printed URL in a browser).")
    p.add_argument("--data", default=env("LOGOAPP_DATA"),
                   help="folder of images, one sub-folder per class (or train/ and valid/); default: the embedded "
                        "crest set (env LOGOAPP_DATA)")
    p.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on (default 127.0.0.1, this computer only); 0.0.0.0 serves your whole "
                        "network (env GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")),
                   help="port to listen on (default 7860; env GRADIO_SERVER_PORT)")
    p.add_argument("--models", default=None, help="folder for trained models (env LOGOAPP_MODELS, else ./models)")
    p.add_argument("--size", type=int, default=None, help="stored image size for the data, in pixels (default: the images' own size, at most 140)")
    p.add_argument("--share", action="store_true",
                   help="also create a temporary public gradio.live link (needs internet; without it the app "
                        "serves locally and says so)")
    p.add_argument("--demo", metavar="MODEL_DIR", default=env("LOGOAPP_DEMO"),
                   help="serve only the Predict tab for this one model: no training, no data browsing, no model "
                        "import, and /predict as the only API endpoint (env LOGOAPP_DEMO)")
    p.add_argument("--auth", metavar="USER:PASS", default=None,
                   help="require this login (env LOGOAPP_AUTH); use it whenever the app is reachable by others")
    p.add_argument("--allow-folders", action="store_true",
                   help="let users load server folders by path even when serving beyond this computer")
    p.add_argument("--max-file-size", default=env("LOGOAPP_MAX_FILE_SIZE"),
                   help="largest upload accepted, e.g. 20mb (env LOGOAPP_MAX_FILE_SIZE); default 64mb with --demo, "
                        "else 2gb (dataset zips)")
    return p.parse_args(argv)


def api_names(app: gr.Blocks) -> set[str]:
    """The endpoint names callers may use: every named event that is not private."""
    return {fn.api_name for fn in app.fns.values() if fn.api_name and fn.api_visibility != "private"}


def _bytes(size: str | int) -> int:
    from gradio.utils import _parse_file_size
    return int(_parse_file_size(size))


def main(argv=None) -> None:
    args = parse_args(argv)
    tmpdirs.sweep_stale()  # uploads unpacked by an app that was killed
    auth = parse_auth(args.auth or os.environ.get("LOGOAPP_AUTH"))
    local = args.host in ("127.0.0.1", "localhost", "::1") and not args.share
    print(f"logoapp {__version__}: starting" + (f" (predict-only demo of {args.demo})" if args.demo else ""),
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    app = build_app(args.data, args.models, args.demo, allow_folders=local or args.allow_folders,
                    size=args.size)
    print(f"logoapp: ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    share = False
    if args.share:
        if os.environ.get("SPACE_ID"):
            print("logoapp: running on Hugging Face Spaces; --share is not needed there", file=sys.stderr)
        elif share_possible():
            share = True
        else:
            print("logoapp: could not create a public link (no connection to gradio.app); serving locally only",
                  file=sys.stderr, flush=True)
    max_file_size = args.max_file_size or ("64mb" if args.demo else "2gb")
    guard = Middleware(Guard, max_upload=_bytes(max_file_size), api_names=lambda: api_names(app), login=bool(auth))
    try:
        app.queue(default_concurrency_limit=2).launch(
            server_name=args.host, server_port=args.port, share=share, auth=auth,
            auth_message="logoapp: log in to continue" if auth else None, theme=theme(), css=CSS,
            show_error=not args.demo,  # the demo shows what was wrong with the input (gr.Error), nothing else
            max_file_size=max_file_size, footer_links=["api", "settings"], quiet=True, prevent_thread_lock=True,
            app_kwargs={"middleware": [guard]},
            enable_monitoring=False)  # Gradio's /monitoring/summary would show every visitor what the others ran
    except OSError as e:  # most often: the port is taken by another app (or another logoapp)
        print(f"logoapp: error: cannot serve on {args.host}:{args.port}: {str(e).split('. ')[0]}; "
              f"try --port {args.port + 1}", file=sys.stderr)
        sys.exit(1)
    where = app.local_url + (f" and {app.share_url}" if app.share_url else "")
    print(f"* Running on local URL:  {app.local_url}\nlogoapp: open {where} in a browser"
          + (" (login required)" if auth else "") + "; Ctrl+C stops it", flush=True)
    app.block_thread()


if __name__ == "__main__":
    main()
