"""Calibration and unknown inputs: temperature scaling, ECE and reliability data against references; the unknown
test flags images of an unseen kind; model folders saved before either existed load and answer as before."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import as_old_folder, make_image
from corner_data import SIZE, corner_dataset, corner_images, trained_cnn
from logoapp import calibrate as C
from logoapp import ood, store
from logoapp.ideal import fit as fit_pixel
from logoapp.images import composite
from logoapp.predict import Predictor
from logoapp.train import TrainConfig, fit


def sampled(n: int = 4000, k: int = 4, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Logits and labels drawn from softmax(logits): perfectly calibrated at T = 1."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g) * 2
    y = torch.multinomial(F.softmax(z, 1), 1, generator=g)[:, 0].numpy()
    return z, y


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_temperature_recovers_a_known_scale(scale):
    z, y = sampled()
    t = C.temperature_from_logits(z * scale, y)
    assert t == pytest.approx(scale, rel=0.1)


def test_search_finds_the_minimum_of_a_fine_grid():
    z, y = sampled(800, 3, seed=1)
    z = z * 2.5 + torch.randn(800, 3) * 0.5
    t = C.temperature_from_logits(z, y)
    s = C.platt_smoothing(800, 3)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 1001))
    best = min(C.nll(z, y, g, s) for g in grid)
    assert C.nll(z, y, t, s) <= best + 1e-9
    assert C.temperature_from_logits(torch.zeros(0, 3), []) == 1.0


def test_a_validation_set_without_errors_still_gets_a_finite_temperature():
    """Plain NLL would push T to 0 (100% on everything); Platt's targets stop at about (n + 1) / (n + 2)."""
    y = np.arange(40) % 2
    z = torch.zeros(40, 2)
    z[torch.arange(40), torch.as_tensor(y)] = 9.0  # all right, 99.99% sure
    t = C.temperature_from_logits(z, y)
    assert C.T_RANGE[0] < t < C.T_RANGE[1]
    conf = float(F.softmax(z / t, 1).max(1).values.mean())
    assert conf == pytest.approx(41 / 42, abs=0.005)


def test_ece_and_reliability_match_loops():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5) * 0.3, 500)
    p[0] = [1, 0, 0, 0, 0]  # confidence exactly 1: the last bin
    p[1] = [1 / 15 * 3, 0.6, 0.2, 0, 0]  # an edge between bins: bins are (lo, hi]
    y = rng.integers(0, 5, 500)
    r = C.reliability(p, y)
    assert sum(r["count"]) == 500 and len(r["edges"]) == 16
    conf, pred = p.max(1), p.argmax(1)
    total = 0.0
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        inside = [i for i in range(500) if (lo < conf[i] <= hi) or (b == 0 and conf[i] == 0)]
        assert r["count"][b] == len(inside)
        if inside:
            acc = np.mean([pred[i] == y[i] for i in inside])
            mc = np.mean([conf[i] for i in inside])
            assert r["accuracy"][b] == pytest.approx(acc) and r["confidence"][b] == pytest.approx(mc)
            total += len(inside) / 500 * abs(acc - mc)
        else:
            assert r["accuracy"][b] is None and r["confidence"][b] is None
    assert C.ece(p, y) == pytest.approx(total)
    json.dumps(r)  # plain data


def test_temperature_lowers_the_nll_of_an_overconfident_model(capsys):
    """A linear model trained without weight decay on labels a fifth of which are wrong: sure of itself, often wrong."""
    ds = corner_dataset(160, seed=0, flip=0.2)
    model = fit(ds, TrainConfig("linear", epochs=5, lr=1e-2, bs=16, size=32, aug=False, seed=1, wd=0.0)).net
    t = C.fit_temperature(model, ds)
    va = ds.idx("valid")
    rep = C.report(C.get_logits(model, ds.images[va]), ds.labels[va], t)
    with capsys.disabled():
        print(f"\noverconfident linear model: T = {t:.2f}, validation NLL {rep['before']['nll']:.3f} -> "
              f"{rep['after']['nll']:.3f}, ECE {rep['before']['ece']:.3f} -> {rep['after']['ece']:.3f}")
    assert t > 1.5
    assert rep["after"]["nll"] < 0.8 * rep["before"]["nll"]
    json.dumps(rep)


