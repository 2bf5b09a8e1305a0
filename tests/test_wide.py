"""The cnn-wide rung: its whitening stem, test-time flips, flip-and-crop augmentation, its recipe through fastai, and
the bfloat16 training path (run on any CPU: the branch differs only by dtype)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_folder
from logoapp import models as M
from logoapp import recipes, store, wide
from logoapp import train as T
from logoapp.data import open_dataset
from logoapp.predict import Predictor
from logoapp.train import TrainConfig


def test_whitening_stem_decorrelates_patches():
    g = torch.Generator().manual_seed(0)
    x = F.avg_pool2d(torch.randn(64, 3, 20, 20, generator=g), 3, 1, 1) * 3  # smooth images: correlated patches
    net = wide.WideCNN(3, 5)
    net.fit_whitening(x, eps=1e-6)
    out = F.conv2d(x, net[0].weight)[:, :12]  # the first half: one output per eigenvector (the rest: negated)
    z = out.permute(0, 2, 3, 1).reshape(-1, 12)
    cov = z.T @ z / len(z)
    assert torch.allclose(cov, torch.eye(12), atol=0.05), cov.diag()
    assert torch.equal(net[0].weight[12:], -net[0].weight[:12])
    assert not net[0].weight.requires_grad


def test_eval_answers_the_mean_over_mirror_images_and_moves():
    torch.manual_seed(0)
    net = wide.WideCNN(4, 3).eval()
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        out = net(x)
        one = lambda z: net.classify(net.trunk(z))  # noqa: E731
        both = lambda z: (one(z) + one(z.flip(-1))) / 2  # noqa: E731
        p = F.pad(x, (1, 1, 1, 1), mode="reflect")
        want = both(x) / 2 + both(p[..., :32, :32]) / 4 + both(p[..., 2:, 2:]) / 4
        net.quick = True
        quick = net(x)
        plain = torch.nn.Sequential.forward(net, x)
    assert torch.allclose(out, want, atol=1e-5)
    assert torch.allclose(plain, one(x), atol=1e-5)
    assert not torch.allclose(out, one(x), atol=1e-3) and quick.shape == out.shape


def test_training_forward_runs_under_bfloat16_where_the_cpu_has_it(monkeypatch):
    net = wide.WideCNN(3, 2).train()
    x = torch.randn(4, 3, 16, 16)
    seen = []
    net[2].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    for has in (False, True):  # both branches on this CPU: they differ only by the autocast dtype
        wide.cpu_bf16.cache_clear()
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda has=has: has)
        out = net(x)
        assert out.dtype == torch.float32
        out.sum().backward()
    wide.cpu_bf16.cache_clear()
    assert seen == [torch.float32, torch.bfloat16]


def test_crop_moves_each_image_by_whole_pixels():
    torch.manual_seed(1)
    x = torch.rand(16, 3, 8, 8)
    y = M.crop(x, 2)
    xp = F.pad(x, (2, 2, 2, 2), mode="reflect")
    shifts = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(y[i], xp[i, :, dy:dy + 8, dx:dx + 8])]
        assert hits, i
        shifts.add(hits[0])
    assert len(shifts) > 3  # not one shift for the whole batch
    assert M.crop(x, 0) is x


def test_flips_and_crops_only_path():
    aug = M.Augment(**{**M.default_aug(3), **M.get("cnn-wide").aug}).train()
    torch.manual_seed(0)
    x = torch.rand(32, 3, 16, 16)
    y = aug(x)
    assert y.shape == x.shape
    same = [torch.equal(y[i], x[i]) for i in range(len(x))]
    assert not all(same)
    # values are moved, never resampled: each output pixel value is one of its image's input values
    assert all(torch.isin(y[i], x[i]).all() for i in range(len(x)))


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = make_folder(tmp_path_factory.mktemp("wide") / "d", n_classes=2, per_class=24, size=32)
    return open_dataset(root, size=32, cache=False)


def test_cnn_wide_learns_saves_and_predicts(ds, tmp_path):
    cfg = TrainConfig("cnn-wide", epochs=4, bs=16).resolved(ds)
    assert cfg.lr == pytest.approx(wide.LR_PER_EXAMPLE * wide.BS)
    done = T.fit(ds, cfg, out=tmp_path / "m")
    assert done.accuracy >= 0.9 and done.meta["aug"]["crop"] == 2 and done.meta["aug"]["rotate"] == 0
    p = Predictor.load(tmp_path / "m")
    assert store.load(tmp_path / "m")[1]["arch"] == "cnn-wide"
    img = ds.images[ds.idx("valid")[0]]
    r = p.predict(img)
    assert next(iter(r)) == ds.vocab[ds.labels[ds.idx("valid")[0]]]
    assert abs(sum(r.values()) - 1) < 1e-4
    # the prediction copy (FlatNet, batch norms folded) answers as the model does, test-time passes included, and
    # the unknown-input test works on the pooled features, not on the logits
    model, meta = store.load(tmp_path / "m")
    x = ds.images[ds.idx("valid")]
    with torch.no_grad():
        want = torch.softmax(model(torch.from_numpy(x)) / meta["temperature"], 1).numpy()
    assert np.abs(p.probs(x) - want).max() < 1e-4
    assert meta["unknown"]["method"] != "knn" or meta["unknown"]["dim"] == wide.WIDTHS[-1]


def test_recipe_scales_the_rate_with_the_batch_and_averages_weights(ds):
    r = recipes.airbench(TrainConfig("cnn-wide", bs=wide.BS // 4, lr=1.0))
    assert np.allclose(r["one_cycle"]["lr_max"], [wide.BIAS_LR / 4, 1 / 4])
    learn, info = T.make_learner(ds, TrainConfig("cnn-wide", epochs=1, bs=16).resolved(ds))
    cb = next(c for c in learn.cbs if isinstance(c, recipes.Recipe))
    learn.create_opt()
    groups = learn.opt.param_lists
    assert len(groups) == 2 and all(p.ndim == 1 for p in groups[0])  # batch-norm biases (and frozen scales) first
    assert type(learn.opt.opt).__name__ == "SGD" and learn.opt.opt.defaults["nesterov"]
    learn.fit_one_cycle(1, **info["one_cycle"])
    assert cb.whitened and cb.step == len(learn.dls.train)
    net = learn.model.state_dict()
    assert all(torch.equal(cb.ema[k], net[k]) for k in cb.ema)  # the model ends as the lookahead average
