"""4 · Evaluate: a model on the validation (or test) split: accuracy, per class, confusion matrix, most confused
pairs, top losses, the images of one confusion cell, a linear model's weights; the leaderboard."""
from __future__ import annotations

import html
import logging

import gradio as gr

from ...views import (ViewError, board_df, cell_heat, cell_view, eval_views, evaluate_on, linear_weights_view,
                      top_loss_heat)
from ..registry import BASE, on_models_tab, pickers, unfit_note
from ..state import Session, Shared
from ..wiring import Ui, Updates

log = logging.getLogger("logoapp")
SPLITS = [("validation", "valid"), ("test", "test")]
REFRESHES = ("emodel", "esplit", "eval_md", "cm", "eval_table", "confused", "tops", "actual", "predicted", "cell_md",
             "cell", "wgroup", "board", "reliab", "calib_md", "theat", "theat_md", "cheat", "cheat_md")
CLICK = "Click an image to see where the model looked (the heatmap is for the class it predicted)."
HIDDEN = dict(theat=gr.update(value=None, visible=False), theat_md=CLICK, cheat=gr.update(value=None, visible=False),
              cheat_md=CLICK)
L1 = (BASE + "l1", "pixel-similarity baseline · L1")  # what the tab shows first: the L1 baseline (value, label)


def layout(ui: Ui, shared: Shared) -> None:
    ctx0 = shared.ctx0
    b0 = ctx0.baseline("l1")
    ev = eval_views(b0["evaluation"], b0["meta"], ctx0, *L1)
    with gr.Tab("4 · Evaluate", id="evaluate", elem_id="tab-evaluate") as tab_eval:
        with gr.Row(equal_height=False, elem_classes="la-align-end"):
            emodel = gr.Dropdown(shared.reg.choices(ctx0, fit=True), value=L1[0], label="Model", scale=4,
                                 elem_id="eval-model", info=unfit_note(shared.reg.unfit(ctx0)),
                                 allow_custom_value=True)  # API callers may name models saved after start-up
            esplit = gr.Radio(SPLITS, value="valid", label="Score on", visible=ctx0.has_test, scale=1,
                              elem_id="eval-split")
            eval_btn = gr.Button("Evaluate again", scale=1, elem_classes="la-inline-btn")
        eval_md = gr.Markdown(ev["eval_md"])
        with gr.Row(equal_height=False):
            cm = gr.Plot(ev["cm"], format="png", show_label=False, scale=3, elem_id="confusion")
            with gr.Column(scale=2):
                eval_table = gr.Dataframe(ev["eval_table"], label="Per-class accuracy", interactive=False,
                                          max_height=330)
                confused = gr.Dataframe(ev["confused"], label="Most confused (click a row to see the images)",
                                        interactive=False, max_height=260)
        gr.Markdown("### Calibration\nDoes a model that says 80% sure turn out right 80% of the time? Each bar is "
                    "the accuracy of the images whose top probability fell in that bin; a calibrated model's bars "
                    "follow the diagonal. ECE is the average gap.")
        with gr.Row(equal_height=False):
            reliab = gr.Plot(ev["reliability"], format="png", show_label=False, scale=3, elem_id="reliability")
            calib_md = gr.Markdown(ev["calib_md"])
        gr.Markdown("### Top losses\nThe images the model was most confidently wrong (or least sure) "
                    "about. Caption: **actual / predicted / probability / loss**.")
        tops = gr.Gallery(ev["tops"], columns=8, height="auto", format="png", allow_preview=True,
                          object_fit="contain", show_label=False, elem_id="top-losses",
                          elem_classes=["la-captions", "la-below"])  # captions under the images, not over them
        theat, theat_md = heat_row("top-heatmap")
        gr.Markdown("### Look inside a cell of the confusion matrix\nPick its actual and predicted class, or "
                    "click a row of *Most confused*.")
        with gr.Row():
            actual = gr.Dropdown(ctx0.ds.vocab, value=ev["actual"], label="Actual class")
            predicted = gr.Dropdown(ctx0.ds.vocab, value=ev["predicted"], label="Predicted class")
        cell_md = gr.Markdown(ev["cell_md"])
        cell = gr.Gallery(ev["cell"], columns=10, height="auto", format="png", object_fit="contain", show_label=False,
                          elem_classes=["la-captions", "la-below"], elem_id="cell-gallery")
        cheat, cheat_md = heat_row("cell-heatmap")
        with gr.Column(visible=ev["weights_visible"]) as wgroup:
            gr.Markdown("### What the linear model learned\nIts weights are one number per pixel, channel and "
                        "class; here each class's weights are drawn as an image (averaged over the channels). "
                        "Red pixels add to the class's score when they are bright, blue ones subtract.")
            weights = gr.Plot(None, format="png", show_label=False, elem_id="linear-weights")
        board = gr.Dataframe(board_df({}, ctx0), label="Leaderboard", interactive=False, elem_id="eval-board")
    ui.add(tab_eval=tab_eval, emodel=emodel, esplit=esplit, eval_btn=eval_btn, eval_md=eval_md, cm=cm,
           eval_table=eval_table, confused=confused, tops=tops, actual=actual, predicted=predicted, cell_md=cell_md,
           cell=cell, wgroup=wgroup,
           weights=weights, board=board, reliab=reliab, calib_md=calib_md, theat=theat, theat_md=theat_md,
           cheat=cheat, cheat_md=cheat_md)


