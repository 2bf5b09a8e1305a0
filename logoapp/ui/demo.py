"""The predict-only app for one model (`--demo MODEL_DIR`): no data, no training, no file browsing, one API
endpoint (/predict)."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from .. import store
from ..images import ImageError, plain
from ..predict import Predictor
from .widgets import DELETE_CACHE, examples, unopened, upload


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
                ex = examples(meta["vocab"])
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
