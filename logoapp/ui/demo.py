"""The predict-only app for one model (`--demo MODEL_DIR`): no data, no training, no file browsing, one API
endpoint (/predict), which answers {"label", "probs", "unknown"} as POST /api/classify does."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from .. import store
from ..images import ImageError, plain
from ..predict import Predictor
from .rest import Classifier, answer
from .widgets import DELETE_CACHE, examples, unopened, upload


def build_demo(model_dir: str | Path) -> gr.Blocks:
    """Predict-only app for one model: no data, no training, no file browsing, one API endpoint (/predict).
    The app's `classify` attribute answers POST /api/classify for the same model."""
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
                note = gr.Markdown("", elem_classes="la-note", elem_id="predict-note")
                gr.Markdown("Classes: " + ", ".join(meta["vocab"]), elem_classes="la-note")
                res = gr.JSON(visible=False)  # what /predict answers; the label and note above are drawn from it

        def predict(image: str) -> dict | None:
            """Classify one image with this app's image classifier.

            Args:
                image: the image to classify (PNG, JPEG, WebP, GIF or BMP).

            Returns:
                a dict: "label" is the most likely class; "probs" maps classes to probabilities (most likely
                first); "unknown" is true when the image lies far from the images the model was trained on (then
                "label" is only the closest class).
            """
            if image is None:
                return None
            try:
                return answer(pred, upload(image))
            except ImageError as e:  # what was wrong with the input, never a path or an address on the server
                raise gr.Error(f"Cannot use this image: {plain(e)}") from None

        img.change(predict, img, res, api_name="predict", show_progress="minimal").then(
            show, res, [out, note], api_visibility="private", show_progress="hidden")
    app.classify = Classifier(lambda data, model=None: answer(pred, data))
    return app


def show(r: dict | None):
    """/predict's answer as the page shows it: the probabilities, and "unknown — closest: X" when it is unknown."""
    if not r:
        return None, ""
    if not r.get("unknown"):
        return r["probs"], ""
    top = r["probs"][r["label"]]
    return r["probs"], f"**unknown** — closest: **{r['label']}** ({top:.0%}): far from the images it was trained on"