def heat_row(elem_id: str) -> tuple:
    """A heatmap image (hidden until an image is clicked) and its caption."""
    with gr.Row(equal_height=False):
        img = gr.Image(None, format="png", height=200, interactive=False, show_label=False, buttons=[], visible=False,
                       scale=1, elem_id=elem_id)
        md = gr.Markdown(CLICK, elem_classes="la-note", elem_id=f"{elem_id}-caption")
    return img, md


def wire(ui: Ui) -> None:
    quiet = dict(api_visibility="private", show_progress="hidden")
    ui.on(["emodel.change", "eval_btn.click", "esplit.change"], on_eval, ["session", "emodel", "esplit"],
          ["emodel", "eval_md", "cm", "eval_table", "confused", "tops", "actual", "predicted", "cell_md", "cell",
           "wgroup", "weights", "board", "reliab", "calib_md", "theat", "theat_md", "cheat", "cheat_md"],
          api_name="evaluate", concurrency_id="eval", concurrency_limit=2)
    ui.on(["actual.input", "predicted.input"], on_cell, ["session", "emodel", "actual", "predicted"],
          ["cell", "cell_md"], **quiet)
    ui.on("tops.select", on_top_pick, ["session", "emodel"], ["theat", "theat_md"], **quiet)
    ui.on("cell.select", on_cell_pick, ["session", "emodel", "actual", "predicted"], ["cheat", "cheat_md"], **quiet)
    ui.on("confused.select", on_confused_pick, ["session", "emodel"], ["actual", "predicted", "cell", "cell_md"],
          **quiet)
    # models saved by other sessions (or copied in) show up when the tab opens
    ui.on("tab_eval.select", on_models_tab, ["session", "emodel", "pmodel"], ["emodel", "pmodel"], **quiet)


def refresh(s: Session) -> Updates:
    """The L1 baseline on the session's data, selected."""
    ctx = s.data
    b = ctx.baseline("l1")
    s.evals[L1[0]] = (b["evaluation"], b["meta"])
    s.eval_shown, s.eval_split = L1[0], "valid"
    v = eval_views(b["evaluation"], b["meta"], ctx, *L1)
    return (Updates(eval_md=v["eval_md"], cm=v["cm"], eval_table=v["eval_table"], confused=v["confused"],
                    tops=v["tops"], actual=gr.update(choices=ctx.ds.vocab, value=v["actual"]),
                    predicted=gr.update(choices=ctx.ds.vocab, value=v["predicted"]), cell_md=v["cell_md"],
                    cell=v["cell"], wgroup=gr.update(visible=False), board=board_df(s.board, ctx),
                    reliab=v["reliability"], calib_md=v["calib_md"], esplit=gr.update(value="valid",
                                                                                      visible=ctx.has_test),
                    **HIDDEN)
            | pickers(s, ["emodel"], emodel=L1[0]))


# ============================================================================================= handlers

