"""1 · Data: choose a dataset (the embedded crests, a server folder or a zip), see its counts, sizes and files left
out, browse its images and look at their pixels and augmentations."""
from __future__ import annotations

import html
import math

import gradio as gr

from ... import data as datamod
from ... import tmpdirs
from ...config import Settings
from ...uploads import extract_zip
from ...views import (PAGE, PATCH, DataCtx, augment_view, data_views, file_name, gallery_view, page_indices,
                      pixel_view)
from ..state import Session, Shared
from ..widgets import upload
from ..wiring import Ui, Updates
from . import modules, refresh_all

FOLDER, EMBEDDED, ZIP = "folder on the server", "embedded crests", "zip upload"
START = "the app's start-up data"  # a choice when --data was given but server folders are off
ALL = "(all classes)"
REFRESHES = ("data_summary", "counts", "sizes", "bad", "cls", "page", "page_md", "gallery", "big", "info", "patch",
             "px", "py", "aug_plot")


def sources(shared: Shared) -> list[str]:
    """The Dataset choices: the start-up folder first when there is one."""
    own, folders = shared.own_data, shared.allow_folders
    return (([FOLDER] if folders else [START]) if own else []) + [EMBEDDED] + \
        ([FOLDER] if folders and not own else []) + [ZIP]


def layout(ui: Ui, shared: Shared) -> None:
    ctx0, st = shared.ctx0, Settings()
    ds0, dv = ctx0.ds, data_views(ctx0)
    with gr.Tab("1 · Data", id="data", elem_id="tab-data"):
        with gr.Row(equal_height=False):
            choices = sources(shared)
            source = gr.Radio(choices, value=choices[0], label="Dataset", scale=2)
            path = gr.Textbox(label="Folder (one sub-folder per class, or train/ and valid/)",
                              value=str(shared.data) if shared.own_data else "", placeholder="/path/to/images",
                              visible=shared.allow_folders and shared.own_data, scale=3)
            zfile = gr.File(label="Zip of class folders", file_types=[".zip"], visible=False, scale=3, height=110)
        with gr.Accordion("Loading options", open=False):
            with gr.Row():
                opt_size = gr.Slider(0, 256, value=shared.size or 0, step=4, label="Stored image size (pixels, "
                                     f"square; 0 = the images' own size, at most {st.size})", elem_id="opt-size")
                opt_valid = gr.Slider(0.05, 0.5, value=st.valid_pct, step=0.05, label="Validation fraction")
                opt_seed = gr.Number(value=st.seed, precision=0, label="Split seed")
                opt_group = gr.Checkbox(False, label="Keep copies together (group split)", elem_id="opt-group",
                                        info="near copies of one picture stay on one side of a random split")
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
            cls = gr.Dropdown([ALL] + ds0.vocab, value=ALL, label="Class", scale=2)
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
    ui.add(source=source, path=path, zfile=zfile, opt_size=opt_size, opt_valid=opt_valid, opt_seed=opt_seed,
           opt_group=opt_group,
           load_btn=load_btn, data_summary=data_summary, counts=counts, sizes=sizes, bad=bad, cls=cls, page=page,
           page_md=page_md, gallery=gallery, big=big, info=info, px=px, py=py, patch=patch, aug_btn=aug_btn,
           aug_plot=aug_plot)


def wire(ui: Ui) -> None:
    quiet = dict(api_visibility="private", show_progress="hidden")
    ui.on("source.change", on_source, "source", ["path", "zfile"], **quiet)
    everything = ["session"] + [n for tab in modules() for n in tab.REFRESHES] + ["result"]
    ui.on("load_btn.click", on_load, ["session", "source", "path", "zfile", "opt_size", "opt_valid", "opt_seed",
                                  "opt_group"],
          everything, api_name="load_data", concurrency_id="data", concurrency_limit=1)
    ui.on("cls.change", on_class, ["session", "cls"], ["gallery", "page", "page_md"], **quiet)
    ui.on("page.release", on_page, ["session", "cls", "page"], ["gallery", "page", "page_md"], **quiet,
          trigger_mode="always_last")
    ui.on("gallery.select", on_pick, ["session", "cls", "page", "px", "py"], ["big", "info", "patch", "aug_plot"],
          **quiet)
    # change, not release: arrow keys and typed values move the patch too
    ui.on(["px.change", "py.change"], on_patch, ["session", "px", "py"], ["big", "patch"], **quiet,
          trigger_mode="always_last")
    ui.on("aug_btn.click", on_augment, "session", "aug_plot", api_visibility="private")


