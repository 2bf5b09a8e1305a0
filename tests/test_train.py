"""Training: every rung learns on tiny data; the event stream, throttling, stop, reproducibility, lr_find."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from conftest import make_folder
from logoapp import models as M
from logoapp import store
from logoapp import train as T
from logoapp.data import open_dataset
from logoapp.events import Batch, Done, Epoch, Start
from logoapp.predict import Predictor
from logoapp.train import TrainConfig

SIZE, BS = 32, 16


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    """4 classes x 16 images at 32px: 52 train (3 batches of 16), 12 valid."""
    root = make_folder(tmp_path_factory.mktemp("train") / "d", n_classes=4, per_class=16)
    return open_dataset(root, size=SIZE, cache=False)


@pytest.mark.parametrize("model, epochs", [("linear", 3), ("mlp", 3), ("cnn", 3), ("resnet18", 2)])
def test_each_model_learns(ds, model, epochs):
    done = T.fit(ds, TrainConfig(model, epochs=epochs, bs=BS, size=SIZE, aug=False, pretrained=False))  # from scratch
    h = done.history
    assert len(h) == epochs
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert h[-1]["valid_loss"] < h[0]["valid_loss"]
    assert done.accuracy > 1 / ds.c
    assert done.accuracy == pytest.approx(h[-1]["accuracy"], abs=1e-6)
    assert not done.stopped and done.model_path is None and done.n_params > 0
    assert done.meta["arch"] == model and done.meta["vocab"] == ds.vocab
    assert not done.net.training


def test_event_stream(ds, tmp_path):
    events = list(T.train(ds, TrainConfig("linear", epochs=3, bs=BS), out=tmp_path / "m"))
    types = [e.type for e in events]
    assert types[0] == "start" and types[-1] == "done" and types.count("done") == 1
    assert "error" not in types and types.count("start") == 1 and types.count("epoch") == 3
    start, done = events[0], events[-1]
    assert isinstance(start, Start) and isinstance(done, Done)
    for key in ("model", "config", "n_train", "n_valid", "n_params", "device", "weights_note", "n_iter"):
        assert key in start.to_dict()
    assert start.n_train == 52 and start.n_valid == 12 and start.n_iter == 52 // BS
    epoch = -1
    for e in events[1:-1]:
        if e.type == "batch":
            assert isinstance(e, Batch)
            assert set(e.to_dict()) >= {"epoch", "iter", "n_iter", "n_epoch", "train_loss", "train_acc", "lr",
                                        "progress", "elapsed"}
            assert e.epoch == epoch + 1  # batches of the epoch not yet reported
            assert 0 <= e.iter < e.n_iter == start.n_iter and e.n_epoch == 3
            assert 0 < e.progress <= 1 and e.lr > 0 and 0 <= e.train_acc <= 1
        else:
            assert e.type == "epoch" and isinstance(e, Epoch)
            assert set(e.to_dict()) >= {"epoch", "n_epoch", "train_loss", "valid_loss", "accuracy", "seconds",
                                        "elapsed"}
            assert e.epoch == epoch + 1
            prev = [b for b in events if b.type == "batch" and b.epoch == e.epoch]
            assert prev and prev[-1].iter == start.n_iter - 1  # the last batch is always reported
            epoch = e.epoch
    batches = [e for e in events if e.type == "batch"]
    assert batches[-1].progress == pytest.approx(1.0)
    assert all(a.elapsed <= b.elapsed for a, b in zip(batches, batches[1:]))
    for key in ("accuracy", "per_class", "history", "seconds", "images_per_second", "stopped", "model_path"):
        assert key in done.to_dict()
    assert "net" not in done.to_dict() and "meta" not in done.to_dict()  # objects stay out of the JSON form
    assert len(done.history) == 3 and not done.stopped
    for h, e in zip(done.history, [e for e in events if e.type == "epoch"]):
        assert h == {k: getattr(e, k) for k in ("epoch", "train_loss", "valid_loss", "accuracy", "seconds")}
    assert Predictor.load(done.model_path).vocab == ds.vocab


def test_batch_events_throttled_but_last_batch_always_sent(ds, monkeypatch):
    monkeypatch.setattr(T, "MAX_UPDATES_PER_S", 1e-9)  # at most one update per 30 years
    events = []
    T.fit(ds, TrainConfig("linear", epochs=3, bs=BS), events.append)
    batches = [e for e in events if e.type == "batch"]
    n_iter = 52 // BS
    assert len(batches) < 3 * n_iter
    assert [(b.epoch, b.iter) for b in batches] == [(0, n_iter - 1), (1, n_iter - 1), (2, n_iter - 1)]


def test_unthrottled_reports_every_batch(ds, monkeypatch):
    monkeypatch.setattr(T, "MAX_UPDATES_PER_S", 1e12)
    events = []
    T.fit(ds, TrainConfig("linear", epochs=2, bs=BS), events.append)
    assert [(e.epoch, e.iter) for e in events if e.type == "batch"] == [(e, i) for e in range(2) for i in range(3)]


def test_stop_mid_epoch_keeps_a_usable_model(ds, tmp_path, monkeypatch):
    monkeypatch.setattr(T, "MAX_UPDATES_PER_S", 1e12)  # every batch reported: the first one is iter 0
    stop = threading.Event()
    events = []

    def emit(e):
        events.append(e)
        if e.type == "batch":
            stop.set()

    done = T.fit(ds, TrainConfig("cnn", epochs=4, bs=BS), emit, stop, out=tmp_path / "m")
    assert done.stopped is True and done.type == "done"
    assert [e.type for e in events] == ["start", "batch"]  # ended at the next batch, mid-epoch 0
    assert done.history == []
    p = Predictor.load(done.model_path)
    assert p.meta["metrics"]["stopped"] is True
    probs = p.predict(ds.images[0])
    assert set(probs) == set(ds.vocab) and sum(probs.values()) == pytest.approx(1, abs=1e-5)


def test_closing_the_stream_stops_training(ds):
    stop = threading.Event()
    it = T.train(ds, TrainConfig("linear", epochs=50, bs=BS), stop=stop)
    assert next(it).type == "start"
    it.close()  # joins the worker thread
    assert stop.is_set()
    assert not [t for t in threading.enumerate() if t.name == "logoapp-train"]


def test_errors_become_an_event(ds):
    bad = list(T.train(ds, TrainConfig("no-such-model")))
    assert [e.type for e in bad] == ["error"] and bad[0].message


@pytest.mark.parametrize("model, aug, size", [("linear", False, None), ("cnn", True, 16)])
def test_same_seed_same_numbers(ds, model, aug, size):
    def run(seed):
        d = T.fit(ds, TrainConfig(model, epochs=2, bs=BS, seed=seed, aug=aug, size=size))
        return [(h["train_loss"], h["valid_loss"], h["accuracy"]) for h in d.history], d.net

    (a, ma), (b, mb) = run(3), run(3)
    assert a == b
    for (k, x), y in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(x, y), k
    if model == "linear":
        c, _ = run(4)
        assert c != a


def test_training_without_validation_split(tmp_path):
    root = make_folder(tmp_path / "d", n_classes=2, per_class=8, size=16)
    nv = open_dataset(root, size=16, valid_pct=0)
    assert len(nv.idx("valid")) == 0
    events = list(T.train(nv, TrainConfig("linear", epochs=1, bs=8)))
    assert events[-1].type == "done", events[-1]
    done = T.fit(nv, TrainConfig("linear", epochs=1, bs=8), out=tmp_path / "m")  # nothing to calibrate on
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert done.temperature is None and done.unknown is None and done.calibration_seconds is None
    assert "temperature" not in meta and "unknown" not in meta and meta["format"] == 1


def test_a_saved_model_is_calibrated_and_answers_unknown(ds, tmp_path):
    """fit(out=) fits the temperature and the unknown-input test on the validation split and saves them."""
    done = T.fit(ds, TrainConfig("cnn", epochs=1, bs=BS), out=tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["temperature"] == done.temperature > 0 and meta["unknown"] == done.unknown
    assert meta["unknown"]["method"] == "knn" and meta["unknown"]["n_fit"] == len(ds.idx("valid"))
    assert meta["calibration"]["n"] == len(ds.idx("valid")) and meta["format"] == store.FORMAT_EXTRA
    assert done.calibration_seconds > 0 and meta["metrics"]["calibration_seconds"] == done.calibration_seconds
    d = done.to_dict()
    assert d["temperature"] == done.temperature and d["unknown"] == done.unknown and "extra" not in d
    json.dumps(d)
    p = Predictor.load(done.model_path)
    assert p.temperature == done.temperature and p.unknown is not None
    r = p.predict(ds.images[ds.idx("valid")[0]], with_unknown=True)
    assert set(r) == {"probs", "label", "unknown", "score", "threshold"} and r["threshold"] is not None
    assert isinstance(r["unknown"], bool) and r["probs"] == pytest.approx(p.predict(ds.images[ds.idx("valid")[0]]))
    mem = Predictor(done.net, done.meta, extra=done.extra)  # the Done record answers as the saved folder does
    assert mem.predict(ds.images[0], with_unknown=True)["score"] == pytest.approx(
        p.predict(ds.images[0], with_unknown=True)["score"], abs=1e-3)
    assert not done.stopped and not T.fit(ds, TrainConfig("cnn", epochs=1, bs=BS)).meta.get("unknown")


def test_lr_find(ds):
    r = T.lr_find(ds, TrainConfig("linear", bs=BS))
    assert r["suggested"] > 0 and np.isfinite(r["suggested"])
    assert len(r["lrs"]) == len(r["losses"]) > 0
    assert all(a < b for a, b in zip(r["lrs"], r["lrs"][1:]))


def test_config_defaults_resolved():
    c = TrainConfig("cnn").resolved()
    assert c.epochs and c.lr and c.size is None and c.aug is True  # the size is decided with the data in hand
    assert [M.default_size("cnn", n) for n in (140, 64, 32)] == [64, 64, 32]  # never upsampled past the data
    assert M.default_size("linear", 140) == 140 and M.default_size("resnet18", 48) == 48
    c = TrainConfig("linear", epochs=2, lr=0.1, aug=True).resolved()
    assert (c.epochs, c.lr, c.size, c.aug) == (2, 0.1, None, True)


def test_tensor_loader_batches():
    images = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    labels = np.arange(10) % 3
    dl = T.TensorLoader(images, labels, np.array([1, 3, 5, 7, 9]), bs=2)
    batches = list(dl)
    assert len(dl) == 3 and [len(y) for _, y in batches] == [2, 2, 1]
    assert torch.equal(batches[0][0], torch.from_numpy(images[[1, 3]]))
    dl = T.TensorLoader(images, labels, np.arange(10), bs=4, shuffle=True, seed=0, drop_last=True)
    seen = torch.cat([y for _, y in dl])
    assert len(dl) == 2 and len(seen) == 8
