"""Predictor: every kind of input gives the same answer for the same picture; bad inputs never stop a batch."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from logoapp import store
from logoapp.data import open_dataset
from logoapp.ideal import fit as fit_pixel
from logoapp.images import ImageError, decode
from logoapp.predict import Predictor


@pytest.fixture(scope="module")
def pred(trained):
    return Predictor.load(trained[0])


def noise_rgba(size, seed=0):
    """Every byte value appears, so float round trips and resizing are really exercised."""
    a = np.random.default_rng(seed).integers(0, 256, (size, size, 4), dtype=np.uint8)
    a[..., 3] = np.where(a[..., 3] > 60, 255, a[..., 3])
    return a


@pytest.mark.parametrize("size", [32, 48])  # the model's own size (no resize) and a resize
def test_all_input_kinds_agree(pred, tmp_path, size):
    a = noise_rgba(size)
    path = tmp_path / "x.png"
    Image.fromarray(a, "RGBA").save(path)
    ref = pred.predict(path)
    inputs = {"str": str(path), "pil": Image.open(path), "bytes": path.read_bytes(), "array": a,
              "float array": a.astype(np.float64) * (1 / 255), "float32 array": a.astype(np.float32) / 255}
    for name, src in inputs.items():
        got = pred.predict(src)
        assert list(got) == list(ref), name
        assert np.array_equal(list(got.values()), list(ref.values())), name
    assert np.array_equal(pred.prepare(a), decode(path, 32, 4))


def test_probabilities_sorted_and_sum_to_one(pred, trained):
    for f in sorted((trained[1] / "class2").glob("*.png"))[:3]:
        p = pred.predict(f)
        assert set(p) == set(pred.vocab)
        v = list(p.values())
        assert sum(v) == pytest.approx(1, abs=1e-5) and v == sorted(v, reverse=True) and all(0 <= x <= 1 for x in v)
        assert next(iter(p)) == "class2"  # the tiny classes are easy
    top = pred.predict(f, top=2)
    assert len(top) == 2 and list(top) == list(p)[:2]


def test_predict_matches_model_on_dataset(pred, trained):
    ds = open_dataset(trained[1], size=32, cache=False)
    probs = pred.probs(ds.images[:8])
    with torch.inference_mode():
        ref = torch.softmax(pred.model(torch.from_numpy(ds.images[:8])) / pred.temperature, 1).numpy()
    assert np.allclose(probs, ref, atol=1e-6)
    for i, item in enumerate(ds.items[:8]):
        p = pred.predict(item)
        assert np.allclose([p[c] for c in pred.vocab], probs[i], atol=1e-6)


def test_predict_many_with_bad_files(pred, trained, tmp_path):
    good = sorted((trained[1] / "class1").glob("*.png"))[:3]
    bad = tmp_path / "bad.png"
    bad.write_text("<html>oops</html>")
    missing = tmp_path / "missing.png"
    srcs = [good[0], bad, good[1], missing, Image.open(good[2]), noise_rgba(32)]
    res = pred.predict_many(srcs, bs=2)
    assert len(res) == len(srcs)
    assert res[1] == {"path": str(bad), "error": res[1]["error"]} and "HTML" in res[1]["error"]
    assert set(res[3]) == {"path", "error"} and res[3]["path"] == str(missing)
    for i in (0, 2, 4, 5):
        assert "error" not in res[i] and res[i]["label"] == next(iter(res[i]["probs"]))
        assert sum(res[i]["probs"].values()) == pytest.approx(1, abs=1e-5)
    assert res[0]["path"] == str(good[0]) and res[4]["path"] is None
    assert res[0]["probs"] == pytest.approx(pred.predict(good[0]))
    assert res[4]["probs"] == pytest.approx(pred.predict(good[2]))
    assert pred.predict_many([]) == []
    assert [set(r) for r in pred.predict_many([bad], top=1)] == [{"path", "error"}]
    assert len(pred.predict_many(good, top=1)[0]["probs"]) == 1


@pytest.mark.parametrize("shape", [(32, 32, 2), (32, 32, 5), (4, 32, 32, 3), (32,)])
def test_bad_arrays_refused(pred, shape):
    with pytest.raises(ImageError):
        pred.prepare(np.zeros(shape, np.uint8))


def test_grey_and_rgb_inputs(pred):
    grey = np.full((40, 40), 128, np.uint8)
    assert pred.prepare(grey).shape == (32, 32, 4)
    assert (pred.prepare(grey)[..., 3] == 255).all()
    rgb = np.zeros((32, 32, 3), np.uint8)
    assert np.array_equal(pred.prepare(rgb), np.dstack([rgb, np.full((32, 32), 255, np.uint8)]))
    p = pred.predict(Image.new("RGB", (20, 20), (30, 60, 200)))
    assert sum(p.values()) == pytest.approx(1, abs=1e-5)


def test_bytes_of_bad_image_raise_image_error(pred):
    with pytest.raises(ImageError):
        pred.predict(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageError):
        pred.predict(io.BytesIO(b"x").getvalue()[:0])


def test_pixel_similarity_through_the_predictor(tiny4, tmp_path):
    ds = open_dataset(tiny4, size=16)
    model = fit_pixel(ds, "l1")
    meta = {"arch": "pixel", "distance": "l1", "vocab": ds.vocab, "size": 16, "data_size": 16, "channels": ds.channels}
    p = Predictor.load(store.save(model, meta, tmp_path / "px"))
    from logoapp.ideal import predict_idx
    idx, _ = predict_idx(model, ds.images)
    res = p.predict_many(ds.items)
    assert [r["label"] for r in res] == [ds.vocab[i] for i in idx.tolist()]


@pytest.mark.parametrize("arch", ["linear", "mlp", "cnn", "resnet18"])
def test_inference_copy_gives_the_models_outputs(arch):
    """Batch-norm folding, channels-last and the flat loop change speed, not answers; the model is left alone."""
    from logoapp import models as M
    from logoapp.predict import FlatNet, inference_copy
    torch.manual_seed(0)
    model, _ = M.build(arch, 4, 3, 40, size=32, pretrained=False)
    model.train()
    x = torch.from_numpy(noise_rgba(40)[None].repeat(4, 0))
    model(x)  # one training step's worth of batch-norm statistics, so folding has something to fold
    model.eval()
    fast = inference_copy(model)
    assert isinstance(fast, FlatNet) and not any(isinstance(f, torch.nn.Identity) for f in fast.steps)
    with torch.inference_mode():
        assert torch.allclose(fast(x), model(x), atol=1e-4, rtol=1e-4)
    assert model.training is False and all(p.is_contiguous() for p in model.parameters())  # the original is untouched
    with pytest.raises(RuntimeError, match="cannot be trained"):
        fast.train()