def refresh(s: Session) -> Updates:
    ctx = s.data
    v = data_views(ctx)
    return Updates(data_summary=v["data_md"], counts=v["counts"], sizes=v["sizes"], bad=v["bad"],
                   cls=gr.update(choices=[ALL] + ctx.ds.vocab, value=ALL), page=_page(v), page_md=v["page_md"],
                   gallery=v["gallery"], big=v["big"], info=v["info"], patch=v["patch"],
                   px=gr.update(maximum=ctx.ds.size - PATCH, value=v["px"]),
                   py=gr.update(maximum=ctx.ds.size - PATCH, value=v["py"]), aug_plot=v["augment"])


# ============================================================================================= handlers

def on_source(choice) -> Updates:
    return Updates(path=gr.update(visible=choice == FOLDER), zfile=gr.update(visible=choice == ZIP))


def on_load(s: Session, source, folder_path, zip_file, size, valid_fraction, seed, group_split=False,
            progress=gr.Progress()):
    """Load the chosen dataset into this session and refresh every tab."""
    want = int(size) or None  # 0: fit to the images
    if want is not None and want < 8:
        raise gr.Error("Stored image size: choose 0 (the images' own size) or 8 pixels and more.")
    kw = dict(size=want, valid_pct=float(valid_fraction), seed=int(seed or 0), progress=_gr_progress(progress))
    if source == ZIP and zip_file:
        zip_file = upload(zip_file)
    tmp = str(tmpdirs.make("zip")) if source == ZIP else None
    try:
        ds, name = open_choice(s.shared, source, folder_path, zip_file, tmp, **kw)
    except datamod.DataError as e:
        tmpdirs.remove(tmp)
        raise gr.Error(str(e)) from None
    except BaseException:  # any other failure must not leave an unpacked upload behind either
        tmpdirs.remove(tmp)
        raise
    note = ""
    if group_split:
        ds, note = _grouped(ds if ds is not None else s.shared.ctx0.ds, tmp)
    s.use(DataCtx(ds, name, tmp) if ds is not None else None)
    progress(0.9, desc="computing the ideal images")
    ctx = s.data
    return refresh_all(s) | Updates(session=s, result=f"Loaded **{html.escape(ctx.name)}**: {len(ctx.ds.items):,} "
                                                      f"images, {ctx.ds.c} classes.{note}")


def open_choice(shared: Shared, choice, folder_text, zpath, tmp, **kw) -> tuple[datamod.Dataset | None, str]:
    """(dataset, its name) for a Dataset choice; None: the shared start-up data again (no second copy)."""
    if choice == ZIP:
        if not zpath:
            raise gr.Error("Upload a .zip of class folders first.")
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
        return ds, f"uploaded {file_name(zpath)}"
    if choice == FOLDER:
        if not shared.allow_folders:
            raise gr.Error("Reading server folders is switched off for this app.")
        if not (folder_text or "").strip():
            raise gr.Error("Type the path of a folder with one sub-folder per class.")
        return datamod.open_dataset(folder_text.strip(), **kw), folder_text.strip()
    ds0 = shared.ctx0.ds
    if choice == START or (not shared.own_data and kw["valid_pct"] == ds0.valid_pct and kw["seed"] == ds0.seed
                           and (kw["size"] == ds0.size or (kw["size"] is None and shared.size is None))):
        return None, shared.ctx0.name  # the start-up set again (the same request as start-up): share it
    return datamod.resolve(None, **kw), EMBEDDED


def _grouped(ds, tmp) -> tuple[datamod.Dataset, str]:
    """The group split of ds (audit.group_split), and a sentence saying what it did."""
    from ...audit import group_split
    try:
        ds, moved = group_split(ds)
    except ValueError as e:
        tmpdirs.remove(tmp)
        raise gr.Error(str(e)) from None
    return ds, f" Group split: {moved} image(s) moved to the side of their copies."


def on_class(s: Session, c) -> Updates:
    return on_page(s, c, 1)


def on_page(s: Session, c, p) -> Updates:
    v = gallery_view(s.data, c, int(p or 1))
    return Updates(gallery=v["gallery"], page=_page(v), page_md=v["page_md"])


def on_pick(s: Session, c, p, x, y, evt: gr.SelectData):
    idx, _ = page_indices(s.data, c, int(p or 1))
    if evt.index is None or evt.index >= len(idx):
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    s.sel = int(idx[evt.index])
    v = pixel_view(s.data, s.sel, x, y)
    return v["big"], v["info"], v["patch"], augment_view(s.data, s.sel)


def on_patch(s: Session, x, y):
    v = pixel_view(s.data, s.sel, x, y)
    return v["big"], v["patch"]


def on_augment(s: Session):
    return augment_view(s.data, s.sel)


def _page(v: dict):
    """The gallery's page slider, from gallery_view's page and page count."""
    return gr.update(value=v["page"], maximum=max(2, v["n_pages"]))


def _gr_progress(progress: gr.Progress):
    def report(done, total, msg=None):
        progress(done / total if total else 1, desc=msg or "generating the crest set")
    return report

