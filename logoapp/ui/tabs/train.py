"""3 · Train: pick a rung of the ladder, train it with live progress, curves and a per-epoch table; the
learning-rate finder; the session's leaderboard."""
from __future__ import annotations

import html
import threading
import time
from pathlib import Path

import gradio as gr

from ... import models, plots, store
from ...config import Settings
from ...events import Batch, Done, Epoch, Error, Start
from ...views import board_df
from ..registry import pickers
from ..state import Session, Shared
from ..widgets import bar, secs
from ..wiring import Ui, Updates

REFRESHES = ("tsize", "epochs", "board", "wnote")
CURVES = ("loss_plot", "acc_plot")


LADDER_NOTE = ("**What each step adds** (on the built-in crests, every model at its defaults): the **pixel** baseline "
               "compares an image with one mean image per class; **linear** learns a weight per pixel and class, so "
               "it picks out what tells the clubs apart; **mlp** adds a hidden layer, so it can look past a thumb or a "
               "sticker in front and a club's several designs; the **cnn** finds emblems and initials wherever they "
               "sit: turned, shifted, small or on a shirt.")


def layout(ui: Ui, shared: Shared) -> None:
    st, rung = Settings(), models.get(models.DEFAULT_MODEL)
    with gr.Tab("3 · Train", id="train", elem_id="tab-train"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=320):
                arch = gr.Radio(models.trainable(), value=rung.name, label="Model (the ladder, simplest first)",
                                elem_id="arch")
                arch_md = gr.Markdown(rung.description, elem_classes="la-note")
                wnote = gr.Markdown(weights_note(rung.name, shared.ctx0.ds), elem_classes="la-note", elem_id="wnote")
                with gr.Row(equal_height=False):
                    pretrained = gr.Checkbox(value=True, label="Start from ImageNet weights", visible=False,
                                             elem_id="pretrained")
                    fetch_btn = gr.Button("Fetch weights", visible=False, elem_id="fetch-btn", size="sm")
                sug = suggested(rung.name, shared.ctx0.ds)
                epochs = gr.Slider(1, 40, value=sug["epochs"], step=1, label="Epochs", elem_id="epochs")
                with gr.Row(equal_height=False, elem_classes="la-align-end"):
                    lr = gr.Number(value=rung.lr, label="Learning rate", minimum=0, step=1e-4, elem_id="lr", scale=2)
                    lr_btn = gr.Button("Find LR", scale=1, min_width=90, elem_classes="la-inline-btn")
                tsize = gr.Slider(16, 256, value=sug["size"], step=8,
                                  label="Input size (pixels the model sees)", elem_id="size")
                with gr.Row():
                    bs = gr.Dropdown([16, 32, 64, 128, 256], value=st.bs, label="Batch size", min_width=100)
                    seed = gr.Number(value=st.seed, precision=0, label="Seed", min_width=90)
                aug = gr.Checkbox(value=rung.augment, label="Augment training images (see the Data tab's preview)")
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
        board = gr.Dataframe(board_df({}, shared.ctx0), label="Leaderboard: every model of this session on the same "
                             "validation split", interactive=False, elem_id="leaderboard")
        gr.Markdown(LADDER_NOTE, elem_classes="la-note", elem_id="ladder-note")
    ui.add(wnote=wnote, pretrained=pretrained, fetch_btn=fetch_btn)
    ui.add(arch=arch, arch_md=arch_md, epochs=epochs, lr=lr, lr_btn=lr_btn, tsize=tsize, bs=bs, seed=seed, aug=aug,
           train_btn=train_btn, stop_btn=stop_btn, prog=prog, loss_plot=loss_plot, acc_plot=acc_plot, metrics=metrics,
           result=result, lr_acc=lr_acc, lr_plot=lr_plot, board=board)


