"""Tests for the embedded crest dataset generator."""
import json

import numpy as np
import pytest
from PIL import Image

from logoapp import synth


def arr(img): return np.asarray(img, dtype=np.float32) / 255


def test_crest_is_deterministic():
    a, b = synth.crest(0, seed=1, i=3), synth.crest(0, seed=1, i=3)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(synth.crest(0, seed=1, i=4)))
    assert not np.array_equal(np.asarray(a), np.asarray(synth.crest(0, seed=2, i=3)))


@pytest.mark.parametrize("size", [140, 64])
def test_crest_image_properties(size):
    for k in range(len(synth.CLUBS)):
        img = synth.crest(k, seed=0, i=k, size=size)
        assert img.size == (size, size) and img.mode == "RGBA"
        a = arr(img)[..., 3]
        corners = np.concatenate([a[:4, :4].ravel(), a[:4, -4:].ravel(), a[-4:, :4].ravel(), a[-4:, -4:].ravel()])
        assert corners.mean() < 0.05
        assert (a > 0.99).mean() > 0.2           # a solid crest in the middle
        assert a[size // 2 - 3:size // 2 + 3, size // 2 - 3:size // 2 + 3].min() > 0.9


def test_class_names():
    assert len(synth.CLUBS) >= 8
    names = synth.class_names()
    assert names == [c.name for c in synth.CLUBS] and len(set(names)) == len(names)
    assert all(n == n.lower() and " " not in n for n in names)
    assert synth.class_names(2) == names[:2]
    for bad in (0, -1, len(synth.CLUBS) + 1):
        with pytest.raises(ValueError): synth.class_names(bad)


def test_red_pair_is_mostly_red():
    for k in (0, 1):
        x = np.stack([arr(synth.crest(k, seed=0, i=i)) for i in range(5)])
        r, g, b = x[..., :3][x[..., 3] > 0.99].mean(0)
        assert r > g + 0.25 and r > b + 0.25, (k, r, g, b)


def test_generate_and_reuse(tmp_path):
    out = tmp_path / "set"
    calls = []
    assert synth.generate(out, n_classes=3, per_class=5, size=64, progress=lambda d, t: calls.append((d, t))) == out
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == sorted(synth.class_names(3))
    for name in dirs:
        files = sorted(p.name for p in (out / name).glob("*.png"))
        assert files == [f"{name}_{i:04d}.png" for i in range(5)]
        assert Image.open(out / name / files[0]).size == (64, 64)
    assert calls[-1] == (15, 15)
    marker = json.loads((out / ".complete").read_text())
    assert marker["per_class"] == 5 and marker["size"] == 64 and marker["classes"] == synth.class_names(3)
    name = synth.class_names()[2]
    assert np.array_equal(np.asarray(Image.open(out / name / f"{name}_0003.png")), np.asarray(synth.crest(2, 0, 3, 64)))
    stamp = (out / ".complete").stat().st_mtime_ns
    synth.generate(out, n_classes=3, per_class=5, size=64)    # same params: reused as is
    assert (out / ".complete").stat().st_mtime_ns == stamp
    synth.generate(out, n_classes=2, per_class=4, size=32)    # other params: replaced
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(synth.class_names(2))
    assert len(list(out.rglob("*.png"))) == 8
    assert [p.name for p in tmp_path.iterdir()] == ["set"]   # no partial folders left behind


def test_generate_into_empty_dir_and_refuses_foreign(tmp_path):
    synth.generate(tmp_path, n_classes=1, per_class=2, size=32)
    assert synth.is_complete(tmp_path)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError): synth.generate(foreign, n_classes=1, per_class=2, size=32)
    assert (foreign / "notes.txt").exists()


def test_incomplete_set_is_not_reused(tmp_path):
    synth.generate(tmp_path, n_classes=1, per_class=2, size=32)
    (tmp_path / ".complete").unlink()                         # no marker: not a finished set
    assert not synth.is_complete(tmp_path)
    with pytest.raises(FileExistsError): synth.generate(tmp_path, n_classes=1, per_class=2, size=32)


def test_parallel_matches_serial(tmp_path):
    out = synth.generate(tmp_path / "p", n_classes=2, per_class=200, size=24, seed=5)   # big enough for the pool
    for k, name in enumerate(synth.class_names(2)):
        for i in (0, 77, 199):
            got = np.asarray(Image.open(out / name / f"{name}_{i:04d}.png"))
            assert np.array_equal(got, np.asarray(synth.crest(k, 5, i, 24)))


def test_default_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "generate", lambda out, **kw: (out, kw))
    out, kw = synth.default_dataset(tmp_path / "d")
    assert out == tmp_path / "d" and kw["n_classes"] is None and kw["per_class"] == 300
    assert kw["size"] == 140 and kw["seed"] == 0
    monkeypatch.setenv("LOGOAPP_CACHE", str(tmp_path / "cache"))
    out, _ = synth.default_dataset()
    assert out == tmp_path / "cache" / "crests-v1"


def test_interrupted_run_leaves_nothing(tmp_path):
    def stop(done, total):
        if done: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        synth.generate(tmp_path / "x", n_classes=2, per_class=60, size=32, progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError): synth.generate(tmp_path / "x", per_class=0)
    with pytest.raises(ValueError): synth.generate(tmp_path / "x", n_classes=len(synth.CLUBS) + 1)
    with pytest.raises(IndexError): synth.crest(len(synth.CLUBS), 0, 0)


def test_template_is_upright_copy():
    t = synth.template(0, 64)
    assert t.size == (64, 64) and t.mode == "RGBA"
    t.paste((0, 0, 0, 0), (0, 0, 64, 64))
    assert arr(synth.template(0, 64))[..., 3].max() == 1    # the cached original is untouched