def test_fit_calibration_gives_what_a_model_folder_keeps(tmp_path):
    """One call after training: model.json entries and tensors, the same answers before and after saving."""
    ds, model, meta = trained_cnn()
    add, extra = C.fit_calibration(model, ds)
    assert set(add) == {"temperature", "calibration", "unknown"} and set(extra) == {ood.FEATS}
    assert add["calibration"]["n"] == len(ds.idx("valid")) and add["temperature"] > 0
    json.dumps(add)
    folder = store.save(model, {**meta, **add}, tmp_path / "cnn", extra=extra)
    before, after = Predictor(model, {**meta, **add}, extra=extra), Predictor.load(folder)
    assert after.temperature == add["temperature"]
    x = corner_images(2, seed=11)[0]
    for a, b in zip(before.predict_many(list(x), with_unknown=True), after.predict_many(list(x), with_unknown=True)):
        assert a["label"] == b["label"] and a["unknown"] == b["unknown"]
        assert a["probs"] == pytest.approx(b["probs"], abs=1e-5) and a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_predictor_applies_the_stored_temperature(trained, tmp_path):
    folder = as_old_folder(trained[0], tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    x = np.array(make_image(1, 3, 32))
    plain = Predictor.load(folder)
    with torch.inference_mode():
        z = plain.fast(torch.from_numpy(x[None])).float()
    assert plain.temperature == 1.0
    assert np.array_equal(plain.probs(x[None]), F.softmax(z, 1).numpy())  # no temperature: exactly as before
    (folder / "model.json").write_text(json.dumps({**meta, "temperature": 2.5}))
    warm = Predictor.load(folder)
    assert np.allclose(warm.probs(x[None]), F.softmax(z / 2.5, 1).numpy(), atol=1e-6)
    assert list(warm.predict(x)) == list(plain.predict(x))  # same order: temperature never changes the answer
    for bad in (0, -1, "2", float("nan"), True, 1e9):
        (folder / "model.json").write_text(json.dumps({**meta, "temperature": bad}))
        with pytest.raises(store.ModelError, match="temperature"):
            store.read_meta(folder)


def unseen_images(n: int = 48) -> dict[str, np.ndarray]:
    """Images of kinds the corner model never saw: the test crests (shapes on white), plain noise, flat colours."""
    rng = np.random.default_rng(7)
    return {"crests": np.stack([composite(np.asarray(make_image(j % 4, j, SIZE))) for j in range(n)]),
            "noise": rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8),
            "flat": np.repeat(np.repeat(rng.integers(0, 256, (n, 1, 1, 3), dtype=np.uint8), SIZE, 1), SIZE, 2)}


def rate(pred: Predictor, images: np.ndarray) -> float:
    rows = pred.predict_many(list(images), with_unknown=True)
    return float(np.mean([r["unknown"] for r in rows]))


def test_unknown_flags_images_of_an_unseen_kind(tmp_path, capsys):
    ds, model, meta = trained_cnn()
    u = ood.fit_unknown(model, ds)
    m = u["meta"]
    feats = u["tensors"][ood.FEATS]
    assert m["method"] == "knn" and m["k"] == ood.K and m["accept"] == 0.95 and m["n_fit"] == len(ds.idx("valid"))
    assert feats.dtype == torch.float16 and tuple(feats.shape) == (m["n_features"], m["dim"]) == (120, 256)
    assert m["accepted"] == pytest.approx(0.95, abs=0.03)
    json.dumps(m)
    folder = store.save(model, {**meta, "unknown": m}, tmp_path / "cnn", extra=u["tensors"])
    saved = json.loads((folder / "model.json").read_text())
    assert saved["format"] == store.FORMAT_EXTRA and saved["unknown"] == m
    pred = Predictor.load(folder)
    fresh = corner_images(64, seed=99)[0]  # new images of the training kind
    rates = {"validation": rate(pred, ds.images[ds.idx("valid")]), "fresh": rate(pred, fresh)}
    rates.update({k: rate(pred, v) for k, v in unseen_images().items()})
    with capsys.disabled():
        print("\nshare answered unknown: " + ", ".join(f"{k} {v:.2f}" for k, v in rates.items()))
    assert rates["validation"] <= 0.1 and rates["fresh"] <= 0.25
    assert rates["crests"] >= 0.8 and rates["noise"] >= 0.8 and rates["flat"] >= 0.8
    one = pred.predict(fresh[0], with_unknown=True)
    assert set(one) == {"probs", "label", "unknown", "score", "threshold"} and one["threshold"] == m["threshold"]
    assert one["probs"] == pred.predict(fresh[0]) and one["label"] == next(iter(one["probs"]))
    inmem = Predictor(model, {**meta, "unknown": m}, extra=u["tensors"])  # straight after training, before saving
    assert inmem.predict(fresh[0], with_unknown=True)["score"] == pytest.approx(one["score"], abs=1e-3)


