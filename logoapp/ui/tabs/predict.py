"""5 · Predict: classify one image or many with any model; export a model as a zip or import one."""
from __future__ import annotations

import zipfile
import zlib

import gradio as gr
import pandas as pd

from ... import store, tmpdirs
from ...images import ImageError, header
from ...predict import Predictor
from ...uploads import zip_directory
from ...views import DataCtx, file_name
from ..registry import BASE, Registry, on_models_tab, pickers
from ..state import Session, Shared
from ..widgets import examples, unopened, upload
from ..wiring import Ui, Updates

REFRESHES = ("pmodel", "pex")
TABLE = ["file", "predicted", "probability %", "next best"]


def layout(ui: Ui, shared: Shared) -> None:
    ctx0, reg = shared.ctx0, shared.reg
    default_model = reg.default(ctx0)
    with gr.Tab("5 · Predict", id="predict", elem_id="tab-predict") as tab_pred:
        with gr.Row(equal_height=False):
            with gr.Column():
                pmodel = gr.Dropdown(reg.choices(ctx0), value=default_model, label="Model", elem_id="predict-model",
                                     allow_custom_value=True)
                pimg = unopened(gr.Image(sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None,
                                         label="Drop, upload, paste or snap an image", format="png", height=320,
                                         elem_id="predict-image"))
                ex = examples(None)
                with gr.Column(visible=bool(model_examples(reg, default_model, ctx0))) as pex:
                    if ex:
                        gr.Examples(ex, inputs=pimg, label="Example crests", examples_per_page=8)
            with gr.Column():
                plabel = gr.Label(num_top_classes=5, label="Prediction", elem_id="predict-label")
                pinfo = gr.Markdown("", elem_classes="la-note")
        with gr.Accordion("Many images at once", open=False):
            pfiles = gr.File(file_count="multiple", label="Images (any number; unreadable files are reported, not "
                             "fatal)", height=120)
            pmany = gr.Dataframe(pd.DataFrame(columns=TABLE), interactive=False, show_label=False)
        with gr.Accordion("Export or import a model", open=False):
            with gr.Row(equal_height=False):
                with gr.Column():
                    export_btn = gr.Button("Export the selected model as .zip")
                    export_file = gr.File(label="Model zip", interactive=False, height=90)
                with gr.Column():
                    import_file = gr.File(label="Import a model zip (from logoapp)", file_types=[".zip"], height=90)
                    import_md = gr.Markdown("")
    ui.add(tab_pred=tab_pred, pmodel=pmodel, pimg=pimg, pex=pex, plabel=plabel, pinfo=pinfo, pfiles=pfiles,
           pmany=pmany, export_btn=export_btn, export_file=export_file, import_file=import_file, import_md=import_md)


def wire(ui: Ui) -> None:
    quiet = dict(api_visibility="private", show_progress="hidden")
    ins = ["pimg", "pmodel", "session"]
    ui.on("pimg.change", on_predict, ins, "plabel", api_name="predict", concurrency_id="predict", concurrency_limit=4,
          show_progress="minimal")
    ui.on("pmodel.change", on_repredict, ins, "plabel", api_visibility="private", concurrency_id="predict",
          show_progress="minimal")
    ui.on(["pimg.change", "pmodel.change"], on_predict_note, ins, "pinfo", **quiet)
    ui.on("pmodel.change", on_examples, ["pmodel", "session"], "pex", **quiet)
    ui.on("pfiles.change", on_many, ["pfiles", "pmodel", "session"], "pmany", api_name="predict_many",
          concurrency_id="predict")
    ui.on("export_btn.click", on_export, ["session", "pmodel"], "export_file", api_name="export_model")
    ui.on("import_file.upload", on_import, ["session", "import_file"], "import_md", api_name="import_model").success(
        ui.handler(on_imported), ui.all("session"), ui.all(["pmodel", "emodel"]), **quiet)
    # models saved by other sessions (or copied in) show up when the tab opens
    ui.on("tab_pred.select", on_models_tab, ["session", "emodel", "pmodel"], ["emodel", "pmodel"], **quiet)