def on_eval(s: Session, model, split="valid") -> Updates:
    """Evaluate a model on the current validation (or test) split and add it to the leaderboard. A model that
    cannot be scored leaves the tab as it was (one message, and the picker back on the model shown)."""
    ctx, name = s.data, model
    split = "test" if split == "test" and ctx.has_test else "valid"
    if not name:
        return Updates()
    try:
        if key(name, split) not in s.evals:
            s.evals[key(name, split)] = evaluation(s, name, split)
        res, meta = s.evals[key(name, split)]
        label = dict((v, k) for k, v in s.reg.choices(ctx)).get(name, name)
        v = eval_views(res, meta, ctx, name, label)
        w = linear_weights_view(s.reg.get(name, ctx)[0], meta) if meta["arch"] == "linear" else None
    except (gr.Error, ViewError) as e:
        log.warning("evaluate %s refused: %s", name, e)
        gr.Warning(html.escape(f"Cannot evaluate {name}: {e}"))
        shown = s.eval_shown or L1[0]
        return Updates(emodel=shown) if shown != name else Updates()
    s.eval_shown, s.eval_split = name, split
    return Updates(eval_md=v["eval_md"], cm=v["cm"], eval_table=v["eval_table"], confused=v["confused"],
                   tops=v["tops"], actual=v["actual"], predicted=v["predicted"], cell_md=v["cell_md"], cell=v["cell"],
                   wgroup=gr.update(visible=w is not None), weights=w, board=board_df(s.board, ctx),
                   reliab=v["reliability"], calib_md=v["calib_md"], **HIDDEN)


def key(name: str, split: str) -> str:
    """The key of an Evaluation in Session.evals: the model's name for the validation split, name@test for test."""
    return name if split == "valid" else f"{name}@{split}"


def evaluation(s: Session, name: str, split: str = "valid") -> tuple:
    """(Evaluation, meta) of a picked model on the session's data; a saved one joins the leaderboard (with its test
    accuracy when the data has a test split)."""
    ctx = s.data
    model, meta = s.reg.get(name, ctx)
    if name.startswith(BASE):
        return ctx.baseline_on(name[len(BASE):], split), meta
    res = evaluate_on(model, meta, ctx, split)
    valid = res if split == "valid" else evaluate_on(model, meta, ctx, "valid")
    test = res if split == "test" else (evaluate_on(model, meta, ctx, "test") if ctx.has_test else None)
    mt = meta.get("metrics") or {}
    s.board[name] = {"name": name, "arch": meta["arch"], "accuracy": valid.accuracy, "seconds": mt.get("seconds"),
                     "n_params": meta.get("n_params"), "epochs": len(mt.get("history") or []) or None,
                     "size": meta.get("size"), "test": test.accuracy if test is not None else None}
    return res, meta


def stored(s: Session, name) -> tuple | None:
    """(Evaluation, meta) of a model this session evaluated on the split shown (a pixel baseline: computed on the
    spot), else None."""
    split = s.eval_split
    k = key(name, split) if name else name
    if k not in s.evals:
        if not (name and name.startswith(BASE)):
            return None
        s.evals[k] = (s.data.baseline_on(name[len(BASE):], split), s.data.baseline(name[len(BASE):])["meta"])
    return s.evals[k]


def on_cell(s: Session, name, a, p):
    """The images of one confusion-matrix cell (actual a, predicted p)."""
    ev = stored(s, name)
    if ev is None:
        return gr.skip(), gr.skip()
    v = cell_view(ev[0], s.data, a, p)
    return v["cell"], v["cell_md"]


def picked_heat(s: Session, name, view, *args) -> tuple:
    """(heatmap update, caption) of a clicked image by view (top_loss_heat or cell_heat) with args after ctx."""
    ev = stored(s, name)
    if ev is None:
        return gr.skip(), gr.skip()
    res, meta = ev
    try:
        v = view(s.reg.get(name, s.data)[0], meta, res, s.data, *args)
    except ViewError as e:
        return gr.update(value=None, visible=False), str(e)
    if v is None:
        return gr.skip(), gr.skip()
    return gr.update(value=v["heat"], visible=True), v["heat_md"]


def on_top_pick(s: Session, name, evt: gr.SelectData):
    """A top loss clicked: where the model looked for the class it predicted."""
    return picked_heat(s, name, top_loss_heat, int(evt.index or 0))


def on_cell_pick(s: Session, name, a, p, evt: gr.SelectData):
    """An image of the confusion cell clicked: where the model looked for the class it predicted."""
    return picked_heat(s, name, cell_heat, a, p, int(evt.index or 0))


def on_confused_pick(s: Session, name, evt: gr.SelectData):
    """A row of Most confused clicked: its cell."""
    row = evt.row_value or []
    if len(row) < 2 or row[0] not in s.data.ds.vocab:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    cv = on_cell(s, name, row[0], row[1])
    return row[0], row[1], cv[0], cv[1]
