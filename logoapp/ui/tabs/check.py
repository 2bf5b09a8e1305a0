"""Check data: copies and leakage, label suspects and odd images (logoapp.audit), and the fix loop: relabel, exclude
or keep each image, undo the last change or all. Fixes move files in the dataset folder (never delete) and log
each move; on an uploaded zip they apply to this session's unpacked copy, which downloads as a fixed zip."""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from ... import checkview as cv
from ... import fixes
from ... import models
from ...views import DataCtx
from ..state import Session, Shared
from ..wiring import Ui, Updates
from . import refresh_all

REFRESHES = ("check_md", "check_gallery", "check_item", "check_class", "check_log", "check_zip")
FOLD_MODELS = ("linear", "mlp", "cnn")
STALE = ("**The data changed** ({}): models trained before are stale. Train again to learn from the fixed labels; "
         "the leaderboard still shows the earlier runs.")


def layout(ui: Ui, shared: Shared) -> None:
    vocab = shared.ctx0.ds.vocab
    with gr.Tab("Check data", id="check", elem_id="tab-check"):
        gr.Markdown("Before trusting a score: the same picture saved twice (in train *and* validation it inflates the "
                    "score), images filed under the wrong class (found by *confident learning*: models trained on "
                    "the other folds disagree with the label), and odd images. Fixes move files, never delete them, "
                    "and can be undone.")
        with gr.Row(equal_height=False, elem_classes="la-align-end"):
            folds = gr.Slider(2, 10, value=5, step=1, label="Folds for the label check", scale=2)
            fmodel = gr.Dropdown(list(FOLD_MODELS), value="linear", label="Model per fold (fast)", scale=1)
            check_btn = gr.Button("Check data", variant="primary", elem_id="check-btn", scale=1)
        check_md = gr.Markdown(cv.summary_md(None), elem_id="check-summary")
        show = gr.Radio(list(cv.SHOW), value=cv.SHOW[0], label="Show", elem_id="check-show")
        check_gallery = gr.Gallery([], columns=8, height="auto", format="png", allow_preview=False,
                                   object_fit="contain", show_label=False, elem_id="check-gallery",
                                   elem_classes="la-captions")
        check_item = gr.Markdown(cv.item_md(shared.ctx0.ds, None), elem_id="check-item")
        with gr.Row(equal_height=False, elem_classes="la-align-end"):
            check_class = gr.Dropdown(vocab, value=None, label="Relabel as", scale=2, elem_id="check-class")
            relabel_btn = gr.Button("Relabel", scale=1, elem_id="relabel-btn")
            exclude_btn = gr.Button("Exclude", scale=1, elem_id="exclude-btn")
            keep_btn = gr.Button("Keep as it is", scale=1, elem_id="keep-btn")
        with gr.Row(equal_height=False, elem_classes="la-align-end"):
            check_log = gr.Markdown(_log_of(shared.ctx0), elem_id="check-log")
            undo_btn = gr.Button("Undo last change", scale=0, min_width=200, elem_id="undo-btn")
            undo_all_btn = gr.Button("Undo all", scale=0, min_width=120, elem_id="undo-all-btn")
            check_zip = gr.DownloadButton("Download the fixed zip", visible=False, scale=0, min_width=200)
    ui.add(folds=folds, fmodel=fmodel, check_btn=check_btn, check_md=check_md, show=show,
           check_gallery=check_gallery, check_item=check_item, check_class=check_class, relabel_btn=relabel_btn,
           exclude_btn=exclude_btn, keep_btn=keep_btn, check_log=check_log, undo_btn=undo_btn,
           undo_all_btn=undo_all_btn, check_zip=check_zip)


def wire(ui: Ui) -> None:
    from . import modules
    quiet = dict(api_visibility="private")
    ui.on("check_btn.click", on_check, ["session", "folds", "fmodel", "show"], ["check_md", "check_gallery",
          "check_item"], concurrency_id="check", concurrency_limit=1, **quiet)
    ui.on("show.change", on_show, ["session", "show"], ["check_gallery", "check_item"], **quiet,
          show_progress="hidden")
    ui.on("check_gallery.select", on_pick, ["session", "show"], ["check_item", "check_class"], **quiet,
          show_progress="hidden")
    everything = ["session"] + [n for tab in modules() for n in tab.REFRESHES] + ["result", "show"]
    for action in ("relabel", "exclude", "keep"):
        ui.on(f"{action}_btn.click", ACTIONS[action], ["session", "show", "check_class"], everything, **quiet)
    ui.on("undo_btn.click", on_undo, ["session", "show"], everything, **quiet)
    ui.on("undo_all_btn.click", on_undo_all, ["session", "show"], everything, **quiet)


def refresh(s: Session) -> Updates:
    """After a Load: the old audit belongs to the old data."""
    ds = s.data.ds
    if s.check_ctx is not s.data:
        s.check, s.check_ids, s.check_sel = None, [], None
    return Updates(check_md=cv.summary_md(s.check), check_gallery=[], check_item=cv.item_md(ds, None),
                   check_class=gr.update(choices=ds.vocab, value=None), check_log=_log(s),
                   check_zip=_zip_button(s))


# ============================================================================================= handlers

