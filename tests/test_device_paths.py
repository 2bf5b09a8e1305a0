"""The GPU code paths' logic, run on this CPU: where logoapp's CUDA branches differ from the CPU's only by the
device (the uint8 set kept on the device, fastai's mixed precision with a gradient scaler), the tests force the
branch and check it trains and batches as the CPU path does. The CUDA kernels themselves need a GPU machine."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_folder
from logoapp import train as T
from logoapp.data import open_dataset
from logoapp.train import TrainConfig


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = make_folder(tmp_path_factory.mktemp("dev") / "d", n_classes=2, per_class=16, size=32)
    return open_dataset(root, size=32, cache=False)


def test_policies():
    assert T.mixed_precision(torch.device("cuda")) and not T.mixed_precision(torch.device("cpu"))
    images = np.zeros((4, 2, 2, 3), np.uint8)
    assert not T.TensorLoader(images, np.zeros(4), np.arange(4), 2).x.is_cuda  # on a CPU the set stays put


def test_a_resident_set_gives_the_same_batches():
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (50, 4, 4, 3), dtype=np.uint8), rng.integers(0, 3, 50)
    idx = np.arange(3, 47)
    host = T.TensorLoader(images, labels, idx, 8, shuffle=True, seed=5, drop_last=True)
    resident = T.TensorLoader(images, labels, idx, 8, shuffle=True, seed=5, drop_last=True, resident=True)
    for _ in range(2):  # the same shuffled order, epoch after epoch
        a, b = list(host), list(resident)
        assert len(a) == len(b) == 5
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_mixed_precision_runs_float16_with_a_scaler_on_the_data_device(ds):
    learn, _ = T.make_learner(ds, TrainConfig("cnn", epochs=1, bs=8, size=32).resolved(ds))
    seen, scales = [], []
    conv = next(m for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))

    class Scales(T.Callback):
        order = 20  # after the mixed-precision step

        def after_step(self):
            scales.append(self.learn.scaler.get_scale())

    learn.add_cbs([T.Mixed(), Scales()])
    learn.fit_one_cycle(2, 1e-3)
    assert torch.float16 in seen and scales and all(s > 0 for s in scales)
    assert all(np.isfinite(v) for v in learn.recorder.losses)
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())  # master weights stay float32


def test_fit_through_the_gpu_branch(ds, monkeypatch):
    monkeypatch.setattr(T, "mixed_precision", lambda dev: True)
    done = T.fit(ds, TrainConfig("cnn", epochs=2, bs=8, size=32))
    assert 0 <= done.accuracy <= 1 and len(done.history) == 2
    assert all(p.dtype == torch.float32 for p in done.net.parameters())
