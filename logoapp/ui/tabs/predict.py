"""5 · Predict: classify one image or many with any model; export a model as a zip or import one."""
from __future__ import annotations

import math
import zipfile
import zlib

import gradio as gr
import pandas as pd

from ... import store, tmpdirs
from ...images import ImageError, header
from ...predict import Predictor
from ...uploads import zip_directory
from ...views import DataCtx, ViewError, explain_view, file_name, input_note, unknown_note
from ..registry import BASE, Registry, on_models_tab, pickers
from ..state import Session, Shared
from ..widgets import examples, unopened, upload
from ..wiring import Ui, Updates
from . import predict_live

REFRESHES = ("pmodel", "pex", "pclass", "pthr")
TABLE = ["file", "predicted", "probability %", "next best", "error"]


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
                pinfo = gr.Markdown("", elem_classes="la-note", elem_id="predict-note")
                with gr.Row(equal_height=False, elem_classes="la-align-end"):
                    pshow = gr.Checkbox(True, label="Show where the model looked", elem_id="predict-show")
                    pclass = gr.Dropdown(vocab_of(reg, default_model, ctx0), value=None, label="Explain class",
                                         elem_id="predict-class")
                pheat = gr.Image(None, label="Where the model looked", interactive=False, format="png", height=260,
                                 buttons=[], elem_id="predict-heatmap")
                pheat_md = gr.Markdown("", elem_classes="la-note")
                pthr = gr.Slider(**threshold_slider(reg, default_model, ctx0), label="Unknown above (this session "
                                 "only)", info="Images scoring above it count as far from the training data.",
                                 elem_id="predict-threshold")
        with gr.Accordion("Many images at once", open=False):
            pfiles = gr.File(file_count="multiple", label="Images (any number; each upload replaces the results "
                             "before; unreadable files are reported, not fatal)", height=120, elem_id="predict-files")
            pmany = gr.Dataframe(pd.DataFrame(columns=TABLE), interactive=False, show_label=False, wrap=True,
                                 elem_id="predict-many")
            pcsv = gr.File(label="Results as CSV", interactive=False, height=90, visible=False, elem_id="predict-csv")
        predict_live.layout_webcam(ui)
        with gr.Accordion("Export or import a model", open=False):
            with gr.Row(equal_height=False):
                with gr.Column():
                    predict_live.layout_export(ui)
                    export_btn = gr.Button("Export the selected model")
                    export_file = gr.File(label="Exported model", interactive=False, height=90)
                with gr.Column():
                    import_file = gr.File(label="Import a model zip (from logoapp)", file_types=[".zip"], height=90)
                    import_md = gr.Markdown("")
    ui.add(pcsv=pcsv)
    ui.add(pshow=pshow, pclass=pclass, pheat=pheat, pheat_md=pheat_md, pthr=pthr)
    ui.add(tab_pred=tab_pred, pmodel=pmodel, pimg=pimg, pex=pex, plabel=plabel, pinfo=pinfo, pfiles=pfiles,
           pmany=pmany, export_btn=export_btn, export_file=export_file, import_file=import_file, import_md=import_md)


def wire(ui: Ui) -> None:
    quiet = dict(api_visibility="private", show_progress="hidden")
    ins = ["pimg", "pmodel", "session"]
    ui.on("pimg.change", on_predict, ins, "plabel", api_name="predict", concurrency_id="predict", concurrency_limit=4,
          show_progress="minimal")
    ui.on("pmodel.change", on_repredict, ins, "plabel", api_visibility="private", concurrency_id="predict",
          show_progress="minimal")
    # the note is cleared first: an image refused before the handler runs leaves no note of the one before
    ui.on("pimg.change", lambda: "", None, "pinfo", **quiet).then(
        ui.handler(on_predict_note), ui.all(["pimg", "pmodel", "pthr", "session"]), ui.all("pinfo"), **quiet)
    ui.on("pthr.release", on_predict_note, ["pimg", "pmodel", "pthr", "session"], "pinfo", **quiet)
    ui.on("pmodel.change", on_threshold, ["pmodel", "session"], "pthr", **quiet).then(
        ui.handler(on_predict_note), ui.all(["pimg", "pmodel", "pthr", "session"]), ui.all("pinfo"), **quiet)
    look = ["pimg", "pmodel", "pshow", "session"]
    ui.on(["pimg.change", "pmodel.change"], on_look, look, ["pclass", "pheat", "pheat_md"], **quiet)
    ui.on(["pclass.input", "pshow.change"], on_look_class, look + ["pclass"], ["pheat", "pheat_md"], **quiet)
    ui.on("pmodel.change", on_examples, ["pmodel", "session"], "pex", **quiet)
    ui.on("pfiles.upload", on_many_csv, ["pfiles", "pmodel", "session"], ["pmany", "pcsv", "pfiles"],
          api_name="predict_many", concurrency_id="predict")
    predict_live.wire(ui)  # the export button (zip, ONNX, TorchScript) and the live webcam
    ui.on("import_file.upload", on_import, ["session", "import_file"], "import_md", api_name="import_model").success(
        ui.handler(on_imported), ui.all("session"), ui.all(["pmodel", "emodel"]), **quiet)
    # models saved by other sessions (or copied in) show up when the tab opens
    ui.on("tab_pred.select", on_models_tab, ["session", "emodel", "pmodel"], ["emodel", "pmodel"], **quiet)


def refresh(s: Session) -> Updates:
    """The default model picked, with its examples."""
    dflt = s.reg.default(s.data)
    shown = bool(model_examples(s.reg, dflt, s.data))
    return pickers(s, ["pmodel"], pmodel=dflt) | Updates(pex=gr.update(visible=shown), pthr=on_threshold(dflt, s),
                                                         pclass=gr.update(choices=vocab_of(s.reg, dflt, s.data),
                                                                          value=None))