def wire(ui: Ui) -> None:
    settings = ["session", "arch", "epochs", "lr", "bs", "tsize", "aug", "seed", "pretrained"]
    ui.on("arch.change", on_arch, ["arch", "session"], ["arch_md", "epochs", "lr", "tsize", "aug", "wnote",
                                                         "pretrained", "fetch_btn"],
          api_visibility="private", show_progress="hidden")
    ui.on("pretrained.change", on_pretrained, ["arch", "pretrained", "session"], ["wnote", "fetch_btn"],
          api_visibility="private", show_progress="hidden")
    ui.on("fetch_btn.click", on_fetch, ["arch", "session"], ["wnote", "fetch_btn"], api_name="fetch_weights",
          concurrency_limit=1, show_progress="full", show_progress_on=ui["wnote"])
    ui.on("lr_btn.click", on_lr, settings, ["lr_plot", "lr", "lr_acc"], api_name="lr_find", concurrency_id="train",
          concurrency_limit=1)
    ui.on("train_btn.click", on_train, settings, ["train_btn", "stop_btn", "prog", *CURVES, "metrics", "result",
                                                  "board", "emodel", "pmodel"],
          api_name="train", concurrency_id="train", concurrency_limit=1, show_progress="minimal",
          show_progress_on=ui["prog"])  # queue position and timer on the bar only, the plots stay visible
    ui.on("stop_btn.click", on_stop, "session", "stop_btn", api_name="stop", concurrency_limit=None,
          show_progress="hidden")


def refresh(s: Session) -> Updates:
    sug = suggested(models.DEFAULT_MODEL, s.data.ds)
    return Updates(tsize=gr.update(value=sug["size"]), epochs=gr.update(value=sug["epochs"]),
                   board=board_df(s.board, s.data), wnote=weights_note(models.DEFAULT_MODEL, s.data.ds))


def suggested(arch: str, ds) -> dict:
    """The epochs and input size a run on this data starts from (models.suggested)."""
    return models.suggested(arch, ds.size, ds.channels, len(ds.idx("train")), Settings().bs)


def weights_note(arch: str, ds, pretrained: bool = True) -> str:
    """Before a run: which weights it will start from; for photo-like data, the pretrained rungs suggested."""
    from ...weights import plan
    r = models.get(arch)
    photos = ds.channels == 3 and not r.weights
    tip = ("These look like photos: a pretrained rung usually does far better than training from scratch "
           "(**features** trains in seconds, **resnet18** fine-tunes)." if photos else "")
    if not r.weights:
        return tip or "Trained from random init (this rung has no pretrained weights)."
    if not pretrained and not r.head_only:
        return "Starts from random init (ImageNet weights unticked)."
    return f"This run {plan(r.weights)}." + (" RGBA images are composed on white first." if ds.channels == 4 else "")


def _needs_fetch(arch: str, pretrained: bool = True) -> bool:
    from ...weights import path
    r = models.get(arch)
    return bool(r.weights) and (pretrained or r.head_only) and path(r.weights) is None


# ============================================================================================= handlers

def on_arch(a, s: Session):
    """Another rung picked: its description, defaults and the weights it would start from."""
    r, sug = models.get(a), suggested(a, s.data.ds)
    return (r.description, sug["epochs"], r.lr, sug["size"], r.augment,
            weights_note(a, s.data.ds), gr.update(visible=bool(r.weights) and not r.head_only, value=True),
            gr.update(visible=_needs_fetch(a)))


def on_pretrained(a, pretrained, s: Session):
    return weights_note(a, s.data.ds, bool(pretrained)), gr.update(visible=_needs_fetch(a, bool(pretrained)))


