"""`logoapp` subcommands in-process (plus two real `python -m logoapp` runs): JSON shapes, errors, round trips."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import as_old_folder, make_folder
from logoapp.cli import main
from logoapp.data import open_dataset
from logoapp.ideal import baseline
from logoapp.predict import Predictor

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_json(out: str):
    """stdout must be exactly one JSON document."""
    return json.loads(out)


def assert_error(rc, out, err, *words):
    assert rc != 0
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("logoapp: error: "), err
    for w in words:
        assert w in lines[0], lines[0]
    assert out == ""


@pytest.fixture
def messy4(tmp_path):
    root = make_folder(tmp_path / "d", n_classes=4, per_class=10)
    (root / "class0" / "broken.png").write_bytes(b"")
    (root / "class1" / "notes.txt").write_text("hi")
    return root


def test_synth_writes_folders(capsys, tmp_path):
    rc, out, err = run(capsys, "synth", tmp_path / "crests", "--classes", "2", "--per-class", "3", "--size", "32")
    assert rc == 0 and "Traceback" not in err
    dirs = sorted(p for p in (tmp_path / "crests").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(dirs) == 2
    for d in dirs:
        files = sorted(d.glob("*.png"))
        assert len(files) == 3 and all(Image.open(f).size == (32, 32) for f in files)
    assert str(tmp_path / "crests") in out


def test_synth_errors(capsys, tmp_path):
    assert_error(*run(capsys, "synth", tmp_path / "x", "--classes", "0"))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("precious")
    assert_error(*run(capsys, "synth", tmp_path / "taken", "--classes", "2", "--per-class", "2"))
    assert (tmp_path / "taken" / "mine.txt").read_text() == "precious"
    assert_error(*run(capsys, "synth", tmp_path / "y", "--classes", "2", "--per-class", "0"))


def test_info_json(capsys, messy4):
    rc, out, err = run(capsys, "info", messy4, "--json", "--size", "16")
    assert rc == 0
    s = one_json(out)
    assert set(s) >= {"root", "n_images", "n_classes", "vocab", "counts", "image_size", "channels", "n_train",
                      "n_valid", "n_test", "presplit", "sizes", "modes", "bad", "notes"}
    assert s["n_images"] == 40 and s["n_classes"] == 4 and s["image_size"] == 16 and s["channels"] == 4
    assert s["n_train"] + s["n_valid"] == 40
    assert sorted(b["path"] for b in s["bad"]) == sorted([str(messy4 / "class0" / "broken.png"),
                                                          str(messy4 / "class1" / "notes.txt")])
    assert all(set(b) == {"path", "reason"} and b["reason"] for b in s["bad"])
    rc, out, _ = run(capsys, "info", messy4, "--size", "16")
    assert rc == 0 and "class0" in out and "broken.png" in out and "empty file" in out


def test_baseline_json(capsys, messy4):
    rc, out, err = run(capsys, "baseline", messy4, "--json", "--size", "16", "--distance", "rmse", "--seed", "3")
    assert rc == 0
    r = one_json(out)
    assert set(r) >= {"accuracy", "per_class", "n_train", "n_valid", "skipped"}
    ref = baseline(open_dataset(messy4, size=16, seed=3), "rmse")
    assert r["accuracy"] == pytest.approx(ref["accuracy"]) and r["per_class"] == pytest.approx(ref["per_class"])
    assert (r["n_train"], r["n_valid"]) == (ref["n_train"], ref["n_valid"]) == (32, 8)
    assert {s["path"]: s["reason"] for s in r["skipped"]}[str(messy4 / "class0" / "broken.png")].startswith("empty")
    assert all(set(s) == {"path", "reason"} for s in r["skipped"])
    rc, out, _ = run(capsys, "baseline", messy4, "--size", "16")
    assert rc == 0 and "accuracy" in out


def test_data_errors(capsys, tmp_path):
    assert_error(*run(capsys, "info", tmp_path / "missing", "--json"), "no such folder")
    assert_error(*run(capsys, "baseline", tmp_path / "missing"), "no such folder")
    (tmp_path / "empty").mkdir()
    assert_error(*run(capsys, "info", tmp_path / "empty"), "no class folders")
    one = make_folder(tmp_path / "one", n_classes=1, per_class=3)
    assert_error(*run(capsys, "baseline", one, "--json"), "only one class")
    assert_error(*run(capsys, "train", one, "--model", "linear", "--json"), "only one class")
    f = tmp_path / "file.png"
    f.write_bytes(b"x")
    assert_error(*run(capsys, "info", f), "not a folder")
    assert_error(*run(capsys, "info", tmp_path / "empty", "--size", "2"), "size")


def test_model_errors(capsys, tmp_path, tiny):
    assert_error(*run(capsys, "eval", tmp_path / "nomodel", tiny, "--json"), "no such model folder")
    assert_error(*run(capsys, "predict", tmp_path / "nomodel", tiny / "class0" / "class0_000.png"), "no such model")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.json").write_text("{")
    assert_error(*run(capsys, "predict", tmp_path / "broken", "x.png", "--json"), "corrupt model.json")


def test_usage_errors_exit_nonzero(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "somewhere", "--model", "nope"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert "logoapp" in capsys.readouterr().out


def test_train_eval_predict_round_trip(capsys, tmp_path):
    data = make_folder(tmp_path / "d", n_classes=4, per_class=12)
    model = tmp_path / "models" / "lin"
    rc, out, err = run(capsys, "train", data, "--model", "linear", "--epochs", "2", "--size", "32", "--bs", "16",
                       "--out", model, "--json")
    assert rc == 0, err
    t = one_json(out)
    assert set(t) >= {"accuracy", "per_class", "history", "seconds", "images_per_second", "model_path"}
    assert not any(k.startswith("_") for k in t)
    assert len(t["history"]) == 2
    for h in t["history"]:
        assert set(h) >= {"train_loss", "valid_loss", "accuracy", "seconds"}
    assert t["model_path"] == str(model) and (model / "model.json").is_file()
    assert t["images_per_second"] > 0 and set(t["per_class"]) <= {f"class{k}" for k in range(4)}

    rc, out, err = run(capsys, "eval", model, data, "--json")
    assert rc == 0, err
    e = one_json(out)
    assert set(e) >= {"accuracy", "per_class", "confusion"}
    assert e["confusion"]["labels"] == [f"class{k}" for k in range(4)]
    m = e["confusion"]["matrix"]
    assert len(m) == 4 and all(len(r) == 4 for r in m) and sum(map(sum, m)) == e["n"] == 8
    assert e["accuracy"] == pytest.approx(t["accuracy"])  # same default seed and split as training
    assert e["per_class"] == pytest.approx(t["per_class"])
    check_class_metrics(e)
    saved = json.loads((model / "model.json").read_text())
    assert t["temperature"] == saved["temperature"] and t["unknown"] == saved["unknown"]
    worst = e["top_losses"][0]  # probabilities as the calibrated model answers
    assert worst["probability"] == pytest.approx(Predictor.load(model).predict(worst["path"])[worst["predicted"]],
                                                 abs=1e-5)

    rc, out, _ = run(capsys, "eval", model, data, "--json", "--split", "all")
    assert rc == 0 and one_json(out)["n"] == 48

    good = [data / "class0" / "class0_000.png", data / "class3" / "class3_005.png"]
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    rc, out, err = run(capsys, "predict", model, good[0], bad, good[1], "--json")
    assert rc == 0, err
    p = one_json(out)
    assert isinstance(p, list) and len(p) == 3
    assert set(p[1]) == {"path", "error"} and p[1]["path"] == str(bad) and "text file" in p[1]["error"]
    for r, g in zip((p[0], p[2]), good):
        assert set(r) == {"path", "label", "probs", "unknown", "score"} and r["path"] == str(g)
        assert r["unknown"] is False and isinstance(r["score"], float)
        assert r["label"] == next(iter(r["probs"])) and sum(r["probs"].values()) == pytest.approx(1, abs=1e-5)
    rc, out, _ = run(capsys, "predict", model, *good, "--top", "1", "--json")
    assert rc == 0 and all(len(r["probs"]) == 1 for r in one_json(out))

    rc, out, err = run(capsys, "predict", model, bad, tmp_path / "nothing.png", "--json")
    assert rc != 0 and "Traceback" not in err  # nothing succeeded
    assert [set(r) for r in one_json(out)] == [{"path", "error"}] * 2

    rc, out, _ = run(capsys, "predict", model, good[0], bad)
    assert rc == 0 and "error" in out and str(good[0]) in out

    # another folder with RGB images, an unknown class and fewer classes: scored on what the model knows
    rgb = tmp_path / "rgb"
    for k in (0, 2, 9):
        (rgb / f"class{k}").mkdir(parents=True)
        for i in range(3):
            src = data / f"class{k % 4}" / f"class{k % 4}_{i:03d}.png"
            Image.open(src).convert("RGB").save(rgb / f"class{k}" / f"{i}.jpg")
    rc, out, err = run(capsys, "eval", model, rgb, "--json", "--split", "all")
    assert rc == 0, err
    assert one_json(out)["n"] == 6


def check_class_metrics(e: dict) -> None:
    """eval --json's precision, recall, f1, support, macro_f1 and balanced_accuracy against scikit-learn, on the
    items its own confusion matrix counts."""
    from sklearn import metrics as SK
    labels, m = e["confusion"]["labels"], np.array(e["confusion"]["matrix"])
    targs = np.repeat(np.repeat(np.arange(len(m)), len(m)), m.flatten())
    preds = np.repeat(np.tile(np.arange(len(m)), len(m)), m.flatten())
    present = sorted(set(targs.tolist()))
    p, r, f, n = SK.precision_recall_fscore_support(targs, preds, labels=present, zero_division=0)
    names = [labels[i] for i in present]
    assert e["precision"] == pytest.approx(dict(zip(names, p))) and e["recall"] == pytest.approx(dict(zip(names, r)))
    assert e["f1"] == pytest.approx(dict(zip(names, f))) and e["support"] == dict(zip(names, n.tolist()))
    assert e["macro_f1"] == pytest.approx(SK.f1_score(targs, preds, labels=present, average="macro", zero_division=0))
    assert e["balanced_accuracy"] == pytest.approx(SK.balanced_accuracy_score(targs, preds))


def test_explain_and_unknown(capsys, trained, tmp_path):
    folder, data = trained
    imgs = [data / "class0" / "class0_000.png", data / "class2" / "class2_001.png"]
    out = tmp_path / "heat"
    rc, stdout, err = run(capsys, "explain", folder, *imgs, "--out", out, "--json")
    assert rc == 0, err
    rows = one_json(stdout)
    assert [set(r) for r in rows] == [{"path", "label", "overlay"}] * 2
    assert [r["path"] for r in rows] == list(map(str, imgs))
    pred = Predictor.load(folder)
    for r, f in zip(rows, imgs):
        assert r["label"] == next(iter(pred.predict(f)))
        assert Image.open(r["overlay"]).size == (32, 32) and Path(r["overlay"]).parent == out
    rc, stdout, err = run(capsys, "explain", folder, imgs[0], imgs[0], "--out", out, "--class", "class3")
    assert rc == 0 and stdout.count("class3 ->") == 2 and len(list(out.glob("*.png"))) == 3  # same name: numbered
    assert_error(*run(capsys, "explain", folder, imgs[0], "--out", out, "--class", "nope"), "no class 'nope'")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    rc, stdout, err = run(capsys, "explain", folder, bad, "--out", out, "--json")
    assert rc != 0 and set(one_json(stdout)[0]) == {"path", "error"}

    sure = as_old_folder(folder, tmp_path / "old")  # saved before the unknown test existed: never unknown
    rc, stdout, _ = run(capsys, "predict", sure, *imgs, "--json")
    assert rc == 0 and [r["unknown"] for r in one_json(stdout)] == [False, False]
    strict = shutil.copytree(folder, tmp_path / "strict")
    meta = json.loads((strict / "model.json").read_text())
    (strict / "model.json").write_text(json.dumps({**meta, "unknown": {**meta["unknown"], "threshold": -1e9}}))
    rc, stdout, _ = run(capsys, "predict", strict, *imgs, "--json")
    assert rc == 0 and [r["unknown"] for r in one_json(stdout)] == [True, True]
    rc, stdout, _ = run(capsys, "predict", strict, imgs[0])
    label = next(iter(pred.predict(imgs[0])))
    assert rc == 0 and f"unknown \u2014 closest: {label} (" in stdout


def test_train_text_output(capsys, tiny, tmp_path):
    rc, out, err = run(capsys, "train", tiny, "--model", "linear", "--epochs", "1", "--size", "16", "--bs", "8",
                       "--models", tmp_path / "models")
    assert rc == 0, err
    assert "epoch 1/1" in out and "epoch 0" not in out and "%" in out and "saved to" in out  # counted from 1
    assert (tmp_path / "models" / "linear" / "model.json").is_file()


@pytest.mark.timeout(120)
def test_real_subprocess(messy4, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ok = subprocess.Popen([sys.executable, "-m", "logoapp", "info", str(messy4), "--json", "--size", "16"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    bad = subprocess.Popen([sys.executable, "-m", "logoapp", "baseline", str(tmp_path / "missing"), "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    out, err = ok.communicate(timeout=110)
    assert ok.returncode == 0, err
    assert json.loads(out)["n_images"] == 40
    out, err = bad.communicate(timeout=110)
    assert_error(bad.returncode, out, err, "no such folder")
