"""Confusion matrix, most confused and top losses against brute force; the Evaluation of a model on a split."""
from __future__ import annotations

import math
import warnings

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


def test_per_class_accuracy_leaves_out_absent_classes():
    r = E.per_class_accuracy(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), ["a", "b", "c", "d"])
    assert r == {"a": 1.0, "b": 1.0, "c": 0.5}


def test_top_losses_are_the_highest():
    probs = random_probs(50, 4, seed=1)
    targs = np.random.default_rng(1).integers(0, 4, 50)
    ref = sorted(((-math.log(float(probs[i, targs[i]])), i) for i in range(50)), reverse=True)
    tops = E.top_losses(probs, targs, k=10)
    assert [i for i, _ in tops] == [i for _, i in ref[:10]]
    assert [loss for _, loss in tops] == pytest.approx([loss for loss, _ in ref[:10]], rel=1e-5)
    assert len(E.top_losses(probs, targs, k=500)) == 50
    assert E.top_losses(probs[:0], targs[:0]) == []


def test_evaluation_fields():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    targs = np.array([0, 1, 1, 0])
    items = [f"img{i}.png" for i in range(10)]
    idx = np.array([3, 5, 7, 9])
    r = E.Evaluation(["cat", "dog"], probs.numpy(), targs, idx, items)
    assert r.accuracy == 0.5 and r.per_class == {"cat": 0.5, "dog": 0.5}
    assert r.confusion.tolist() == [[1, 1], [1, 1]]
    assert r.most_confused() == [("cat", "dog", 1), ("dog", "cat", 1)]
    t0, t1 = r.top_losses(k=2)
    assert t0 == {"index": 9, "path": "img9.png", "actual": "cat", "predicted": "dog",
                  "probability": pytest.approx(0.7), "loss": pytest.approx(-math.log(0.3))}
    assert t1["index"] == 7 and t1["actual"] == "dog" and t1["predicted"] == "cat"
    assert t1["probability"] == pytest.approx(0.6) and t1["loss"] == pytest.approx(-math.log(0.4))
    assert r.n == 4 and np.array_equal(r.preds, [0, 1, 0, 1])
    assert list(r.cell(0, 1)) == [3]  # the cat at position 3, called a dog
    d = r.to_dict(k=2)
    assert d["confusion"] == {"labels": ["cat", "dog"], "matrix": [[1, 1], [1, 1]]}
    assert d["n"] == 4 and d["accuracy"] == 0.5 and d["top_losses"] == [t0, t1] and d["split"] == "valid"
    half = {"cat": 0.5, "dog": 0.5}  # by hand: each class 1 right of 2 actual and of 2 predicted
    assert r.precision == r.recall == r.f1 == half and r.support == {"cat": 2, "dog": 2}
    assert r.macro_f1 == r.balanced_accuracy == 0.5
    assert {k: d[k] for k in ("precision", "recall", "f1", "support", "macro_f1", "balanced_accuracy")} == {
        "precision": half, "recall": half, "f1": half, "support": {"cat": 2, "dog": 2}, "macro_f1": 0.5,
        "balanced_accuracy": 0.5}


def test_class_metrics_by_hand():
    """3 classes: a 'bird' never predicted (precision 0, scikit-learn's zero_division=0), an 'eel' with no items
    (left out, as per_class leaves it out)."""
    vocab = ["cat", "dog", "bird", "eel"]
    targs = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 3, 0])
    r = E.Evaluation(vocab, np.eye(4)[preds], targs, np.arange(6))
    assert r.support == {"cat": 3, "dog": 2, "bird": 1}
    assert r.precision == pytest.approx({"cat": 2 / 3, "dog": 1 / 2, "bird": 0.0})
    assert r.recall == pytest.approx({"cat": 2 / 3, "dog": 1 / 2, "bird": 0.0}) == r.per_class
    assert r.f1 == pytest.approx({"cat": 2 / 3, "dog": 1 / 2, "bird": 0.0})
    assert r.macro_f1 == pytest.approx((2 / 3 + 1 / 2) / 3) and r.balanced_accuracy == pytest.approx(7 / 18)


@pytest.mark.parametrize("k, seed", [(2, 0), (5, 1), (7, 2)])
def test_class_metrics_match_sklearn(k, seed):
    from sklearn import metrics as SK
    rng = np.random.default_rng(seed)
    targs = rng.integers(0, k - 1, 60)  # the last class has no items
    preds = np.where(rng.random(60) < 0.6, targs, rng.integers(0, k, 60))
    preds[preds == 1] = 0  # class 1 is never predicted
    vocab = [f"c{i}" for i in range(k)]
    r = E.Evaluation(vocab, np.eye(k)[preds], targs, np.arange(60))
    present = sorted(set(targs.tolist()))
    p, rc, f, n = SK.precision_recall_fscore_support(targs, preds, labels=present, zero_division=0)
    names = [vocab[i] for i in present]
    assert r.precision == pytest.approx(dict(zip(names, p))) and r.recall == pytest.approx(dict(zip(names, rc)))
    assert r.f1 == pytest.approx(dict(zip(names, f))) and r.support == dict(zip(names, n.tolist()))
    assert r.macro_f1 == pytest.approx(SK.f1_score(targs, preds, labels=present, average="macro", zero_division=0))
    with warnings.catch_warnings():  # scikit-learn warns of the predicted class that has no items
        warnings.simplefilter("ignore")
        ref = SK.balanced_accuracy_score(targs, preds)
    assert r.balanced_accuracy == pytest.approx(ref)


