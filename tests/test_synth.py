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
        for i in range(6):
            img = synth.crest(k, seed=0, i=i, size=size)
            assert img.size == (size, size) and img.mode == "RGBA"
            lk, a = synth.look(k, 0, i), arr(img)[..., 3]
            if lk.background == "none" and not lk.occluded:   # a cut-out crest: transparent round it
                assert a[:3].mean() + a[-3:].mean() + a[:, :3].mean() + a[:, -3:].mean() < 0.5
                assert 0.1 < a.mean() < 0.8
            elif lk.background != "none":                    # on a background or a shirt: opaque everywhere
                assert a.min() == 1


def test_class_names():
    assert len(synth.CLUBS) >= 8
    names = synth.class_names()
    assert names == [c.name for c in synth.CLUBS] and len(set(names)) == len(names)
    assert all(n == n.lower() and " " not in n for n in names)
    assert synth.class_names(2) == names[:2]
    for bad in (0, -1, len(synth.CLUBS) + 1):
        with pytest.raises(ValueError): synth.class_names(bad)


def colours(img, top=2):
    """The `top` most common colours of a template's opaque pixels, most common first."""
    x = np.asarray(img)
    px = x[..., :3][x[..., 3] == 255]
    cols, counts = np.unique(px, axis=0, return_counts=True)
    return [tuple(int(v) for v in cols[j]) for j in np.argsort(-counts)[:top]]


def near(colour, palette, tol=8):
    """Whether a colour is within tol levels (per channel) of one in palette (resampling moves flat colours a bit)."""
    return min(max(abs(a - b) for a, b in zip(colour, p)) for p in palette) <= tol


def test_each_club_has_several_designs_sharing_its_identity():
    identities = set()
    for k, club in enumerate(synth.CLUBS):
        ts = [np.asarray(synth.template(k, 64, d)) for d in range(len(synth.LAYOUTS))]
        for a in range(len(ts)):                            # every design differs from every other
            for b in range(a):
                assert np.abs(ts[a].astype(int) - ts[b].astype(int)).mean() > 4, (club.name, a, b)
        palette = {club.fill, *club.rings, club.ink, (30, 30, 30)}   # and the dark patches of a ball
        for d in range(len(ts)):                            # ... but is drawn in the club's own colours
            main = colours(synth.template(k, 140, d))
            assert main and all(near(c, palette) for c in main), (club.name, d, main)
            assert club.fill in colours(synth.template(k, 140, d), 4)
        assert len({synth.design(k, d)[0] for d in range(len(ts))}) >= 2   # in more than one outline
        identities.add((club.emblem, club.initials))
    assert len(identities) == len(synth.CLUBS)              # no two clubs share emblem and initials


def test_red_pair_is_a_look_alike_pair():
    a, b = synth.CLUBS[:2]
    assert a.ink == b.ink == synth.WHITE and synth.WHITE in a.rings and synth.WHITE in b.rings
    assert max(abs(x - y) for x, y in zip(a.fill, b.fill)) <= 40    # two shades of the same red
    for k in (0, 1):
        x = arr(synth.template(k, 64, 0))
        r, g, bl = x[..., :3][x[..., 3] > 0.99].mean(0)
        assert r > g + 0.25 and r > bl + 0.25, (k, r, g, bl)


def test_variations_turn_up_as_often_as_the_recipe_says():
    n = 600
    looks = [synth.look(k, 0, i) for k in (0, 5) for i in range(n // 2)]
    assert looks == [synth.look(k, 0, i) for k in (0, 5) for i in range(n // 2)]
    def share(field, value):
        return sum(getattr(lk, field) == value for lk in looks) / n
    for d, p in enumerate(synth.P["designs"]):
        assert abs(share("design", d) - p) < 0.06
    for kind, p in zip(synth.BACKGROUNDS, synth.P["background"]):
        assert abs(share("background", kind) - p) < 0.06, kind
    assert abs(share("occluded", True) - synth.P["occlude"]) < 0.06
    assert abs(share("copy", "small") - synth.P["small"]) < 0.05
    assert abs(share("copy", "blurred") - synth.P["blur"]) < 0.05
    assert synth.look(0, 1, 3) != synth.look(0, 2, 3) or synth.look(0, 1, 4) != synth.look(0, 2, 4)


def test_images_of_a_class_vary_more_than_before():
    """Each club turns up in every design and on every kind of background among its 300 images."""
    looks = [synth.look(1, 0, i) for i in range(300)]
    assert {lk.design for lk in looks} == set(range(len(synth.LAYOUTS)))
    assert {lk.background for lk in looks} == set(synth.BACKGROUNDS)
    assert any(lk.occluded for lk in looks) and {lk.copy for lk in looks} == {"", "small", "blurred"}


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


def test_a_changed_recipe_regenerates(tmp_path, monkeypatch):
    out = synth.generate(tmp_path / "set", n_classes=2, per_class=3, size=32)
    files = lambda: [f.read_bytes() for f in sorted(out.glob("*/*.png"))]  # noqa: E731
    before = files()
    monkeypatch.setitem(synth.P, "occlude", 1.0)
    assert not synth.is_complete(out, synth._params(2, 3, 32, 0))
    synth.generate(out, n_classes=2, per_class=3, size=32)
    assert files() != before


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
    assert out == tmp_path / "cache" / f"crests-v{synth.VERSION}"


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
    for d in range(len(synth.LAYOUTS)):
        t = synth.template(0, 64, d)
        assert t.size == (64, 64) and t.mode == "RGBA"
        t.paste((0, 0, 0, 0), (0, 0, 64, 64))
        assert arr(synth.template(0, 64, d))[..., 3].max() == 1    # the cached original is untouched
