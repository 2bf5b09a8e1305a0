"""The Data, Evaluate and Predict fixes without a browser: failed loads, the test split, fitting models, notes,
plots and one-line server logs for users' mistakes."""
from __future__ import annotations

import logging
import tempfile
import zipfile
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest

from conftest import make_folder
from logoapp import plots
from logoapp.data import open_dataset
from logoapp.ui import Session
from logoapp.ui.app import start
from logoapp.ui.tabs import data, evaluate
from logoapp.ui.wiring import Ui
from logoapp.views import DataCtx, board_df, colour_name, input_note


def quiet(*args, **kwargs):
    """A progress callback that reports nothing."""


pytestmark = pytest.mark.usefixtures("files_count_as_uploads")  # conftest.py


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    base = tmp_path_factory.mktemp("fixes")
    folder = make_folder(base / "crests", n_classes=3, per_class=10)
    return start(folder, models_dir=base / "models", size=16, progress=quiet)


def presplit(root, per=(6, 3, 3)):
    for split, n in zip(("train", "valid", "test"), per):
        make_folder(root / split, n_classes=2, per_class=n)
    return root


def test_a_zip_without_images_is_refused_in_one_escaped_line_without_server_paths(shared, tmp_path):
    z = tmp_path / "empty.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("stuff/readme.txt", "nothing here")
    s = Session(shared)
    out = data.on_load(s, data.ZIP, "", str(z), 0, 0.2, 42, progress=quiet)
    msg = out["load_md"]
    assert set(out) == {"load_md"} and s.ctx is None  # nothing else changes: the previous data stays
    assert "&lt;class&gt;/&lt;images&gt;" in msg and "<class>" not in msg  # escaped: shown, not eaten as HTML
    assert "logoapp-zip" not in msg and tempfile.gettempdir() not in msg.replace(shared.ctx0.name, "")
    assert "is still loaded" in msg
    assert "press **Load dataset**" in data.on_zip_uploaded(str(z))


def test_uploaded_zip_names_lose_zip_in_model_names(tiny):
    ctx = DataCtx(open_dataset(tiny, size=16), "uploaded ars_liv_200.zip")
    assert ctx.slug == "uploaded-ars_liv_200"


def test_evaluate_scores_the_test_split_and_the_leaderboard_shows_it(shared, tmp_path):
    s = Session(shared)
    data.on_load(s, data.FOLDER, str(presplit(tmp_path / "p")), None, 16, 0.2, 42, resize="crop",
                 progress=quiet)
    assert s.ctx.ds.resize == "crop" and s.ctx.has_test
    assert evaluate.refresh(s)["esplit"]["visible"] is True
    out = evaluate.on_eval(s, evaluate.L1[0], "test")
    assert "of 6 test images right" in out["eval_md"] and s.eval_split == "test"
    assert "test image(s)" in out["cell_md"]
    assert "test accuracy %" in out["board"].columns
    assert evaluate.stored(s, evaluate.L1[0])[0].split == "test"  # clicks on the page read the split shown
    back = evaluate.on_eval(s, evaluate.L1[0], "valid")
    assert "validation images right" in back["eval_md"]
    plain = Session(shared)  # data without a test split: the choice is hidden and 'test' falls back to valid
    assert evaluate.refresh(plain)["esplit"]["visible"] is False
    assert "validation images right" in evaluate.on_eval(plain, evaluate.L1[0], "test")["eval_md"]
    assert "test accuracy %" not in board_df({}, plain.data).columns


def test_input_note_names_sizes_method_and_background():
    h = SimpleNamespace(width=300, height=200, mode="RGBA", format="PNG", alpha=True)
    meta = {"data_size": 140, "size": 64, "channels": 3, "background": [0, 0, 0], "resize": "crop"}
    note = input_note(h, meta)
    assert "centre-cropped to 140×140, then the model's 64×64 RGB" in note and "flattened on black" in note
    old = input_note(h, {"data_size": 64, "size": 64, "channels": 3})
    assert "squished to 64×64 RGB" in old and "on white (this model was saved without" in old
    assert "flattened" not in input_note(h, {**meta, "channels": 4})
    assert colour_name((20, 90, 200)) == "#145ac8"


def test_tables_count_epochs_from_1_in_percent_and_long_names_wrap():
    t = plots.metrics_table([{"epoch": 0, "train_loss": 1.0, "valid_loss": 0.5, "accuracy": 0.8967, "seconds": 3}])
    assert t["epoch"].tolist() == [1] and t["accuracy %"].tolist() == [89.7]
    assert plots._short("westcliff-wanderers") == "westcliff-\nwanderers"
    assert plots._short("short") == "short" and "…" in plots._short("a" * 40)
    lb = plots.leaderboard([{"name": "m", "arch": "cnn", "accuracy": 0.5, "test": 0.25}], test=True)
    assert lb["test accuracy %"].tolist() == [25.0]


def test_a_users_mistake_logs_one_line_not_a_traceback(caplog):
    def handler():
        raise gr.Error("Pick a model first.")
    with caplog.at_level(logging.WARNING, logger="logoapp"), pytest.raises(gr.Error) as e:
        Ui().handler(handler)()
    assert e.value.print_exception is False  # Gradio prints no traceback for it
    assert [r.getMessage() for r in caplog.records] == ["handler refused: Pick a model first."]


def test_pixel_baseline_counts_its_parameters(shared):
    meta = shared.ctx0.baseline("l1")["meta"]
    ds = shared.ctx0.ds
    assert meta["n_params"] == ds.c * ds.channels * ds.size * ds.size
    assert meta["resize"] == "squish" and len(meta["background"]) == 3
    assert np.asarray(meta["background"]).dtype.kind == "i"