def model_examples(reg: Registry, name: str | None, ctx: DataCtx | None) -> list[str]:
    """The example crests a picked model knows the classes of (none for a model of other classes)."""
    try:
        return examples(reg.get(name, ctx)[1]["vocab"]) if name else []
    except gr.Error:
        return []


def vocab_of(reg: Registry, name: str | None, ctx: DataCtx | None) -> list[str]:
    try:
        return list(reg.get(name, ctx)[1]["vocab"]) if name else []
    except gr.Error:
        return []


def threshold_slider(reg: Registry, name: str | None, ctx: DataCtx | None) -> dict:
    """The unknown-threshold slider's settings for a model: its stored threshold in a range that suits the score
    (a kNN distance between unit vectors lies in [0, 2]); hidden for a model without an unknown-input test."""
    try:
        model, meta, extra = reg.get(name, ctx, with_extra=True)
        det = Predictor(model, meta, extra=extra).unknown if name else None
    except (gr.Error, ValueError):
        det = None
    t = det.threshold if det is not None else math.inf
    if not math.isfinite(t):
        return dict(minimum=0, maximum=1, value=0, step=0.01, visible=False)
    lo, hi = (0.0, max(2.0, 2 * t)) if det.method == "knn" else (t - max(1.0, abs(t)), t + max(1.0, abs(t)))
    return dict(minimum=round(lo, 4), maximum=round(hi, 4), value=round(t, 4), step=round((hi - lo) / 400, 6),
                visible=True)


# ============================================================================================= handlers

def predictor(s: Session, name) -> Predictor:
    model, meta, extra = s.reg.get(name, s.data, with_extra=True)
    try:
        return Predictor(model, meta, extra=extra)
    except ValueError:  # an unknown-input entry without its stored features: predict without the test
        return Predictor(model, {k: v for k, v in meta.items() if k != "unknown"})


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


def on_predict_note(image, model, thr, s: Session):
    """How the image was read and, for a model with an unknown-input test, whether it lies far from the training
    data, judged against the threshold slider (thr)."""
    if image is None:
        return ""
    try:
        image = upload(image)
        p = predictor(s, model or s.reg.default(s.data))
        h = header(image)
        r = p.predict(image, with_unknown=True)
    except (ImageError, gr.Error):
        return ""
    note = unknown_note(r, None if r["threshold"] is None else float(thr if thr is not None else r["threshold"]))
    return (note + "  \n" if note else "") + input_note(h, p.meta)


def on_threshold(model, s: Session):
    """Another model picked: the slider at its stored unknown threshold (hidden for a model without one)."""
    return gr.update(**threshold_slider(s.reg, model or s.reg.default(s.data), s.data))


def heat(image, model, show, cls, s: Session) -> tuple[Updates, str | None]:
    """The heatmap of where the model looked for class cls (None: the predicted one), hidden when show is off; and
    the class explained."""
    if image is None or not show:
        return Updates(pheat=gr.update(value=None, visible=bool(show)), pheat_md=""), None
    try:
        m, meta = s.reg.get(model or s.reg.default(s.data), s.data)
        v = explain_view(m, meta, upload(image), cls or None)
    except ImageError:
        return Updates(pheat=gr.update(value=None, visible=True), pheat_md=""), None
    except ViewError as e:
        return Updates(pheat=gr.update(value=None, visible=True), pheat_md=str(e)), None
    return Updates(pheat=gr.update(value=v["overlay"], visible=True), pheat_md=v["caption"]), v["label"]


def on_look(image, model, show, s: Session) -> Updates:
    """A new image or model: explain the predicted class, and offer the model's classes to explain instead."""
    out, label = heat(image, model, show, None, s)
    vocab = vocab_of(s.reg, model or s.reg.default(s.data), s.data)
    return out | Updates(pclass=gr.update(choices=vocab, value=label if label in vocab else None))


def on_look_class(image, model, show, cls, s: Session) -> Updates:
    """Another class picked (why not X?) or the heatmap switched on or off."""
    return heat(image, model, show, cls, s)[0]


def on_examples(model, s: Session):
    return gr.update(visible=bool(model_examples(s.reg, model, s.data)))


def on_many(files, model, s: Session):
    """Classify several image files: a table of file, predicted class, probability and runners-up."""
    if not files:
        return pd.DataFrame(columns=TABLE)
    files = [upload(f) for f in files]
    return predict_table(predictor(s, model or s.reg.default(s.data)).predict_many(files))


def on_many_csv(files, model, s: Session) -> Updates:
    """Classify the images of one upload: the table (errors in their own column), the same as a CSV to download,
    and the upload box emptied, so the next upload replaces these files instead of adding to them."""
    table = on_many(files, model, s)
    if not len(table):
        return Updates(pmany=table, pcsv=gr.update(value=None, visible=False))
    path = tmpdirs.make("export") / "predictions.csv"
    table.to_csv(path, index=False)
    return Updates(pmany=table, pcsv=gr.update(value=str(path), visible=True), pfiles=None)


def predict_table(rows: list[dict]) -> pd.DataFrame:
    out = []
    for r in rows:
        name = file_name(r["path"]) if r.get("path") else "(image)"
        if "error" in r:
            out.append((name, "", None, "", r["error"]))
        else:
            top = list(r["probs"].items())
            out.append((name, r["label"], round(100 * top[0][1], 1),
                        ", ".join(f"{k} {100 * v:.0f}%" for k, v in top[1:3]), ""))
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
