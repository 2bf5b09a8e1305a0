"""Ideal images and the pixel-similarity classifier against brute-force reference loops."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from logoapp import ideal
from logoapp.data import open_dataset
from logoapp.ideal import PixelSimilarity, baseline, class_means, distances, to_float


def rand_images(n, size=5, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, c), dtype=np.uint8)


def ref_distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> float:
    """One pair of images, one pixel at a time: the slow obvious definition."""
    fa, fb = a.flatten().tolist(), b.flatten().tolist()
    diffs = [x - y for x, y in zip(fa, fb)]
    if kind == "l1":
        return sum(abs(d) for d in diffs) / len(diffs)
    return math.sqrt(sum(d * d for d in diffs) / len(diffs))


@pytest.mark.parametrize("k", [2, 3, 7])
def test_class_means_equal_numpy(k, monkeypatch):
    imgs = rand_images(40, 4, 4, seed=k)
    labels = np.random.default_rng(k).integers(0, k, 40)
    labels[:k] = np.arange(k)  # every class present
    for chunk in (512, 16):
        monkeypatch.setattr(ideal, "CHUNK", chunk)
        m = class_means(imgs, labels, k)
        assert m.shape == (k, 4, 4, 4) and m.dtype == torch.float32
        for j in range(k):
            ref = imgs[labels == j].astype(np.float64).mean(0).transpose(2, 0, 1) / 255
            np.testing.assert_allclose(m[j].numpy(), ref, rtol=0, atol=1e-6)


def test_class_mean_of_empty_class_is_zero():
    imgs = rand_images(6)
    m = class_means(imgs, np.array([0, 0, 0, 2, 2, 2]), 3)
    assert (m[1] == 0).all() and torch.isfinite(m).all()


@pytest.mark.parametrize("kind", ["l1", "rmse"])
@pytest.mark.parametrize("k", [2, 5])
def test_distances_equal_double_loop(kind, k):
    g = torch.Generator().manual_seed(k)
    x, means = torch.rand(6, 3, 4, 4, generator=g), torch.rand(k, 3, 4, 4, generator=g)
    d = distances(x, means, kind)
    assert d.shape == (6, k)
    for i in range(6):
        for j in range(k):
            assert d[i, j].item() == pytest.approx(ref_distance(x[i], means[j], kind), abs=1e-6)


def test_distances_of_identical_images_are_zero_and_symmetric():
    x = torch.rand(4, 3, 5, 5)
    for kind in ("l1", "rmse"):
        d = distances(x, x, kind)
        assert torch.allclose(d.diagonal(), torch.zeros(4), atol=1e-7)
        assert torch.allclose(d, d.T, atol=1e-6)
    assert distances(x[:0], x, "l1").shape == (0, 4)
    with pytest.raises(ValueError, match="distance must be one of"):
        distances(x, x, "cosine")


@pytest.mark.parametrize("kind", ["l1", "rmse"])
def test_chunked_distances_equal_unchunked(kind, monkeypatch):
    x, means = torch.rand(37, 4, 6, 6), torch.rand(9, 4, 6, 6)
    full = distances(x, means, kind)
    for block in (1, means.numel() + 1, 3 * means.numel() - 1):
        monkeypatch.setattr(ideal, "BLOCK", block)
        assert torch.equal(distances(x, means, kind), full)


def test_to_float_layout():
    imgs = rand_images(3, 4, 4)
    t = to_float(imgs)
    assert t.shape == (3, 4, 4, 4) and t.dtype == torch.float32
    assert t[1, 2, 3, 0].item() == pytest.approx(imgs[1, 3, 0, 2] / 255)


@pytest.mark.parametrize("kind", ["l1", "rmse"])
def test_pixel_similarity_predicts_nearest_mean(kind, monkeypatch):
    imgs = rand_images(30, 4, 3, seed=1)
    means = to_float(rand_images(4, 4, 3, seed=2))
    model = PixelSimilarity(means, kind)
    monkeypatch.setattr(ideal, "CHUNK", 7)
    preds, d = ideal.predict_idx(model, imgs)
    x = to_float(imgs)
    for i in range(len(imgs)):
        ref = [ref_distance(x[i], means[j], kind) for j in range(4)]
        assert preds[i].item() == int(np.argmin(ref))
        np.testing.assert_allclose(d[i].numpy(), ref, atol=1e-6)
    logits = model(torch.from_numpy(imgs))
    assert torch.equal(logits.argmax(1), preds)
    assert torch.allclose(model(x), logits)
    assert torch.allclose(logits, -d / model.temperature, atol=1e-4)
    p0, d0 = ideal.predict_idx(model, imgs[:0])
    assert p0.shape == (0,) and d0.shape == (0, 4)


def manual_baseline(ds, kind):
    tr, va = ds.idx("train"), ds.idx("valid")
    x = ds.images.astype(np.float64) / 255
    means = np.stack([x[tr][ds.labels[tr] == k].mean(0) for k in range(ds.c)])
    preds = []
    for i in va:
        diff = x[i][None] - means
        dist = np.abs(diff).mean((1, 2, 3)) if kind == "l1" else np.sqrt((diff ** 2).mean((1, 2, 3)))
        preds.append(int(dist.argmin()))
    preds, targs = np.array(preds), ds.labels[va]
    per = {ds.vocab[k]: float((preds[targs == k] == k).mean()) for k in range(ds.c) if (targs == k).any()}
    return float((preds == targs).mean()), per, preds


@pytest.mark.parametrize("kind", ["l1", "rmse"])
@pytest.mark.parametrize("fixture", ["tiny", "tiny4"])
def test_baseline_matches_manual(fixture, kind, request):
    ds = open_dataset(request.getfixturevalue(fixture), size=16, valid_pct=0.5)
    r = baseline(ds, kind)
    acc, per, preds = manual_baseline(ds, kind)
    assert r["accuracy"] == pytest.approx(acc)
    assert r["per_class"] == pytest.approx(per)
    assert np.array_equal(r["preds"], preds)
    assert r["n_train"] == len(ds.idx("train")) and r["n_valid"] == len(ds.idx("valid"))
    assert r["distances"].shape == (len(ds.idx("valid")), ds.c) and r["distance"] == kind
    assert r["accuracy"] > 1 / ds.c  # the tiny classes differ in colour and shape


def test_baseline_with_many_classes(tmp_path):
    from conftest import make_image
    rng = np.random.default_rng(0)
    root = tmp_path / "many"
    for k in range(12):
        (root / f"c{k:02d}").mkdir(parents=True)
        base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        for i in range(5):
            a = np.clip(base.astype(int) + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
            from PIL import Image
            Image.fromarray(a).save(root / f"c{k:02d}" / f"{i}.png")
    assert make_image  # the shared helper stays importable
    ds = open_dataset(root, size=8, valid_pct=0.4)
    r = baseline(ds, "rmse")
    acc, per, _ = manual_baseline(ds, "rmse")
    assert r["accuracy"] == pytest.approx(acc) and r["per_class"] == pytest.approx(per)
    assert len(r["per_class"]) == 12 and r["accuracy"] > 0.9


def test_grey_is_the_colour_average():
    m = torch.rand(3, 4, 5, 5)
    assert torch.allclose(ideal.grey(m), m[:, :3].mean(1))
