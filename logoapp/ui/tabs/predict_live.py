"""Two parts of the Predict tab (laid out and wired by predict.py): the export format choice (logoapp zip, ONNX,
TorchScript, the latter two checked against logoapp's predictor) and the live webcam, throttled per session."""
from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr

from ... import export as X
from ... import parity, store, tmpdirs
from ...images import ImageError
from ..registry import BASE
from ..rest import answer
from ..state import Session
from ..wiring import Ui

FORMATS = [("logoapp zip (model.json + weights)", "zip"), ("ONNX (onnxruntime, preprocessing inside)", "onnx"),
           ("TorchScript (torch.jit.load, preprocessing inside)", "torchscript")]
STREAM_EVERY = 0.2      # s between webcam frames sent (5 a second at most)
MIN_GAP = 0.2           # s at least between two predictions of one session's webcam
BUSY_SHARE = 0.5        # a session's webcam may keep the CPU busy at most this share of the time


# ============================================================================================= layout

def layout_export(ui: Ui) -> None:
    """The format choice and the check's result, inside the export panel (beside the export button)."""
    fmt = gr.Radio(FORMATS, value="zip", label="Format", elem_id="export-format")
    note = gr.Markdown("", elem_classes="la-note", elem_id="export-note")
    ui.add(export_fmt=fmt, export_md=note)


def layout_webcam(ui: Ui) -> None:
    with gr.Accordion("Live webcam", open=False):
        with gr.Row(equal_height=False):
            cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam (starts when you "
                           "press record)", height=260, elem_id="predict-webcam")
            with gr.Column():
                cam_label = gr.Label(num_top_classes=3, label="Live prediction", elem_id="predict-webcam-label")
                cam_md = gr.Markdown("", elem_classes="la-note")
    ui.add(cam=cam, cam_label=cam_label, cam_md=cam_md, cam_throttle=gr.State(Throttle()))


def wire(ui: Ui) -> None:
    ui.on("export_btn.click", on_export_as, ["session", "pmodel", "export_fmt"], ["export_file", "export_md"],
          api_name="export_model")
    ui.on("cam.stream", on_frame, ["cam", "pmodel", "cam_throttle", "session"], ["cam_label", "cam_md"],
          api_visibility="private", stream_every=STREAM_EVERY, concurrency_id="predict", concurrency_limit=4,
          trigger_mode="always_last", show_progress="hidden", time_limit=600)


# ============================================================================================= export

def _model_and_meta(s: Session, name):
    if not name:
        raise gr.Error("Pick a model first.")
    model, meta = s.reg.get(name, s.data)
    if name.startswith(BASE):
        meta = {**meta, "name": f"pixel-{name[len(BASE):]}"}
    return model, meta


def on_export_as(s: Session, model, fmt, progress=gr.Progress()):
    """The chosen model as a logoapp zip, or as one ONNX / TorchScript file with the preprocessing inside, checked
    against logoapp's own predictor on a generated probe set before it is offered."""
    from . import predict
    if fmt in (None, "zip"):
        return predict.on_export(s, model), ""
    if fmt not in X.FORMATS:
        raise gr.Error(f"Unknown format {fmt!r}.")
    m, meta = _model_and_meta(s, model)
    progress(0.1, desc=f"exporting to {fmt}")
    dest = tmpdirs.make("export") / f"{store.safe_name(str(meta.get('name') or model))}{X.SUFFIX[fmt]}"
    try:
        X.export(m, meta, fmt, dest)
    except X.ExportError as e:
        raise gr.Error(str(e)) from None
    progress(0.7, desc="checking it against logoapp's predictor")
    from ...predict import Predictor
    report = parity.check(dest, Predictor(m, meta))
    if not report.ok:
        dest.unlink(missing_ok=True)
        raise gr.Error(f"The {fmt} export does not predict as logoapp does: {report.line()}")
    return str(dest), (f"Checked: {report.line()}. Input: uint8 (N, H, W, {meta['channels']}) pixels at any size; "
                       "outputs `logits` and `probs`; classes and temperature in its metadata.")


# ============================================================================================= webcam

@dataclass
class Throttle:
    """When a session's webcam frame may be classified: never while its previous frame still runs, at most every
    MIN_GAP s, and with a pause of at least (1 / BUSY_SHARE - 1) x the last prediction's time, so a slow CPU drops
    frames instead of queueing them."""
    busy: bool = False
    last_start: float = -1e9
    last_took: float = 0.0
    cached: tuple | None = None  # (model name, the loaded model, its Predictor): built once, not per frame

    def gap(self) -> float:
        return max(MIN_GAP, self.last_took / BUSY_SHARE)

    def start(self, now: float) -> bool:
        """Take this frame (True) or drop it (False)."""
        if self.busy or now - self.last_start < self.gap():
            return False
        self.busy, self.last_start = True, now
        return True

    def done(self, now: float) -> None:
        self.busy, self.last_took = False, max(0.0, now - self.last_start)


def on_frame(frame, model, throttle: Throttle, s: Session):
    """One webcam frame: classified when the throttle allows, else dropped (the label keeps the last answer)."""
    if frame is None or throttle is None or not throttle.start(time.monotonic()):
        return gr.skip(), gr.skip()
    try:
        r = answer(_predictor(throttle, s, model or s.reg.default(s.data)), frame, top=3)
    except (ImageError, gr.Error):
        return gr.skip(), gr.skip()
    finally:
        throttle.done(time.monotonic())
    note = f"**unknown** — closest: {r['label']}" if r["unknown"] else ""
    return r["probs"], note + ("  \n" if note else "") + f"{1 / throttle.gap():.1f} predictions a second at most"


def _predictor(throttle: Throttle, s: Session, name: str):
    """The session's Predictor for name, reused across frames while the registry holds the same model."""
    from .predict import predictor
    m = s.reg.get(name, s.data)[0]
    if throttle.cached is None or throttle.cached[0] != name or throttle.cached[1] is not m:
        throttle.cached = (name, m, predictor(s, name))
    return throttle.cached[2]