def on_fetch(a, s: Session, progress=gr.Progress()):
    """Download the rung's ImageNet weights now (atomic: a failed download leaves nothing behind)."""
    from ...weights import WeightsError, fetch
    r = models.get(a)
    if not r.weights:
        return weights_note(a, s.data.ds), gr.update(visible=False)
    progress(0, desc=f"downloading {r.weights} weights…")
    try:
        fetch(r.weights, progress=lambda done, total: progress((done, total or None), unit="bytes",
                                                               desc=f"downloading {r.weights} weights"))
    except WeightsError as e:
        raise gr.Error(str(e).replace("--no-pretrained", "'Start from ImageNet weights' unticked")) from None
    return weights_note(a, s.data.ds), gr.update(visible=False)


def config(model, epochs, lr, batch_size, size, augment, seed, pretrained=True):
    """The form's values as a TrainConfig, or a gr.Error saying which one is wrong."""
    from ...train import TrainConfig  # fastai is heavy: imported when a run starts
    if model not in models.trainable():
        raise gr.Error(f"Unknown model {model!r}: choose one of {', '.join(models.trainable())}.")
    if lr is None or not lr > 0:
        raise gr.Error("The learning rate must be a positive number, e.g. 0.003.")
    if not 1 <= int(epochs or 0) <= 1000:
        raise gr.Error("Epochs must be between 1 and 1000.")
    if not 8 <= int(size or 0) <= 1024:
        raise gr.Error("The model input size must be between 8 and 1024 pixels.")
    if _needs_fetch(model, pretrained is not False):
        r = models.get(model)
        raise gr.Error(f"{model} starts from ImageNet weights that are not on disk yet: press 'Fetch weights' "
                       f"first ({r.weights})" + ("" if r.head_only else ", or untick 'Start from ImageNet weights'")
                       + ".")
    return TrainConfig(model, int(epochs), float(lr), int(batch_size), int(size), bool(augment), int(seed or 0),
                       pretrained=pretrained is not False)


def on_lr(s: Session, model, epochs, lr, batch_size, size, augment, seed, pretrained=True, progress=gr.Progress()):
    """fastai's learning-rate finder for this configuration: the curve and the suggested rate."""
    from ...train import lr_find
    cfg = config(model, epochs, lr or 1e-3, batch_size, size, augment, seed, pretrained)
    progress(0.1, desc="running the learning-rate finder (a short training run)…")
    try:
        r = lr_find(s.data.ds, cfg)
    except Exception as e:  # a finder that diverges at once, a model that doesn't fit memory...
        raise gr.Error(f"The learning-rate finder failed: {type(e).__name__}: {e}") from None
    sug = float(f"{r['suggested']:.2g}")
    return plots.lr_finder(r["lrs"], r["losses"], r["suggested"]), sug, gr.update(open=True)


def on_train(s: Session, model, epochs, lr, batch_size, size, augment, seed, pretrained=True):
    """Train one model, streaming progress, curves and the per-epoch table; saves it when done."""
    from ...train import train
    cfg = config(model, epochs, lr, batch_size, size, augment, seed, pretrained)
    if s.running:
        raise gr.Error("A training run is already going in this session.")
    run, final = Run(s, cfg.model, cfg.epochs), Updates()
    out = store.unique_dir(s.shared.folder, f"{cfg.model}-{run.ctx.slug}")
    s.running, s.stop = True, threading.Event()
    try:
        yield run.begin()
        for e in train(run.ctx.ds, cfg, stop=s.stop, out=out):
            shown = run.show(e)
            if isinstance(e, (Done, Error)):
                final = shown
            yield shown
    finally:
        s.running = False
        s.stop.set()
    # the last update repeats the outcome, so an API caller's final value is the result, not a button state
    yield final | Updates(train_btn=gr.update(interactive=True), stop_btn=gr.update(interactive=False))


def on_stop(s: Session):
    s.stop.set()
    return gr.update(interactive=False)


