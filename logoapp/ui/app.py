"""The whole app: the start-up data and models folder every session shares, and the tabs composed around them.

Data -> Ideal (pixel means, nearest-ideal baseline) -> Train (linear, mlp, cnn, resnet) -> Evaluate -> Predict.
What a user does lives in their own Session (a gr.State); what every user shares (Shared: the dataset loaded at
start-up, the models folder) is read-only or on disk."""
from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr

from .. import data as datamod
from ..config import models_dir as default_models_dir
from ..views import DataCtx
from .demo import build_demo
from .registry import Registry
from .rest import for_app
from .state import Session, Shared
from .widgets import DELETE_CACHE
from .wiring import Ui

HEADER = ("# logoapp\nBuild an image classifier from a folder of pictures, and understand it — the fast.ai book's "
          "chapter-4 ladder: **pixel means → linear model → small neural net → CNN → ResNet**. Work through the "
          "tabs from left to right.")


def build_app(data: str | Path | None = None, models_dir: str | Path | None = None, demo: str | Path | None = None,
              allow_folders: bool = True, size: int | None = None, progress=None) -> gr.Blocks:
    """The whole app (or, with demo=MODEL_DIR, the predict-only app for one model)."""
    if demo:
        return build_demo(demo)
    shared = start(data, models_dir, allow_folders, size, progress)
    app = compose(shared)
    app.classify = for_app(shared.reg, shared.ctx0)  # POST /api/classify (rest.py), answered by the Guard
    return app


def start(data: str | Path | None = None, models_dir: str | Path | None = None, allow_folders: bool = True,
          size: int | None = None, progress=None) -> Shared:
    """Open the start-up data (one line and exit when it cannot be used) and the models folder."""
    try:
        ds0 = datamod.resolve(data, size=size, progress=progress or cli_progress("preparing the data"))
    except datamod.DataError as e:
        raise SystemExit(f"logoapp: {e}") from None
    ctx0 = DataCtx(ds0, "embedded crests" if data in (None, "", "embedded") else str(data))
    ctx0.baseline("l1")
    return Shared(ctx0, Registry(Path(models_dir or default_models_dir())), data, size, allow_folders)


def compose(shared: Shared, ui: Ui | None = None) -> gr.Blocks:
    """Lay out every tab, then wire them: a tab's handlers may update the components of tabs laid out after it.
    The components are registered by name in `ui` (pass one to look at them)."""
    from . import tabs  # fastai is heavy: only the full app (its Train tab) needs it
    ui = Ui() if ui is None else ui
    with gr.Blocks(title="logoapp", analytics_enabled=False, delete_cache=DELETE_CACHE) as app:
        ui.add(session=gr.State(Session(shared), delete_callback=Session.close))
        gr.Markdown(HEADER, elem_id="la-header")
        with gr.Tabs(elem_id="tabs"):
            for tab in tabs.modules():
                tab.layout(ui, shared)
        for tab in tabs.modules():
            tab.wire(ui)
    return app


def cli_progress(label: str):
    """A progress callback for start-up: prints a line at 0, 25, 50, 75 and 100%."""
    last = [-1]

    def report(done, total, msg=None):
        q = int(4 * done / total) if total else 4
        if q != last[0]:
            last[0] = q
            print(f"  {msg or label}: {done}/{total}", file=sys.stderr, flush=True)
    return report
