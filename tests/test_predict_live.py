"""The Predict tab's export formats and live webcam, as plain handler calls (no server), and the webcam throttle."""
from __future__ import annotations


import gradio as gr
import numpy as np
import pytest

from conftest import make_folder, make_image
from logoapp.ui import Session
from logoapp.ui.app import compose, start
from logoapp.ui.registry import BASE
from logoapp.ui.tabs import predict_live
from logoapp.ui.tabs.predict_live import MIN_GAP, Throttle
from logoapp.ui.wiring import Ui

L1 = BASE + "l1"


pytestmark = pytest.mark.usefixtures("files_count_as_uploads")  # conftest.py


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    base = tmp_path_factory.mktemp("live")
    shared = start(make_folder(base / "crests", n_classes=3, per_class=10), models_dir=base / "models", size=16,
                   progress=lambda *a, **k: None)
    ui = Ui()
    compose(shared, ui)
    assert {"export_fmt", "export_md", "cam", "cam_label", "cam_md", "cam_throttle"} <= set(ui.named)
    return Session(shared)


def test_throttle_drops_frames_instead_of_queueing_them():
    t = Throttle()
    assert t.start(0.0) and not t.start(0.05)          # busy: the next frame is dropped
    t.done(0.1)
    assert not t.start(0.15) and t.start(0.25)         # at most one prediction every MIN_GAP
    t.done(1.25)                                       # a slow prediction (1 s): wait twice as long before the next
    assert t.gap() == pytest.approx(2.0) and not t.start(2.0) and t.start(3.3)
    # a CPU that needs 0.8 s per frame, fed 5 frames a second for 20 s: never two at once, and at most half busy
    t, now, taken, busy_until = Throttle(), 0.0, [], -1.0
    while now < 20:
        if t.start(now):
            assert now >= busy_until
            taken.append(now)
            busy_until = now + 0.8
            t.done(busy_until)
        now = round(now + 0.2, 6)
    assert 8 <= len(taken) <= 13 and all(b - a >= 1.6 - 1e-9 for a, b in zip(taken, taken[1:]))
    assert MIN_GAP <= 0.25  # a fast CPU still updates the label several times a second


def test_webcam_frames_are_classified_when_the_throttle_allows(session):
    frame = np.asarray(make_image(1, 0, 48).convert("RGB"))
    t = Throttle()
    probs, note = predict_live.on_frame(frame, L1, t, session)
    assert isinstance(probs, dict) and len(probs) <= 3 and "a second" in note
    assert predict_live.on_frame(frame, L1, t, session) == (gr.skip(), gr.skip())  # too soon: dropped
    assert predict_live.on_frame(None, L1, Throttle(), session) == (gr.skip(), gr.skip())


@pytest.mark.parametrize("fmt", ["zip", "torchscript"])
def test_export_panel_formats(session, fmt):
    path, note = predict_live.on_export_as(session, L1, fmt, progress=lambda *a, **k: None)
    assert path.endswith({"zip": ".zip", "torchscript": ".torchscript"}[fmt])
    if fmt != "zip":
        from logoapp.export import Runner
        assert note.startswith("Checked: parity") and "100.00%" in note
        assert Runner(path).meta["classes"] == session.data.ds.vocab
    with pytest.raises(gr.Error, match="Pick a model first"):
        predict_live.on_export_as(session, "", fmt, progress=lambda *a, **k: None)
