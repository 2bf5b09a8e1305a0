"""ONNX and TorchScript exports: the preprocessing inside the graph, the parity check against logoapp's predictor,
`logoapp predict` on an export, and the README's onnxruntime snippet in a process that never imports logoapp."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_folder, make_image
from logoapp import export as X
from logoapp import parity, store, synth
from logoapp.cli import main
from logoapp.images import resize
from logoapp.predict import Predictor

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def rungs(tmp_path_factory):
    """Small models of every rung, trained one epoch on 4 classes of 32 px RGBA images; the pixel baseline saved."""
    from logoapp import ideal
    from logoapp.data import open_dataset
    from logoapp.train import TrainConfig, fit
    root = tmp_path_factory.mktemp("rungs")
    data = make_folder(root / "data", n_classes=4, per_class=16)
    ds = open_dataset(data, size=32, cache=False)
    for arch in ("linear", "cnn"):
        fit(ds, TrainConfig(arch, epochs=1, bs=16), out=root / arch)
    b = ideal.fit(ds, "l1")
    store.save(b, {"arch": "pixel", "distance": "l1", "vocab": ds.vocab, "size": ds.size, "data_size": ds.size,
                   "channels": ds.channels}, root / "pixel")
    return root, data


# ============================================================================================= the graph's squish

@pytest.mark.parametrize("shape", [(40, 40), (57, 90), (200, 31)])
@pytest.mark.parametrize("channels", [3, 4])
def test_squish_is_the_image_pipelines_resize(shape, channels):
    """The in-graph squish against images.resize (torch's uint8 kernel on premultiplied RGBA): same to one level on
    at least 99% of the values; an image already at the size passes unchanged, colour under alpha 0 included."""
    img = np.asarray(synth.crest(3, 1, 0, max(shape)).resize(shape[::-1], Image.BILINEAR))
    img = img if channels == 4 else np.ascontiguousarray(img[..., :3])
    ref = resize(img, 40).astype(int)
    got = X.squish(torch.from_numpy(img.copy())[None], 40)[0].permute(1, 2, 0).numpy().astype(int)
    if shape == (40, 40):
        junk = img.copy()
        if channels == 4:
            junk[..., :3][junk[..., 3] == 0] = 77  # colour that only an identity pass keeps
        same = X.squish(torch.from_numpy(junk)[None], 40)[0].permute(1, 2, 0).numpy()
        assert np.array_equal(same, junk)
    opaque = ref[..., 3] > 8 if channels == 4 else np.ones(ref.shape[:2], bool)  # low alpha amplifies a level
    assert (np.abs(ref - got)[opaque] <= 1).mean() >= 0.99
    assert (ref != got).mean() < 0.02


# ============================================================================================= exports of every rung

@pytest.mark.parametrize("arch", ["pixel", "linear", "cnn"])
def test_torchscript_export_of_each_rung_agrees(rungs, arch, tmp_path):
    root, data = rungs
    out = X.export_folder(root / arch, "torchscript", tmp_path / f"{arch}.torchscript")
    p = Predictor.load(root / arch)
    report = parity.check(out, p, data)
    assert report.ok and report.agreement == 1.0 and report.max_diff < 1e-3, report.line()
    assert {s.name.split(" ", 1)[1] for s in report.sets} == {"validation images", "original files"}
    r = X.Runner(out)
    assert r.meta["classes"] == p.vocab and r.meta["temperature"] == pytest.approx(p.temperature)
    batch = np.stack([np.asarray(make_image(k, 9, 77)) for k in range(3)])  # another batch size and image size
    assert r.probs(batch).shape == (3, len(p.vocab))
    np.testing.assert_allclose(r.probs(batch).sum(1), 1, atol=1e-5)


def test_onnx_export_cli_and_predict(rungs, tmp_path, capsys):
    """`logoapp export --format onnx` checks and writes; `logoapp predict FILE.onnx` answers as the model folder."""
    root, data = rungs
    model = tmp_path / "cnn"
    shutil.copytree(root / "cnn", model)
    rc, out, err = run(capsys, "export", model, "--format", "onnx", "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert res["out"] == str(model / "model.onnx") and (model / "model.onnx").is_file()
    assert res["parity"]["ok"] and res["parity"]["agreement"] == 1.0 and res["parity"]["n"] >= 70
    diffs = {st["name"]: st["max_diff"] for st in res["parity"]["sets"]}
    assert diffs["built-in crests"] < 1e-4 and diffs["random images"] < 1e-4, diffs  # at the stored size: same maths
    assert max(diffs.values()) < 0.05, diffs  # other sizes: the export's squish, within a level of logoapp's decoder
    assert not list(model.glob(".*")), "the checking file is left behind"
    images = sorted(str(p) for p in data.rglob("*.png"))[::7]
    rc, out, err = run(capsys, "predict", model / "model.onnx", *images, "--json")
    assert rc == 0, err
    rows = json.loads(out)
    want = Predictor.load(model).predict_many(images)
    assert [r["label"] for r in rows] == [w["label"] for w in want]
    for r, w in zip(rows, want):
        assert r["unknown"] is False
        assert max(abs(r["probs"][k] - w["probs"][k]) for k in w["probs"]) < 1e-4
    rc, out, err = run(capsys, "predict", tmp_path / "nothing.onnx", images[0])
    assert rc == 1 and err.startswith("logoapp: error: cannot load") and "Traceback" not in err


def test_a_disagreeing_export_is_refused(rungs, tmp_path, capsys, monkeypatch):
    """Below 99.9% top-1 agreement: exit status 1, one clear line, no file."""
    root, _ = rungs
    monkeypatch.setattr(X.Runner, "probs", _rolled)
    out = tmp_path / "linear.torchscript"
    rc, stdout, err = run(capsys, "export", root / "linear", "--format", "torchscript", "--out", out)
    assert rc == 1 and stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "does not predict as logoapp does" in lines[0] and "agreement" in lines[0], err
    assert not out.exists() and not list(tmp_path.iterdir())


_real_probs = X.Runner.probs


def _rolled(self, xb):
    return np.roll(_real_probs(self, xb), 1, 1)  # every answer moved to the next class


def test_onnx_readme_snippet_runs_without_logoapp(rungs, tmp_path):
    """The README's onnxruntime snippet, run in a fresh interpreter in which importing logoapp fails, gives the
    class and probability logoapp's predictor gives, for an RGBA model and an image of another size."""
    root, _ = rungs
    onnx_file = X.export_folder(root / "cnn", "onnx", tmp_path / "m.onnx")
    img = tmp_path / "crest.png"
    make_image(2, 3, 90).save(img)
    code = readme_snippet()
    code = code.replace('"models/cnn/model.onnx"', repr(str(onnx_file))).replace('"crest.png"', repr(str(img)))
    guard = ("import sys\nclass NoLogoapp:\n    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] == 'logoapp': raise ImportError('logoapp must not be imported')\n"
             "sys.meta_path.insert(0, NoLogoapp())\n")
    tail = "\nassert not [m for m in sys.modules if m.startswith('logoapp')]\n"
    proc = subprocess.run([sys.executable, "-I", "-c", guard + code + tail], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    label, pct = proc.stdout.split()
    want = Predictor.load(root / "cnn").predict(img)
    top = next(iter(want))
    assert label == top and float(pct.rstrip("%")) == pytest.approx(100 * want[top], abs=0.2), (proc.stdout, want)


def readme_snippet() -> str:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    found = [b for b in blocks if "import onnxruntime" in b]
    assert len(found) == 1, "the README must show one onnxruntime snippet"
    return found[0]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["pixel", "linear", "mlp", "cnn", "cnn-wide-s", "resnet18", "resnet34"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_every_rung_exports_in_both_formats(tmp_path_factory, arch, fmt, capsys):
    """Every rung of the ladder (resnets from random init) exports and passes its check on data and on probes."""
    root = tmp_path_factory.getbasetemp() / "every-rung"
    data = root / "data"
    if not data.is_dir():
        make_folder(data, n_classes=3, per_class=10)
    model = root / arch
    if not (model / "model.json").is_file():
        from logoapp import ideal
        from logoapp.data import open_dataset
        from logoapp.train import TrainConfig, fit
        ds = open_dataset(data, size=32, cache=False)
        if arch == "pixel":
            store.save(ideal.fit(ds), {"arch": "pixel", "distance": "l1", "vocab": ds.vocab, "size": 32,
                                       "data_size": 32, "channels": 4}, model)
        else:
            fit(ds, TrainConfig(arch, epochs=1, bs=16, pretrained=False), out=model)  # no download in tests
    for extra in ([], ["--data", data]):
        rc, out, err = run(capsys, "export", model, "--format", fmt, "--json", "--out",
                           root / f"{arch}-{len(extra)}.{fmt}", *extra)
        assert rc == 0, err
        assert json.loads(out)["parity"]["agreement"] >= parity.AGREEMENT
