"""Tiny generated image folders, so tests need no data and run in seconds."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # gradio_client reports usage unless told not to


def make_image(k: int, i: int, size: int = 32, mode: str = "RGBA") -> Image.Image:
    """Class k: a shape of colour k, jittered by i; transparent background."""
    rng = np.random.default_rng(k * 1000 + i)
    colours = [(220, 30, 30), (30, 60, 200), (30, 160, 60), (230, 200, 20)]
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    o = int(rng.integers(0, size // 8 + 1))
    box = (size // 6 + o, size // 6 + o, size - size // 6 - o, size - size // 6 - o)
    fill = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in colours[k % 4]) + (255,)
    (d.ellipse if k % 2 else d.rectangle)(box, fill=fill)
    return img.convert(mode) if mode != "RGBA" else img


def make_folder(root: Path, n_classes: int = 2, per_class: int = 12, size: int = 32, names=None) -> Path:
    names = names or [f"class{k}" for k in range(n_classes)]
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_image(k, i, size).save(root / name / f"{name}_{i:03d}.png")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache and models folder: no test sees another's files."""
    monkeypatch.setenv("LOGOAPP_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("LOGOAPP_OFFLINE", "1")  # no test downloads ImageNet weights (test_weights serves its own)


def as_old_folder(src: Path, dest: Path) -> Path:
    """A copy of a model folder as saved before calibration existed: no temperature, calibration or unknown entry,
    plain weights (format 1)."""
    from logoapp import store
    model, meta = store.load(src)
    meta = {k: v for k, v in meta.items() if k not in ("temperature", "calibration", "unknown")}
    return store.save(model, meta, dest)


@pytest.fixture
def tiny(tmp_path) -> Path:
    return make_folder(tmp_path / "tiny", n_classes=2, per_class=12)


@pytest.fixture
def tiny4(tmp_path) -> Path:
    return make_folder(tmp_path / "tiny4", n_classes=4, per_class=16)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny linear model trained once per session on 4 classes of 32px RGBA images, saved by fit(out=) (so
    calibrated, with an unknown-input test). Returns (model folder, data folder); read-only: copy the model folder
    before tampering with it (or use as_old_folder)."""
    from logoapp.data import open_dataset
    from logoapp.train import TrainConfig, fit
    root = tmp_path_factory.mktemp("trained")
    data = make_folder(root / "data", n_classes=4, per_class=16)
    ds = open_dataset(data, size=32, cache=False)
    fit(ds, TrainConfig("linear", epochs=2, bs=16), out=root / "model")
    return root / "model", data


@pytest.fixture
def files_count_as_uploads(monkeypatch):
    """Handlers open only files Gradio wrote into its upload folder (tests/test_hardening.py checks the refusals);
    for handler tests without a server, the test's own files, and the app's export zips, play the uploads.
    Use it with `pytestmark = pytest.mark.usefixtures("files_count_as_uploads")`."""
    import tempfile
    monkeypatch.setenv("GRADIO_TEMP_DIR", tempfile.gettempdir())
