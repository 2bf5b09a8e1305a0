"""What the tabs show, computed without Gradio (logoapp.views): pages, refusals, and no Gradio import."""
from __future__ import annotations

import subprocess
import sys

import pytest

from logoapp.data import open_dataset
from logoapp.views import PAGE, DataCtx, ViewError, evaluate_on, gallery_view


def test_views_and_uploads_import_without_gradio():
    code = "import sys, logoapp.views, logoapp.uploads; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_gallery_pages_are_clamped_and_counted(tiny4):
    ctx = DataCtx(open_dataset(tiny4, size=16), "tiny4")
    n = len(ctx.ds.items)
    last = gallery_view(ctx, "(all classes)", 99)
    assert last["n_pages"] == last["page"] == -(-n // PAGE) and len(last["gallery"]) == n - (last["page"] - 1) * PAGE
    first = gallery_view(ctx, "(all classes)", 0)
    assert first["page"] == 1 and len(first["gallery"]) == PAGE
    assert [c for _, c in first["gallery"][:4]] == ctx.ds.vocab  # 'all classes' shows one of each class in turn
    one = gallery_view(ctx, ctx.ds.vocab[1], 1)
    assert one["n_pages"] == 1 and "16 images" in one["page_md"]


def test_evaluating_a_model_on_other_classes_is_refused_with_a_reason(tiny4):
    ctx = DataCtx(open_dataset(tiny4, size=16), "tiny4")
    meta = {"vocab": ["cats", "dogs"], "channels": 4, "arch": "cnn", "data_size": 16}
    with pytest.raises(ViewError, match="knows 2 classes"):
        evaluate_on(None, meta, ctx)


def test_importing_the_app_writes_nothing_into_the_package():
    """Gradio writes a .pyi stub beside any module that defines a component class: the app must define none."""
    from pathlib import Path

    import logoapp.ui
    import logoapp.ui.tabs
    logoapp.ui.tabs.modules()
    assert not list(Path(logoapp.ui.__file__).parent.parent.rglob("*.pyi"))