class Run:
    """One training run as the Train tab draws it: each event record becomes the Updates that show it."""

    def __init__(self, s: Session, arch: str, n_epoch: int):
        self.s, self.ctx, self.arch, self.n_epoch = s, s.data, arch, n_epoch  # the data it was started on
        self.tl, self.ta, self.vl, self.va, self.epochs = [], [], [], [], []  # curves (x, y) and Epoch records
        self.last_draw, self.started = 0.0, time.perf_counter()

    def curves(self) -> Updates:
        return Updates(loss_plot=plots.loss_curves(self.tl, self.vl, self.n_epoch),
                       acc_plot=plots.accuracy_curve(self.ta, self.va, self.n_epoch))

    def begin(self) -> Updates:
        return self.curves() | Updates(train_btn=gr.update(interactive=False), stop_btn=gr.update(interactive=True),
                                       prog=bar(0, f"preparing {self.arch}…"), metrics=plots.metrics_table([]),
                                       result="")

    def show(self, e) -> Updates:
        if isinstance(e, Start):
            note = f" · {e.weights_note}" if e.weights_note else ""
            return Updates(prog=bar(0, f"training {self.arch}: {e.n_params:,} parameters, {e.n_train:,} "
                                       f"training images, {e.n_iter} batches per epoch{note}"))
        if isinstance(e, Batch):
            return self.batch(e)
        if isinstance(e, Epoch):
            self.vl.append((e.epoch + 1, e.valid_loss))
            self.va.append((e.epoch + 1, e.accuracy))
            self.epochs.append(e)
            self.last_draw = time.perf_counter()
            return self.curves() | Updates(metrics=plots.metrics_table([x.history() for x in self.epochs]))
        if isinstance(e, Error):
            return Updates(prog=bar(1, f"training failed: {e.message}", "error"),
                           result=f"**Training failed:** {html.escape(e.message)}")
        return self.done(e)

    def batch(self, e: Batch) -> Updates:
        x = e.epoch + (e.iter + 1) / e.n_iter
        self.tl.append((x, e.smooth_loss))
        self.ta.append((x, e.smooth_acc))
        p, el = e.progress, e.elapsed
        eta = el * (1 - p) / p if p > 0 else 0
        out = Updates(prog=bar(p, f"epoch {e.epoch + 1}/{e.n_epoch} · batch {e.iter + 1}/{e.n_iter} · {p:.0%} · "
                                  f"{secs(el)} elapsed · about {secs(eta)} left · train loss {e.train_loss:.3f}"))
        now = time.perf_counter()
        if now - self.last_draw >= 1.0:
            self.last_draw = now
            out |= self.curves()
        return out

    def done(self, e: Done) -> Updates:
        s = self.s
        name = Path(e.model_path).name if e.model_path else self.arch
        s.board[name] = {"name": name, "arch": self.arch, "accuracy": e.accuracy, "seconds": e.seconds,
                         "n_params": e.n_params, "epochs": len(e.history), "size": e.meta["size"]}
        s.evals.pop(name, None)
        how = "stopped early" if e.stopped else "finished"
        msg = (f"**{name}** {how}: **{e.accuracy:.1%}** validation accuracy after {len(e.history)} epoch(s), "
               f"{secs(e.seconds)}. Saved to `{e.model_path}`; it is now selected in Evaluate and Predict.")
        from ...train import still_rising
        if still_rising(e.history):
            msg += (f"  \nValidation accuracy was still rising at the last epoch: more epochs (say "
                    f"{2 * len(e.history)}) would likely help.")
        if e.weights_note:
            msg += f"  \n<span class='la-note'>Weights: {html.escape(e.weights_note)}</span>"
        frac = 1 if not e.stopped else (self.tl[-1][0] / self.n_epoch if self.tl else 0)
        prog = bar(frac, f"{how} in {secs(time.perf_counter() - self.started)} · validation accuracy "
                         f"{e.accuracy:.1%}", "stopped" if e.stopped else "done")
        return (self.curves() | Updates(prog=prog, metrics=plots.metrics_table(e.history), result=msg,
                                        board=board_df(s.board, self.ctx))
                | pickers(s, choices=s.reg.choices(self.ctx), emodel=name, pmodel=name))
