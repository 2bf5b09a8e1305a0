"""Confusion matrix, most confused and top losses against brute force."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from logoapp import evaluate as E
from logoapp.data import open_dataset
from logoapp.ideal import baseline, fit


def random_probs(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, k, generator=g) * 3, 1)


@pytest.mark.parametrize("k", [2, 5])
def test_confusion_matrix_brute_force(k):
    rng = np.random.default_rng(k)
    preds, targs = rng.integers(0, k, 300), rng.integers(0, k, 300)
    cm = E.confusion_matrix(preds, targs, k)
    ref = np.zeros((k, k), int)
    for p, t in zip(preds, targs):
        ref[t, p] += 1  # rows actual, columns predicted
    assert np.array_equal(cm, ref) and cm.sum() == 300
    assert E.confusion_matrix(np.zeros(0, np.int64), np.zeros(0, np.int64), k).shape == (k, k)


def test_most_confused_order():
    cm = np.array([[9, 1, 5], [7, 3, 0], [2, 2, 8]])
    vocab = ["a", "b", "c"]
    r = E.most_confused(cm, vocab)
    assert r == [("b", "a", 7), ("a", "c", 5), ("c", "a", 2), ("c", "b", 2), ("a", "b", 1)]
    assert E.most_confused(cm, vocab, min_count=3) == [("b", "a", 7), ("a", "c", 5)]
    assert all(a != p for a, p, _ in r)
    assert [n for *_, n in r] == sorted([n for *_, n in r], reverse=True)


def test_top_losses_are_the_highest():
    probs = random_probs(50, 4, seed=1)
    targs = np.random.default_rng(1).integers(0, 4, 50)
    ref = sorted(((-math.log(float(probs[i, targs[i]])), i) for i in range(50)), reverse=True)
    tops = E.top_losses(probs, targs, k=10)
    assert [i for i, _ in tops] == [i for _, i in ref[:10]]
    assert [l for _, l in tops] == pytest.approx([l for l, _ in ref[:10]], rel=1e-5)
    assert len(E.top_losses(probs, targs, k=500)) == 50
    assert E.top_losses(probs[:0], targs[:0]) == []


def test_evaluate_probs_fields():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    targs = np.array([0, 1, 1, 0])
    items = [f"img{i}.png" for i in range(10)]
    idx = np.array([3, 5, 7, 9])
    r = E.evaluate_probs(probs, targs, ["cat", "dog"], items, idx, k=2)
    assert r["accuracy"] == 0.5 and r["per_class"] == {"cat": 0.5, "dog": 0.5}
    assert r["confusion"] == {"labels": ["cat", "dog"], "matrix": [[1, 1], [1, 1]]}
    assert r["most_confused"] == [("cat", "dog", 1), ("dog", "cat", 1)]
    t0, t1 = r["top_losses"]
    assert t0 == {"index": 9, "path": "img9.png", "actual": "cat", "predicted": "dog",
                  "probability": pytest.approx(0.7), "loss": pytest.approx(-math.log(0.3))}
    assert t1["index"] == 7 and t1["actual"] == "dog" and t1["predicted"] == "cat"
    assert t1["probability"] == pytest.approx(0.6) and t1["loss"] == pytest.approx(-math.log(0.4))
    assert r["n"] == 4 and np.array_equal(r["preds"], [0, 1, 0, 1])


def test_evaluate_probs_empty():
    r = E.evaluate_probs(torch.zeros(0, 3), np.zeros(0, np.int64), ["a", "b", "c"])
    assert math.isnan(r["accuracy"]) and r["n"] == 0 and r["top_losses"] == [] and r["per_class"] == {}


def test_evaluate_model_agrees_with_baseline(tiny4):
    ds = open_dataset(tiny4, size=16, valid_pct=0.5)
    b = baseline(ds, "rmse")
    r = E.evaluate_model(fit(ds, "rmse"), ds, "valid")
    assert np.array_equal(r["preds"], b["preds"]) and r["accuracy"] == pytest.approx(b["accuracy"])
    assert r["per_class"] == pytest.approx(b["per_class"])
    assert np.allclose(r["probs"].sum(1), 1, atol=1e-5)
    for t in r["top_losses"]:
        i = t["index"]
        assert ds.split[i] == 1 and t["path"] == ds.items[i] and t["actual"] == ds.vocab[ds.labels[i]]
    cm = np.array(r["confusion"]["matrix"])
    assert cm.sum() == len(ds.idx("valid")) and np.trace(cm) == round(r["accuracy"] * cm.sum())


def test_evaluate_model_falls_back_to_test(tmp_path):
    from conftest import make_image
    root = tmp_path / "d"
    for split, n in (("train", 3), ("test", 2)):
        for k in range(2):
            (root / split / f"c{k}").mkdir(parents=True)
            for i in range(n):
                make_image(k, i, 16).save(root / split / f"c{k}" / f"{i}.png")
    ds = open_dataset(root, size=16)
    r = E.evaluate_model(fit(ds), ds, "valid")
    assert r["n"] == 4


def test_get_probs_batches_agree():
    imgs = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 4), dtype=np.uint8)
    model = fit_like(imgs)
    a, b = E.get_probs(model, imgs, bs=3), E.get_probs(model, imgs, bs=256)
    assert torch.allclose(a, b) and a.shape == (10, 2) and torch.allclose(a.sum(1), torch.ones(10))


def fit_like(imgs):
    from logoapp.ideal import PixelSimilarity, class_means
    return PixelSimilarity(class_means(imgs, np.arange(len(imgs)) % 2, 2))


def test_align_vocab(tiny4):
    ds = open_dataset(tiny4, size=16)
    keep, targs = E.align_vocab(["class2", "class0", "zebra"], ds)
    names = [ds.vocab[y] for y in ds.labels]
    assert list(keep) == [n in ("class0", "class2") for n in names]
    assert list(targs[keep]) == [{"class2": 0, "class0": 1}[n] for n in names if n in ("class0", "class2")]