def refresh(s: Session) -> Updates:
    """The default model picked, with its examples."""
    dflt = s.reg.default(s.data)
    shown = bool(model_examples(s.reg, dflt, s.data))
    return pickers(s, ["pmodel"], pmodel=dflt) | Updates(pex=gr.update(visible=shown))


def model_examples(reg: Registry, name: str | None, ctx: DataCtx | None) -> list[str]:
    """The example crests a picked model knows the classes of (none for a model of other classes)."""
    try:
        return examples(reg.get(name, ctx)[1]["vocab"]) if name else []
    except gr.Error:
        return []


# ============================================================================================= handlers

def predictor(s: Session, name) -> Predictor:
    model, meta = s.reg.get(name, s.data)
    return Predictor(model, meta)


def classify(image, model, s: Session) -> dict | None:
    if image is None:
        return None
    image = upload(image)  # before anything else: a request may name any path
    return predictor(s, model or s.reg.default(s.data)).predict(image)


def on_predict(image, model, s: Session):
    """Classify one image with the chosen model (default: the newest trained one, else the pixel baseline):
    returns {label: probability}, most likely first."""
    try:
        return classify(image, model, s)
    except ImageError as e:
        raise gr.Error(f"Cannot use this image: {e}") from None


def on_repredict(image, model, s: Session):
    """Another model picked (or trained): classify the image again; one it could not use is not reported again."""
    try:
        return classify(image, model, s)
    except ImageError:
        return None


def on_predict_note(image, model, s: Session):
    if image is None:
        return ""
    try:
        _, meta = s.reg.get(model or s.reg.default(s.data), s.data)
        h = header(image)
    except (ImageError, gr.Error):
        return ""
    n = meta["data_size"]
    return (f"Input {h.width}×{h.height} {h.mode} ({h.format}) → resized to {n}×{n} "
            f"{'RGBA' if meta['channels'] == 4 else 'RGB'}, exactly as in training.")


def on_examples(model, s: Session):
    return gr.update(visible=bool(model_examples(s.reg, model, s.data)))


def on_many(files, model, s: Session):
    """Classify several image files: a table of file, predicted class, probability and runners-up."""
    if not files:
        return pd.DataFrame(columns=TABLE)
    files = [upload(f) for f in files]
    return predict_table(predictor(s, model or s.reg.default(s.data)).predict_many(files))


def predict_table(rows: list[dict]) -> pd.DataFrame:
    out = []
    for r in rows:
        name = file_name(r["path"]) if r.get("path") else "(image)"
        if "error" in r:
            out.append((name, "—", None, f"error: {r['error']}"))
        else:
            top = list(r["probs"].items())
            out.append((name, r["label"], round(100 * top[0][1], 1),
                        ", ".join(f"{k} {100 * v:.0f}%" for k, v in top[1:3])))
    return pd.DataFrame(out, columns=TABLE)


def on_export(s: Session, model):
    """The chosen model as a .zip (model.json + weights) to download."""
    name = model
    if not name:
        raise gr.Error("Pick a model first.")
    if name.startswith(BASE):
        model, meta = s.reg.get(name, s.data)
        tmp = tmpdirs.make("export") / f"pixel-{name[len(BASE):]}-{s.data.slug}"
        src = store.save(model, meta, tmp)
    else:
        src = s.reg.folder_of(name)
    return str(store.export_zip(src))


def on_import(s: Session, zip_file):
    """Add a model .zip exported by logoapp to the models folder."""
    zpath, folder, most = zip_file, s.shared.folder, store.MAX_MODEL_ZIP_FILES
    if not zpath:
        return gr.skip()
    zpath = upload(zpath)
    try:  # count members before zipfile parses the directory: it would build a huge one before any check
        n, _ = zip_directory(zpath, most)
    except ValueError as e:
        raise gr.Error(f"Not a model zip: {e}.") from None
    if n > most:
        raise gr.Error(f"Not a model zip: it has more than {most} files; a model zip from logoapp holds model.json "
                       "and one weights file.")
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
    return pickers(s, ["pmodel", "emodel"], pmodel=name, emodel=name)
