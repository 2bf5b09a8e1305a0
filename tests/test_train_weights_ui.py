"""The Train tab before a pretrained run: which weights it will use, the Fetch button (against a loopback server),
offline refusals with nothing half-done, and the pretrained rungs suggested for photos."""
from __future__ import annotations

import gradio as gr
import pytest
import torch

from conftest import make_folder
from logoapp import weights as W
from logoapp.data import open_dataset
from logoapp.ui import Session
from logoapp.ui.app import start
from logoapp.ui.tabs import train
from test_weights import checkpoint, serve


@pytest.fixture
def toy_hub(tmp_path, monkeypatch):
    """resnet18 renamed to a small local checkpoint; an empty hub cache; downloads allowed."""
    import hashlib
    data = checkpoint()
    file = f"resnet18-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setitem(W.BACKBONES, "resnet18", W.Backbone("resnet18", file, 0.1, "test"))
    monkeypatch.delenv("LOGOAPP_OFFLINE", raising=False)
    return tmp_path / "hub" / "checkpoints", file, data


@pytest.fixture
def session(tmp_path):
    folder = make_folder(tmp_path / "crests", n_classes=3, per_class=8)
    return Session(start(folder, models_dir=tmp_path / "models", size=16, progress=lambda *a, **k: None))


def test_fetch_before_training(toy_hub, session, monkeypatch):
    folder, file, data = toy_hub
    out = train.on_arch("resnet18", session)
    note, pretrained, fetch = out[5:]
    assert "will start from ImageNet weights" in note and file in note and "composed on white" in note
    assert pretrained["visible"] is True and fetch["visible"] is True
    with pytest.raises(gr.Error, match="Fetch weights"):  # Train refuses before anything starts
        train.config("resnet18", 1, 0.01, 16, 16, True, 0, True)
    assert train.config("resnet18", 1, 0.01, 16, 16, True, 0, False).pretrained is False  # random init by choice
    assert "random init" in train.on_pretrained("resnet18", False, session)[0]

    monkeypatch.setenv("LOGOAPP_OFFLINE", "1")
    assert "downloads are off" in train.on_arch("resnet18", session)[5]
    with pytest.raises(gr.Error, match="could not download resnet18 weights: offline"):
        train.on_fetch("resnet18", session, progress=lambda *a, **k: None)
    assert not folder.exists() or not any(folder.iterdir())  # nothing half-done
    monkeypatch.delenv("LOGOAPP_OFFLINE")

    seen = []
    with serve({file: data}) as url:
        monkeypatch.setenv("LOGOAPP_WEIGHTS_URL", url)
        note, button = train.on_fetch("resnet18", session, progress=lambda *a, **k: seen.append(a))
    assert (folder / file).read_bytes() == data and seen
    assert "starts from ImageNet weights" in note and button["visible"] is False
    assert train.config("resnet18", 1, 0.01, 16, 16, True, 0, True).pretrained is True


def test_photos_get_the_pretrained_rungs_suggested(tmp_path):
    root = make_folder(tmp_path / "p", n_classes=2, per_class=6)
    photos = open_dataset(root, size=16, cache=False)
    photos.images = photos.images[..., :3].copy()  # as RGB photos load
    assert "pretrained rung" in train.weights_note("cnn", photos) and "features" in train.weights_note("cnn", photos)