def on_check(s: Session, folds, fold_model, show, progress=gr.Progress()) -> Updates:
    """Audit the session's dataset: copies, leakage, label suspects (k-fold confident learning), odd images."""
    if fold_model not in models.trainable():
        raise gr.Error(f"Unknown model {fold_model!r}.")

    def report(done, total, msg=None):
        progress(done / total if total else 1, desc=msg or "checking")
    try:
        s.check = cv.run(s.data.ds, int(folds), fold_model, report)
    except ValueError as e:
        raise gr.Error(str(e)) from None
    s.check_ctx = s.data
    return Updates(check_md=cv.summary_md(s.check)) | _list(s, show)


def on_show(s: Session, show) -> Updates:
    return _list(s, show)


def on_pick(s: Session, show, evt: gr.SelectData) -> Updates:
    if evt.index is None or evt.index >= len(s.check_ids):
        return Updates()
    s.check_sel = s.check_ids[evt.index]
    ds = s.data.ds
    suggested = next((x.suggested for x in (s.check.report.label_issues if s.check else [])
                      if x.path == ds.items[s.check_sel]), None)
    return Updates(check_item=cv.item_md(ds, s.check_sel),
                   check_class=gr.update(choices=ds.vocab, value=suggested or ds.vocab[ds.labels[s.check_sel]]))


def _act(s: Session, show, new_class, action: str) -> Updates:
    """Relabel, exclude or keep the picked image, then reload the data and refresh every tab."""
    if s.check is None or s.check_sel is None:
        raise gr.Error("Press Check data, then click an image in the list first.")
    ds = s.data.ds
    if action == "relabel" and (not new_class or new_class == ds.vocab[ds.labels[s.check_sel]]):
        raise gr.Error("Choose the class to move this image to (another than its own).")
    if action != "keep":
        _writable(s)
    try:
        new = cv.apply(ds, s.check, action, s.check_sel, new_class, cache=not s.data.tmpdir)
    except (fixes.FixError, OSError) as e:
        raise gr.Error(f"Could not {action} the image: {e}") from None
    return _reloaded(s, new, show, f"{action} {html.escape(ds.items[s.check_sel].rsplit('/', 1)[-1])}")


def on_relabel(s: Session, show, new_class) -> Updates:
    return _act(s, show, new_class, "relabel")


def on_exclude(s: Session, show, new_class) -> Updates:
    return _act(s, show, new_class, "exclude")


def on_keep(s: Session, show, new_class) -> Updates:
    return _act(s, show, new_class, "keep")


ACTIONS = {"relabel": on_relabel, "exclude": on_exclude, "keep": on_keep}


def on_undo(s: Session, show, all: bool = False) -> Updates:
    """Revert the last logged change (or all), then reload the data."""
    _writable(s)
    try:
        new, n = cv.undo(s.data.ds, s.check, all=all, cache=not s.data.tmpdir)
    except fixes.FixError as e:
        raise gr.Error(str(e)) from None
    if not n:
        raise gr.Error("Nothing to undo: no changes are logged in this folder.")
    return _reloaded(s, new, show, f"{n} change(s) undone")


def on_undo_all(s: Session, show) -> Updates:
    return on_undo(s, show, all=True)


# ============================================================================================= helpers

def _writable(s: Session) -> None:
    """Fixes change files: an uploaded zip's session copy always; a server folder only where folders are allowed."""
    ctx = s.data
    if ctx.tmpdir:
        return
    if ctx.name == "embedded crests":
        raise gr.Error("The built-in crest set is read-only here. Write a copy with `logoapp synth DIR` and load that "
                       "folder to try fixes on it.")
    if not s.shared.allow_folders:
        raise gr.Error("Changing server folders is switched off for this app. Upload a zip to fix a copy of it.")


def _reloaded(s: Session, ds, show, what: str) -> Updates:
    """The session on the dataset as it now is: every tab refreshed, this view's lists kept, the models stale."""
    if ds is not s.data.ds:
        old = s.data
        s.swap(DataCtx(ds, old.name, old.tmpdir))
        s.check_ctx = s.data
    s.check_sel = None
    n = len(fixes.changes(ds.root))
    out = refresh_all(s) | Updates(session=s, result=STALE.format(f"{what}; {n} change(s) logged"), show=show)
    return out | Updates(check_md=cv.summary_md(s.check)) | _list(s, show)


def _list(s: Session, show) -> Updates:
    if s.check is None:
        return Updates(check_gallery=[], check_item=cv.item_md(s.data.ds, None))
    items, s.check_ids = cv.gallery(s.check, s.data.ds, show)
    return Updates(check_gallery=gr.update(value=items, selected_index=None), check_item=cv.item_md(s.data.ds, None))


def _log(s: Session) -> str:
    return _log_of(s.data)


def _log_of(ctx: DataCtx) -> str:
    if ctx.name == "embedded crests" and not ctx.tmpdir:
        return "The built-in set is read-only: write a copy with `logoapp synth DIR` and load it to try fixes."
    return cv.changes_md(ctx.ds.root)


def _zip_button(s: Session):
    """The fixed zip, offered on an uploaded zip's copy once it has changes."""
    ctx = s.data
    if not ctx.tmpdir or not fixes.changes(ctx.ds.root):
        return gr.update(visible=False, value=None)
    out = Path(ctx.tmpdir, ".fixed", f"{ctx.slug}-fixed.zip")  # a dot folder: neither loaded nor zipped
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)  # the previous state's zip: this session's own file
    return gr.update(visible=True, value=str(fixes.zip_folder(ctx.ds.root, out=out)))