def test_evaluation_empty():
    r = E.Evaluation(["a", "b", "c"], np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert math.isnan(r.accuracy) and r.n == 0 and r.top_losses() == [] and r.per_class == {}
    assert r.precision == r.recall == r.f1 == r.support == {}
    assert math.isnan(r.macro_f1) and math.isnan(r.balanced_accuracy)
    assert r.most_confused() == [] and r.confusion.shape == (3, 3)


def test_evaluate_agrees_with_baseline(tiny4):
    ds = open_dataset(tiny4, size=16, valid_pct=0.5)
    b = baseline(ds, "rmse")
    r = E.evaluate(fit(ds, "rmse"), ds, "valid")
    assert np.array_equal(r.preds, b["preds"]) and r.accuracy == pytest.approx(b["accuracy"])
    assert r.per_class == pytest.approx(b["per_class"])
    assert np.allclose(r.probs.sum(1), 1, atol=1e-5)
    assert np.allclose(r.probs, b["evaluation"].probs, atol=1e-6)  # the baseline's own Evaluation: same figures
    for t in r.top_losses():
        i = t["index"]
        assert ds.split[i] == 1 and t["path"] == ds.items[i] and t["actual"] == ds.vocab[ds.labels[i]]
    cm = r.confusion
    assert cm.sum() == len(ds.idx("valid")) and np.trace(cm) == round(r.accuracy * cm.sum())


def test_evaluate_model_falls_back_to_test(tmp_path):
    from conftest import make_image
    root = tmp_path / "d"
    for split, n in (("train", 3), ("test", 2)):
        for k in range(2):
            (root / split / f"c{k}").mkdir(parents=True)
            for i in range(n):
                make_image(k, i, 16).save(root / split / f"c{k}" / f"{i}.png")
    ds = open_dataset(root, size=16)
    r = E.evaluate(fit(ds), ds, "valid")
    assert r.n == 4
    b = baseline(ds)  # the baseline's indices and distances come from that same split
    assert b["n_valid"] == 4 and b["distances"].shape == (4, 2) and np.array_equal(b["evaluation"].idx, r.idx)


def test_get_probs_batches_agree():
    imgs = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 4), dtype=np.uint8)
    model = fit_like(imgs)
    a, b = E.get_probs(model, imgs, bs=3), E.get_probs(model, imgs, bs=256)
    assert torch.allclose(a, b) and a.shape == (10, 2) and torch.allclose(a.sum(1), torch.ones(10))


def test_temperature_scales_the_probabilities_not_the_answers(tiny4):
    ds = open_dataset(tiny4, size=16, valid_pct=0.5)
    model = fit(ds, "rmse")
    with torch.inference_mode():
        logits = model(torch.from_numpy(ds.images[ds.idx("valid")])).float()
    plain, warm = E.evaluate(model, ds), E.evaluate(model, ds, temperature=2.5)
    assert np.allclose(plain.probs, torch.softmax(logits, 1).numpy(), atol=1e-6)
    assert np.allclose(warm.probs, torch.softmax(logits / 2.5, 1).numpy(), atol=1e-6)
    assert np.array_equal(plain.preds, warm.preds) and plain.accuracy == warm.accuracy
    assert plain.macro_f1 == warm.macro_f1 and plain.top_losses()[0]["loss"] != warm.top_losses()[0]["loss"]


def fit_like(imgs):
    from logoapp.ideal import PixelSimilarity, class_means
    return PixelSimilarity(class_means(imgs, np.arange(len(imgs)) % 2, 2))


def test_evaluate_a_model_of_other_classes_and_channels(tiny4):
    """What `logoapp eval` does with a model trained elsewhere: the classes it knows, in its order; its channels."""
    ds = open_dataset(tiny4, size=16)
    vocab = ["class2", "class0"]
    sub = np.flatnonzero(np.isin(ds.labels, [2, 0]))
    means = torch.stack([torch.as_tensor(ds.images[sub][ds.labels[sub] == k][..., :3]).float().mean(0) / 255
                         for k in (2, 0)]).permute(0, 3, 1, 2)
    from logoapp.ideal import PixelSimilarity
    r = E.evaluate(PixelSimilarity(means), ds, "all", vocab=vocab, channels=3)
    assert r.n == len(sub) and r.vocab == vocab and np.array_equal(np.sort(r.idx), sub)
    assert list(r.targs) == [{2: 0, 0: 1}[y] for y in ds.labels[r.idx]]
    assert r.accuracy > 0.9 and r.split == "all"


def test_align_vocab(tiny4):
    ds = open_dataset(tiny4, size=16)
    keep, targs = E.align_vocab(["class2", "class0", "zebra"], ds)
    names = [ds.vocab[y] for y in ds.labels]
    assert list(keep) == [n in ("class0", "class2") for n in names]
    assert list(targs[keep]) == [{"class2": 0, "class0": 1}[n] for n in names if n in ("class0", "class2")]
