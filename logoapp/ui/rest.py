"""`POST /api/classify`: one image in (multipart or the raw bytes), {"label", "probs", "unknown"} out, beside Gradio's
queued API for programs that want one plain HTTP request per image. The Guard (guard.py) answers it, after its
login and body-size checks; predictions run in worker threads, at most PREDICT_LIMIT at a time (Gradio's /predict
limit), so the route never skips the app's concurrency limits."""
from __future__ import annotations

import json
import threading
from typing import Callable

from ..images import ImageError, plain

PREDICT_LIMIT = 4               # predictions at once, as the queued /predict
MAX_IMAGE_BYTES = 64 << 20      # one image file (images.py refuses larger ones before decoding anyway)
TOP = 20                        # classes in "probs" (most likely first); the rest are left out


def answer(pred, src, top: int | None = TOP) -> dict:
    """{"label": the most likely class, "probs": {class: probability} most likely first, "unknown": whether the image
    lies far from the training data (always false for a model without an unknown-input test)}."""
    r = pred.predict(src, top=top, with_unknown=True)
    return {"label": r["label"], "probs": r["probs"], "unknown": bool(r["unknown"])}


class Classifier:
    """What the route calls: classify(image bytes, model name or None) -> answer(...); ImageError for a bad image,
    LookupError for an unknown model name."""

    def __init__(self, fn: Callable[[bytes, str | None], dict]):
        self.fn = fn
        self.slots = threading.BoundedSemaphore(PREDICT_LIMIT)

    def __call__(self, data: bytes, model: str | None = None) -> dict:
        with self.slots:
            return self.fn(data, model)


async def serve(scope, receive_body, send, classify: Classifier, reply) -> None:
    """Answer one POST /api/classify: receive_body() -> the whole (capped) body; reply(send, status, message)."""
    import anyio
    from starlette.requests import Request

    from .guard import replay
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
    ctype = headers.get("content-type", "")
    body = await receive_body()
    if body is None:
        return None
    if ctype.startswith("multipart/form-data"):
        data = await _first_file(Request(scope, replay(body)))
        if data is None:
            return await reply(send, 400, "send the image as a multipart file field (e.g. curl -F file=@crest.png)")
    else:
        data = body
    if not data:
        return await reply(send, 400, "no image: send the file's bytes, or a multipart file field")
    model = _query(scope).get("model")
    try:
        result = await anyio.to_thread.run_sync(classify, data, model)
    except ImageError as e:
        return await reply(send, 400, f"Cannot use this image: {plain(e)}")
    except LookupError as e:
        return await reply(send, 404, str(e).strip("'\""))
    out = json.dumps(result).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


async def _first_file(request) -> bytes | None:
    form = await request.form(max_files=1, max_fields=16, max_part_size=MAX_IMAGE_BYTES)
    try:
        for _, v in form.multi_items():
            if hasattr(v, "read"):
                return await v.read()
        return None
    finally:
        await form.close()


def _query(scope) -> dict:
    from urllib.parse import parse_qs
    return {k: v[0] for k, v in parse_qs((scope.get("query_string") or b"").decode("latin-1")).items()}


def for_app(reg, ctx) -> Classifier:
    """The full app's classifier: the model named by ?model=NAME (a Predict-tab picker value), else the picker's
    default (the newest saved model for the start-up classes, else the pixel baseline)."""
    from ..predict import Predictor
    cache: dict = {}

    def fn(data: bytes, model: str | None) -> dict:
        import gradio as gr
        name = model or reg.default(ctx)
        try:
            m, meta, extra = reg.get(name, ctx, with_extra=True)
        except gr.Error as e:
            raise LookupError(str(e)) from None
        p = cache.get((name, id(m)))
        if p is None:  # an inference copy per loaded model, built once
            try:
                p = Predictor(m, meta, extra=extra)
            except ValueError:  # an unknown-input entry without its stored features: predict without the test
                p = Predictor(m, {k: v for k, v in meta.items() if k != "unknown"})
            if len(cache) >= 8:
                cache.clear()
            cache[(name, id(m))] = p
        return answer(p, data)
    return Classifier(fn)