def test_unknown_test_travels_in_a_model_zip(tmp_path):
    ds, model, meta = trained_cnn()
    u = ood.fit_unknown(model, ds, accept=0.9, per_class=8)
    assert u["meta"]["n_features"] == 16 and u["meta"]["accept"] == 0.9
    folder = store.save(model, {**meta, "unknown": u["meta"]}, tmp_path / "cnn", extra=u["tensors"])
    back = store.import_zip(store.export_zip(folder), tmp_path / "imported")
    a, b = Predictor.load(folder), Predictor.load(back)
    x = corner_images(3, seed=5)[0]
    assert [r["score"] for r in a.predict_many(list(x), with_unknown=True)] == \
           [r["score"] for r in b.predict_many(list(x), with_unknown=True)]
    model2, meta2, extra = store.load(back, with_extra=True)
    assert set(extra) == {ood.FEATS} and torch.equal(extra[ood.FEATS], u["tensors"][ood.FEATS])


def test_old_model_folders_load_and_never_answer_unknown(trained, tmp_path):
    """A folder saved before calibration existed: no temperature, no unknown entry, format 1, plain weights."""
    folder = as_old_folder(trained[0], tmp_path / "old")
    meta = json.loads((folder / "model.json").read_text())
    assert meta["format"] == 1 and "temperature" not in meta and "unknown" not in meta
    model, m, extra = store.load(folder, with_extra=True)
    assert extra == {} and len(store.load(folder)) == 2
    pred = Predictor.load(folder)
    assert pred.unknown is None and pred.temperature == 1.0
    images = [np.asarray(make_image(k, 50 + k, 32)) for k in range(4)] + list(unseen_images(4)["noise"])
    for x in images:
        r = pred.predict(x, with_unknown=True)
        assert r["unknown"] is False and r["score"] is None and r["threshold"] is None
        assert r["probs"] == pred.predict(x)
    rows = pred.predict_many(images, with_unknown=True)
    assert all(r["unknown"] is False for r in rows)
    assert [r["probs"] for r in rows] == [r["probs"] for r in pred.predict_many(images)]


def test_energy_score_for_rungs_without_learned_features(tiny4, tmp_path):
    """The pixel-similarity and linear models get Liu et al.'s energy score and store no tensors."""
    from logoapp.data import open_dataset
    ds = open_dataset(tiny4, size=16, cache=False)
    pixel = fit_pixel(ds)
    u = ood.fit_unknown(pixel, ds)
    assert u["meta"]["method"] == "energy" and u["tensors"] == {}
    meta = {"arch": "pixel", "distance": "l1", "vocab": ds.vocab, "size": 16, "data_size": 16,
            "channels": ds.channels, "unknown": u["meta"]}
    folder = store.save(pixel, meta, tmp_path / "px")
    assert json.loads((folder / "model.json").read_text())["format"] == store.FORMAT
    pred = Predictor.load(folder)
    r = pred.predict(ds.images[0], with_unknown=True)
    logits = pixel(torch.from_numpy(ds.images[:1]))
    assert r["score"] == pytest.approx(float(-torch.logsumexp(logits, 1)), rel=1e-5)
    flat = np.full((16, 16, 4), 255, np.uint8)  # a blank white square: far from every ideal crest
    assert pred.predict(flat, with_unknown=True)["unknown"] is True
    done = fit(ds, TrainConfig("linear", epochs=1, bs=16))
    assert ood.fit_unknown(done.net, ds)["meta"]["method"] == "energy"


def test_malformed_unknown_entries_are_refused(tmp_path):
    ds, model, meta = trained_cnn()
    u = ood.fit_unknown(model, ds, per_class=4)
    folder = store.save(model, {**meta, "unknown": u["meta"]}, tmp_path / "cnn", extra=u["tensors"])
    good = json.loads((folder / "model.json").read_text())
    for bad in ({"method": "magic"}, {**u["meta"], "k": "3"}, {**u["meta"], "threshold": math.inf},
                {**u["meta"], "n_features": 0}, "knn"):
        (folder / "model.json").write_text(json.dumps({**good, "unknown": bad}))
        with pytest.raises(store.ModelError, match="unknown-input"):
            Predictor.load(folder)
    (folder / "model.json").write_text(json.dumps({**good, "unknown": {**u["meta"], "dim": 128}}))
    with pytest.raises(store.ModelError, match="stored features"):
        Predictor.load(folder)
    with pytest.raises(ValueError, match="stored features"):  # built in memory without the tensors
        Predictor(model, {**meta, "unknown": u["meta"]})
