"""The rung registry: one record per model, read by training, evaluation, storage, prediction and the CLI.
A toy rung registered at run time goes through every public function."""
from __future__ import annotations

import json

import pytest
from torch import nn

from logoapp import models as M
from logoapp import store
from logoapp.cli import main
from logoapp.data import open_dataset
from logoapp.evaluate import evaluate
from logoapp.predict import Predictor
from logoapp.train import Done, TrainConfig, train


def pooled_linear(channels: int, n_out: int, size: int, weights=None) -> nn.Module:
    """A 4x4 average of each channel, then one linear layer."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(channels * 16, n_out))


@pytest.fixture
def toy():
    rung = M.register(M.Rung("toy", "toy: a 4x4 average of each channel, then linear", pooled_linear,
                             epochs=2, lr=1e-2, size=16))
    yield rung
    M.unregister("toy")


def test_the_ladder_in_order():
    assert M.names() == ["pixel", "linear", "mlp", "cnn", "cnn-wide", "cnn-wide-s", "features", "resnet18", "resnet34",
                         "mobilenet"]
    assert M.trainable() == M.names()[1:] and M.DEFAULT_MODEL in M.trainable()
    assert not M.get("pixel").trainable and M.get("cnn").augment and not M.get("linear").augment
    assert M.get("resnet18").weights and M.get("resnet18").groups and not M.get("cnn").groups
    assert M.get("features").head_only and M.get("features").weights == M.get("mobilenet").weights
    assert M.describe("cnn") == M.get("cnn").description and M.describe("weird") == "weird"
    with pytest.raises(ValueError, match="unknown model 'nope'; choose one of linear"):
        M.get("nope")
    with pytest.raises(ValueError, match="not trained"):
        M.build("pixel", 3, 2, 16)


def test_a_rung_registered_at_run_time_works_everywhere(toy, tiny4, tmp_path):
    assert "toy" in M.trainable() and M.default_size("toy", 32) == 16 and M.default_size("toy", 8) == 8
    ds = open_dataset(tiny4, size=32)
    cfg = TrainConfig("toy", bs=16).resolved()
    assert (cfg.epochs, cfg.lr, cfg.aug) == (2, 1e-2, False)  # the rung's defaults

    events = list(train(ds, TrainConfig("toy", bs=16), out=tmp_path / "toy"))   # train and save
    done = events[-1]
    assert isinstance(done, Done) and len(done.history) == 2 and done.meta["arch"] == "toy"
    assert done.meta["size"] == 16 and done.net.prep.size == 16

    ev = evaluate(done.net, ds, "valid")                                        # evaluate
    assert ev.accuracy == pytest.approx(done.accuracy) and ev.n == len(ds.idx("valid"))

    model, meta = store.load(done.model_path)                                    # load
    assert meta["arch"] == "toy" and isinstance(model.body[0], nn.AdaptiveAvgPool2d)
    assert evaluate(model, ds, "valid").accuracy == pytest.approx(ev.accuracy)

    p = Predictor.load(done.model_path)                                         # predict
    probs = p.predict(ds.items[0])
    assert set(probs) == set(ds.vocab) and sum(probs.values()) == pytest.approx(1, abs=1e-5)


def test_the_cli_offers_a_registered_rung(toy, tiny, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["train", str(tiny), "--model", "toy", "--size", "16", "--bs", "8", "--out", str(out), "--json"]) == 0
    t = json.loads(capsys.readouterr().out)
    assert t["type"] == "done" and t["model"] == "toy" and t["model_path"] == str(out)
    assert main(["eval", str(out), str(tiny), "--json"]) == 0
    e = json.loads(capsys.readouterr().out)
    assert e["accuracy"] == pytest.approx(t["accuracy"])
    M.unregister("toy")
    with pytest.raises(store.ModelError, match="unknown architecture 'toy'"):  # a rung this logoapp no longer has
        store.load(out)
