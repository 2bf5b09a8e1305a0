"""Pretrained rungs end to end without a network: a locally made "published" checkpoint (torchvision's architecture,
random weights) served by a loopback server or placed in a temporary hub cache; fine-tuning, the features rung,
RGBA composed on white, and the CLI's download, offline and no-server paths."""
from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import torch
import torchvision

from app_server import free_port
from conftest import make_folder, make_image
from logoapp import models as M
from logoapp import store
from logoapp import train as T
from logoapp import weights as W
from logoapp.cli import main
from logoapp.data import open_dataset
from logoapp.explain import explain
from logoapp.images import composite
from logoapp.predict import Predictor
from logoapp.train import TrainConfig
from test_weights import serve


@pytest.fixture(scope="module")
def published():
    """{backbone: (file name with its SHA-256 prefix, bytes)} for resnet18 and mobilenet_v3_large, random weights."""
    out = {}
    for name in ("resnet18", "mobilenet_v3_large"):
        torch.manual_seed(0)
        b = io.BytesIO()
        torch.save(getattr(torchvision.models, name)(weights=None).state_dict(), b)
        data = b.getvalue()
        out[name] = (f"{name}-{hashlib.sha256(data).hexdigest()[:8]}.pth", data)
    return out


@pytest.fixture
def hub(tmp_path, monkeypatch, published):
    """An empty hub cache in tmp, downloads allowed, the backbones renamed to the local checkpoints."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("LOGOAPP_OFFLINE", raising=False)
    monkeypatch.setenv("LOGOAPP_MODELS", str(tmp_path / "models"))
    for name, (file, _) in published.items():
        monkeypatch.setitem(W.BACKBONES, name, W.Backbone(name, file, 1.0, "a test checkpoint"))
    return tmp_path / "hub" / "checkpoints"


@pytest.fixture
def on_disk(hub, published):
    hub.mkdir(parents=True, exist_ok=True)
    for file, data in published.values():
        (hub / file).write_bytes(data)
    return hub


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = make_folder(tmp_path_factory.mktemp("pre") / "d", n_classes=4, per_class=12)
    return open_dataset(root, size=32, cache=False)


def test_cli_downloads_once_then_fine_tunes(hub, published, ds, tmp_path, monkeypatch, capsys):
    file, data = published["resnet18"]
    with serve({file: data}) as url:
        monkeypatch.setenv("LOGOAPP_WEIGHTS_URL", url)
        rc = main(["train", ds.root, "--model", "resnet18", "--epochs", "1", "--size", "32", "--bs", "16",
                   "--out", str(tmp_path / "r18")])
    assert rc == 0 and (hub / file).read_bytes() == data
    meta = store.read_meta(tmp_path / "r18")
    assert meta["pretrained"] and meta["backbone"] == "resnet18" and file in meta["weights_note"]
    assert meta["rgba"] and meta["mean"] == pytest.approx(list(M.IMAGENET_MEAN))  # 4-channel data, composed
    assert len(meta["metrics"]["history"]) == 2  # fine_tune: one frozen epoch, then one unfrozen
    capsys.readouterr()
    assert main(["weights", "--json"]) == 0  # now listed as on disk
    import json
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["resnet18"]["on_disk"] and not rows["resnet34"]["on_disk"]


def test_cli_offline_or_no_server_is_one_line_and_nothing_is_trained(hub, ds, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOGOAPP_WEIGHTS_URL", f"http://127.0.0.1:{free_port()}/models")
    for extra in ([], ["--offline"]):
        assert main(["train", ds.root, "--model", "resnet18", "--out", str(tmp_path / "m"), *extra]) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "could not download resnet18 weights" in err and "--no-pretrained" in err, err
        assert ("LOGOAPP_OFFLINE" in err) == bool(extra) and W.BACKBONES["resnet18"].file in err
    assert not (tmp_path / "m").exists()
    assert not hub.exists() or not any(hub.iterdir())
    assert main(["weights", "download", "resnet18", "--offline"]) == 1


def test_no_pretrained_trains_from_random_init_on_purpose(hub, ds, tmp_path):
    done = T.fit(ds, TrainConfig("resnet18", epochs=1, bs=16, size=32, pretrained=False))
    assert not done.pretrained and "random init" in done.weights_note and len(done.history) == 1
    assert not hub.exists()  # nothing fetched


def test_features_rung_end_to_end(on_disk, ds, tmp_path):
    events = []
    done = T.fit(ds, TrainConfig("features", epochs=3, bs=16), events.append, out=tmp_path / "f")
    feats = done.meta["metrics"]["features"]
    assert feats["computed"] == len(ds.idx("train")) + len(ds.idx("valid")) and feats["cached"] == 0
    assert events[0].type == "start" and len(done.history) == 3 and done.pretrained
    meta = store.read_meta(tmp_path / "f")
    assert meta["backbone"] == "mobilenet_v3_large" and meta["arch"] == "features" and meta["size"] == 128
    state = torch.load(tmp_path / "f" / meta["weights"], weights_only=True)
    assert not any(".enc." in k for k in state)  # the folder holds the head only
    assert (tmp_path / "f" / meta["weights"]).stat().st_size < 1e6

    p = Predictor.load(tmp_path / "f")  # the backbone comes from the hub cache, verified
    x = ds.images[ds.idx("valid")]
    assert np.allclose(p.probs(x), torch.softmax(done.net(torch.from_numpy(x)) / p.temperature, 1).detach().numpy(),
                       atol=1e-4)
    e = explain(p.model, p.meta, ds.images[0])
    assert e.kind == "Grad-CAM" and e.heatmap.shape == (32, 32)

    again = T.fit(ds, TrainConfig("features", epochs=2, lr=1e-2, bs=16))  # another head, the same features
    assert again.meta["metrics"]["features"]["computed"] == 0 and len(again.history) == 2


def test_features_model_refuses_a_changed_backbone_file(on_disk, ds, tmp_path, published):
    T.fit(ds, TrainConfig("features", epochs=1, bs=16), out=tmp_path / "f")
    file = published["mobilenet_v3_large"][0]
    data = bytearray((on_disk / file).read_bytes())
    data[-100] ^= 0xFF
    (on_disk / file).write_bytes(bytes(data))
    with pytest.raises(store.ModelError, match="does not match its published SHA-256"):
        store.load(tmp_path / "f")


def test_a_transparent_crest_and_the_same_crest_on_white_predict_alike(on_disk, ds):
    model, info = M.build("resnet18", 4, 4, 32, size=32, weights=on_disk / W.BACKBONES["resnet18"].file)
    assert info["compose"] == [255, 255, 255] and model.body[0][0].in_channels == 3
    meta = {"vocab": ["a", "b", "c", "d"], "data_size": 32, "channels": 4}
    p = Predictor(model, meta)
    crest = np.asarray(make_image(1, 3, 32))
    assert (crest[..., 3] == 0).any()
    flat = composite(crest)  # RGB, flattened on white
    a, b = p.predict(crest), p.predict(flat)
    assert max(abs(a[k] - b[k]) for k in a) < 1e-4
    on_black = composite(crest, (0, 0, 0))
    c = p.predict(on_black)
    assert max(abs(a[k] - c[k]) for k in a) > 1e-4  # the background matters: the check above can fail


def test_older_four_channel_resnets_still_build_as_saved():
    model, info = M.build("resnet18", 4, 3, 32, size=32, mean=[0.5] * 4, std=[0.25] * 4, pretrained=False)
    assert info["compose"] is None and model.body[0][0].in_channels == 4


def test_still_rising():
    rows = [{"accuracy": a} for a in (0.5, 0.6, 0.7)]
    assert T.still_rising(rows)
    assert not T.still_rising(rows + [{"accuracy": 0.65}]) and not T.still_rising(rows[:1])


def test_photo_defaults_come_from_the_data():
    crests, rung = M.suggested("cnn", 140, 4, 2400), M.get("cnn")
    assert crests == {"epochs": rung.epochs, "size": rung.size}  # crests and logos keep the rung's defaults
    big = M.suggested("cnn", 140, 3, 2400)
    assert rung.size < big["size"] <= 140 and big["epochs"] >= rung.epochs  # photos above 64 px: a larger input
    small, tiny = M.suggested("cnn", 32, 3, 1200), M.suggested("cnn", 32, 3, 100)
    assert small["size"] == 32 and rung.epochs < small["epochs"] <= tiny["epochs"] <= rung.epochs * M.MAX_EPOCH_MULT
    assert M.suggested("linear", 140, 3, 100) == {"epochs": M.get("linear").epochs, "size": 140}
    assert M.suggested("features", 32, 3, 100)["size"] == M.get("features").size  # ImageNet scale: upsampled
