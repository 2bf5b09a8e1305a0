"""The tabs' handlers called as plain functions (no server): a Session on tiny data, plain inputs, plain outputs.
Updates name components; every name a handler or refresh returns must be a component the app registered."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
import zipfile
from types import SimpleNamespace

import gradio as gr
import pytest

from conftest import make_folder
from logoapp.ui import Session
from logoapp.ui.app import compose, start
from logoapp.ui.registry import BASE
from logoapp.ui.tabs import data, evaluate, ideal, modules, predict, refresh_all, train
from logoapp.ui.wiring import Ui, Updates

L1 = BASE + "l1"


def quiet(*args, **kwargs):
    """A progress callback that reports nothing."""


pytestmark = pytest.mark.usefixtures("files_count_as_uploads")  # conftest.py


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    base = tmp_path_factory.mktemp("tabs")
    folder = make_folder(base / "crests", n_classes=3, per_class=10)
    return start(folder, models_dir=base / "models", size=16, progress=quiet)


@pytest.fixture(scope="module")
def ui(shared):
    ui = Ui()
    compose(shared, ui)
    return ui


@pytest.fixture(scope="module")
def trained(shared):
    """(session, name of a linear model it trained, every update the run streamed)."""
    s = Session(shared)
    outs = list(train.on_train(s, "linear", 1, 0.01, 8, 16, False, 0))
    name = next(iter(s.board))
    return s, name, outs


def known(out: Updates, ui: Ui) -> Updates:
    assert isinstance(out, Updates) and set(out) <= set(ui.named), set(out) - set(ui.named)
    return out


def test_each_tab_refreshes_what_it_declares_and_load_refreshes_all(shared, ui):
    s = Session(shared)
    for tab in modules():
        assert set(tab.REFRESHES) == set(known(tab.refresh(s), ui)), tab.__name__
    everything = known(refresh_all(s), ui)
    assert {"data_summary", "ideal_plot", "tsize", "board", "emodel", "eval_md", "pmodel", "pex"} <= set(everything)
    assert s.evals[L1][0].n == len(shared.ctx0.ds.idx("valid"))  # the Evaluate tab shows the L1 baseline


def test_updates_become_components(ui):
    out = ui.resolve(Updates(board="b", result="r"))
    assert list(out.values()) == ["b", "b", "r"] and len(ui.all("board")) == 2  # Train's and Evaluate's leaderboards
    assert ui.resolve(Updates()) == gr.skip() and ui.resolve({"millbrook-city": 0.9}) == {"millbrook-city": 0.9}


# ============================================================================================= Data

def test_data_browse_handlers(shared, ui):
    s = Session(shared)
    assert known(data.on_source(data.ZIP), ui)["zfile"]["visible"] is True
    first = known(data.on_class(s, "class1"), ui)
    assert len(first["gallery"]["value"]) == 10 and "10 images" in first["page_md"]
    assert first["gallery"]["selected_index"] is None  # no stale highlight from the page or data before
    assert known(data.on_page(s, data.ALL, 99), ui)["page"]["value"] == 1  # 30 images: one page
    big, info, patch, aug = data.on_pick(s, "class2", 1, 0, 0, SimpleNamespace(index=3))
    assert s.sel == int(shared.ctx0.by_class[2][3]) and "class **class2**" in info and aug is not None
    assert data.on_pick(s, "class2", 1, 0, 0, SimpleNamespace(index=99)) == (gr.skip(),) * 4
    big2, patch2 = data.on_patch(s, 3, 4)
    assert "x=3" in patch2.data.to_string() and data.on_augment(s) is not None


def test_data_load_a_folder_refreshes_every_tab(shared, ui, tmp_path):
    s = Session(shared)
    other = make_folder(tmp_path / "pets", n_classes=2, per_class=6, names=["cats", "dogs"])
    out = known(data.on_load(s, data.FOLDER, str(other), None, 16, 0.2, 42, progress=quiet), ui)
    assert s.ctx is not None and s.ctx.ds.vocab == ["cats", "dogs"] and out["session"] is s
    assert "Loaded **" in out["result"] and "12 images, 2 classes" in out["result"]
    assert out["cls"]["choices"] == [data.ALL, "cats", "dogs"] and out["emodel"]["value"] == L1
    out = data.on_load(s, data.START, "", None, 0, 0.2, 42, progress=quiet)
    assert s.ctx is None and "crests" in out["result"]  # back on the shared start-up data


@pytest.mark.parametrize("args, words", [
    ((data.FOLDER, "", None, 0), "Type the path"),
    ((data.ZIP, "", None, 0), "Upload a .zip"),
    ((data.FOLDER, "/no/such/folder", None, 0), "no such folder"),
    ((data.FOLDER, "/tmp", None, 4), "8 pixels and more"),
])
def test_data_load_refusals(shared, args, words):
    s = Session(shared)
    out = data.on_load(s, *args, 0.2, 42, progress=quiet)
    # one readable line, nothing else touched (no panel turns into an error), the previous data still in place
    assert set(out) == {"load_md"} and words in out["load_md"] and "is still loaded" in out["load_md"]
    assert s.ctx is None


def test_data_load_a_zip_and_refuse_folders_when_off(shared, tmp_path):
    src = make_folder(tmp_path / "icons", n_classes=2, per_class=4, size=24, names=["ball", "boot"])
    z = tmp_path / "icons.zip"
    with zipfile.ZipFile(z, "w") as f:
        for p in sorted(src.rglob("*.png")):
            f.write(p, p.relative_to(tmp_path))
    s = Session(shared)
    out = data.on_load(s, data.ZIP, "", str(z), 0, 0.2, 42, progress=quiet)
    assert "stored as 24×24 RGBA" in out["data_summary"] and s.ctx.tmpdir and s.ctx.name == "uploaded icons.zip"
    tmpdir = s.ctx.tmpdir
    s.close()
    assert s.ctx is None and not __import__("os").path.exists(tmpdir)  # a closed session leaves no upload behind
    locked = SimpleNamespace(**{**vars(shared), "allow_folders": False})
    out = data.on_load(Session(locked), data.FOLDER, str(src), None, 0, 0.2, 42, progress=quiet)
    assert "switched off" in out["load_md"]


# ============================================================================================= Ideal

def test_ideal_distance_and_background(shared, ui):
    s = Session(shared)
    out = known(ideal.on_ideal(s, "rmse", "white"), ui)
    assert "(RMSE)" in out["ideal_md"] and set(out["ideal_table"].columns) and "board" in out
    assert [v for _, v in out["emodel"]["choices"]][:2] == [L1, BASE + "rmse"] and "value" not in out["emodel"]


# ============================================================================================= Train

def test_train_form(shared):
    s = Session(shared)
    desc, epochs, lr, size, aug, note, pretrained, fetch = train.on_arch("linear", s)
    assert "linear" in desc and epochs == 6 and lr == 1e-3 and size == 16 and aug is False
    assert note and pretrained["visible"] is False and fetch["visible"] is False
    assert train.config("cnn", 2, 0.01, 16, 32, True, 1).model == "cnn"
    for bad, words in [(("nope", 1, 0.1, 16, 16, False, 0), "Unknown model"),
                       (("cnn", 1, 0, 16, 16, False, 0), "learning rate"),
                       (("cnn", 0, 0.1, 16, 16, False, 0), "Epochs"),
                       (("cnn", 1, 0.1, 16, 4, False, 0), "input size")]:
        with pytest.raises(gr.Error, match=words):
            train.config(*bad)
    s.running = True
    with pytest.raises(gr.Error, match="already going"):
        next(train.on_train(s, "linear", 1, 0.01, 8, 16, False, 0))
    assert train.on_stop(s)["interactive"] is False and s.stop.is_set()


def test_train_streams_and_selects_the_new_model(trained, ui):
    s, name, outs = trained
    for out in outs:
        known(out, ui)
    assert outs[0]["train_btn"]["interactive"] is False and "preparing linear" in outs[0]["prog"]
    last = outs[-1]
    assert "finished" in last["result"] and name in last["result"] and last["train_btn"]["interactive"] is True
    assert last["emodel"]["value"] == last["pmodel"]["value"] == name and name.startswith("linear-crests")
    assert s.board[name]["arch"] == "linear" and not s.running and len(last["metrics"]) == 1
    assert any("epoch 1/1" in o.get("prog", "") for o in outs)


# ============================================================================================= Evaluate

def test_evaluate_baseline_and_a_trained_model(trained, ui):
    s, name, _ = trained
    out = known(evaluate.on_eval(s, L1), ui)
    assert "pixel-similarity baseline · L1" in out["eval_md"] and out["wgroup"]["visible"] is False
    out = known(evaluate.on_eval(s, name), ui)
    assert name in out["eval_md"] and out["wgroup"]["visible"] is True and out["weights"] is not None
    assert name in set(out["board"]["model"]) and evaluate.on_eval(s, "") == Updates()
    cell, md = evaluate.on_cell(s, name, "class0", "class0")
    assert "correctly classified" in md and len(cell) <= 2
    assert evaluate.on_cell(s, "unknown", "class0", "class1") == (gr.skip(), gr.skip())
    a, p, cell, md = evaluate.on_confused_pick(s, name, SimpleNamespace(row_value=["class1", "class2", 1]))
    assert (a, p) == ("class1", "class2") and "predicted as **class2**" in md
    assert evaluate.on_confused_pick(s, name, SimpleNamespace(row_value=[])) == (gr.skip(),) * 4


def test_evaluate_refuses_a_model_of_other_classes(trained, tmp_path, caplog):
    s, name, _ = trained
    s2 = Session(s.shared)
    other = make_folder(tmp_path / "pets", n_classes=2, per_class=6, names=["cats", "dogs"])
    data.on_load(s2, data.FOLDER, str(other), None, 16, 0.2, 42, progress=quiet)
    assert name not in [v for _, v in s2.reg.choices(s2.data, fit=True)]  # not offered, and the note says why
    assert dict(s2.reg.unfit(s2.data))[name].startswith("it knows 3 classes")
    with caplog.at_level(logging.INFO, logger="logoapp"):
        out = evaluate.on_eval(s2, name)  # typed in anyway: refused, nothing on the tab changes
    assert set(out) <= {"emodel"} and "knows 3 classes" in caplog.text and "Traceback" not in caplog.text
    assert name not in s2.board and not any(k.startswith(name) for k in s2.evals)


# ============================================================================================= Predict

def test_predict_one_and_many(trained, tmp_path):
    s, name, _ = trained
    img = s.data.ds.items[0]
    probs = predict.on_predict(img, L1, s)
    assert set(probs) == set(s.data.ds.vocab) and predict.on_predict(None, L1, s) is None
    assert set(predict.on_predict(img, None, s)) == set(s.data.ds.vocab)  # no pick: the default (the newest model)
    junk = tmp_path / "notes.png"
    junk.write_text("shopping list\n" * 20)
    with pytest.raises(gr.Error, match="Cannot use this image: not an image"):
        predict.on_predict(str(junk), name, s)
    assert predict.on_repredict(str(junk), name, s) is None
    assert "→ squished to 16×16 RGBA, as in training" in predict.on_predict_note(img, name, None, s)
    assert predict.on_predict_note(str(junk), name, None, s) == ""
    table = predict.on_many([img, str(junk)], name, s)
    assert list(table["predicted"])[1] == "" and list(table["next best"])[1] == ""  # errors in their own column
    assert "not an image" in list(table["error"])[1] and list(table["error"])[0] == ""
    out = predict.on_many_csv([img, str(junk)], name, s)
    assert out["pfiles"] is None and out["pcsv"]["visible"] is True  # the upload box empties: the next replaces
    assert open(out["pcsv"]["value"]).read().splitlines()[0] == ",".join(predict.TABLE)
    assert predict.on_examples(name, s)["visible"] is False  # the example crests are of other classes


def test_export_and_import_a_model(trained, ui):
    s, name, _ = trained
    zpath = predict.on_export(s, L1)
    assert zpath.endswith(".zip") and zipfile.is_zipfile(zpath)
    with pytest.raises(gr.Error, match="Pick a model first"):
        predict.on_export(s, "")
    assert predict.on_imported(s) == (gr.skip(), gr.skip())  # nothing imported yet: the pickers stay
    md = predict.on_import(s, zpath)
    assert md.startswith("Imported **") and s.imported
    new = s.imported
    out = known(predict.on_imported(s), ui)
    assert out["pmodel"]["value"] == out["emodel"]["value"] == new and s.imported is None
    junk = Path(tempfile.mkdtemp()) / "junk.zip"  # an 'upload' that is not a zip
    junk.write_bytes(Path(__file__).read_bytes())
    with pytest.raises(gr.Error, match="Not a model zip"):
        predict.on_import(s, str(junk))
    tab = known(predict.on_models_tab(s, "gone", new), ui)
    assert tab["pmodel"]["value"] == new and tab["emodel"]["value"] == s.reg.default(s.data)


# ================================================================================ Explain, calibrate, unknown

def with_unknown_test(s: Session, name: str, accept: float) -> str:
    """A copy of a trained model saved with an unknown-input test that accepts `accept` of the validation images."""
    from logoapp import store
    from logoapp.calibrate import fit_calibration
    model, meta = s.reg.get(name, s.data)
    add, extra = fit_calibration(model, s.data.ds, accept)
    new = f"{name}-ood{int(accept * 100)}"
    store.save(model, {**meta, **add, "name": new}, s.reg.folder / new, extra=extra)
    return new


def test_predict_shows_the_heatmap_and_explains_another_class(trained, ui):
    s, name, _ = trained
    img = s.data.ds.items[0]
    for model in (L1, name):
        out = known(predict.on_look(img, model, True, s), ui)
        heat = out["pheat"]["value"]
        assert heat.dtype.name == "uint8" and heat.shape == (16, 16, 3) and out["pheat"]["visible"] is True
        assert out["pclass"]["value"] in s.data.ds.vocab and out["pclass"]["choices"] == s.data.ds.vocab
        assert f"found **{out['pclass']['value']}**" in out["pheat_md"]
    why_not = known(predict.on_look_class(img, name, True, "class2", s), ui)
    assert "found **class2**" in why_not["pheat_md"] and why_not["pheat"]["value"] is not None
    off = known(predict.on_look_class(img, name, False, "class2", s), ui)
    assert off["pheat"]["visible"] is False and off["pheat_md"] == ""
    assert known(predict.on_look(None, name, True, s), ui)["pheat"]["value"] is None


def test_predict_unknown_note_follows_the_threshold_slider(trained):
    s, name, _ = trained
    img = s.data.ds.items[0]
    assert predict.on_threshold(L1, s)["visible"] is False  # no unknown-input test: never unknown, no slider
    assert "unknown" not in predict.on_predict_note(img, name, 0.0, s)
    ood = with_unknown_test(s, name, 0.95)
    slider = predict.on_threshold(ood, s)
    assert slider["visible"] is True and slider["minimum"] <= slider["value"] <= slider["maximum"]
    normal = predict.on_predict_note(img, ood, slider["value"], s)
    far = predict.on_predict_note(img, ood, slider["minimum"] - 1, s)  # this session moved the slider right down
    assert "score" in normal and far.startswith("**unknown** — closest: **") and "%)" in far
    assert "squished to 16×16" in far
    assert predict.on_predict(img, ood, s) == predict.on_predict(img, ood, s) and isinstance(
        predict.on_predict(img, ood, s), dict)  # the /predict API still answers {label: probability}


def test_evaluate_shows_calibration_and_the_heatmap_of_a_clicked_image(trained, ui):
    s, name, _ = trained
    out = known(evaluate.on_eval(s, name), ui)
    assert "ECE" in out["calib_md"] and "T = " in out["calib_md"] and out["reliab"] is not None
    assert out["theat"]["visible"] is False
    img, md = evaluate.on_top_pick(s, name, SimpleNamespace(index=0))
    assert img["visible"] is True and img["value"].shape == (16, 16, 3) and "predicted" in md and "found **" in md
    assert evaluate.on_top_pick(s, name, SimpleNamespace(index=999)) == (gr.skip(), gr.skip())
    img, md = evaluate.on_cell_pick(s, name, "class0", "class0", SimpleNamespace(index=0))
    assert img["visible"] is True and "actual class0, predicted class0" in md
    assert evaluate.on_top_pick(s, "never-evaluated", SimpleNamespace(index=0)) == (gr.skip(), gr.skip())
    img, md = evaluate.on_top_pick(Session(s.shared), L1, SimpleNamespace(index=0))  # the baseline: |image - ideal|
    assert "difference from the ideal images" in md


def test_evaluate_shows_precision_recall_f1(trained):
    from logoapp import views
    s, name, _ = trained
    res, meta = s.evals.get(name) or evaluate.evaluation(s, name)
    real = views.eval_views(res, meta, s.data, name, name)
    assert list(real["eval_table"].columns) == ["class", "accuracy %", "precision %", "recall %", "F1 %", "support"]
    assert "macro F1" in real["eval_md"] and "balanced accuracy" in real["eval_md"]
    vocab = s.data.ds.vocab
    richer = SimpleNamespace(**{k: getattr(res, k) for k in ("vocab", "probs", "targs", "idx", "preds", "accuracy",
                                                             "per_class", "confusion", "n")})
    richer.most_confused, richer.top_losses, richer.cell = res.most_confused, res.top_losses, res.cell
    plain = views.eval_views(richer, meta, s.data, name, name)  # a result without them: the columns stay away
    assert "precision %" not in plain["eval_table"].columns and "macro F1" not in plain["eval_md"]
    richer.precision = richer.recall = richer.f1 = {c: 0.5 for c in vocab}
    richer.support, richer.macro_f1, richer.balanced_accuracy = {c: 2 for c in vocab}, 0.5, 0.75
    v = views.eval_views(richer, meta, s.data, name, name)
    assert list(v["eval_table"].columns) == ["class", "accuracy %", "precision %", "recall %", "F1 %", "support"]
    assert "macro F1 **50.0%**" in v["eval_md"] and "balanced accuracy **75.0%**" in v["eval_md"]
