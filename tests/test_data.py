"""Folder -> Dataset: every kind of bad file, layouts, the split and the on-disk uint8 cache."""
from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_folder, make_image
from logoapp import data as D
from logoapp.data import DataError, open_dataset, split_indices

S = 16  # dataset image size for these tests


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


def huge_png(w: int = 20000, h: int = 20000) -> bytes:
    def chunk(kind, d):
        return struct.pack(">I", len(d)) + kind + d + struct.pack(">I", zlib.crc32(kind + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def snapshot(root: Path) -> dict:
    """Every entry under root (hidden ones and links too): what a read-only loader must leave exactly as it was."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_file():
                st = p.stat()
                out[rel] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                out[rel] = ("dir",)
    return out


def noise(size=S, mode="RGB", seed=0) -> Image.Image:
    a = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(a).convert(mode)


BAD = {  # relative path -> words its reason must contain
    "cats/zero.png": "empty",
    "cats/trunc.png": "truncated",
    "cats/trunc.jpg": "truncated",
    "cats/notes.png": "text file",
    "cats/page.png": "HTML",
    "cats/vector.svg": "SVG",
    "cats/vector_renamed.png": "SVG",
    "cats/huge.png": "too large",
    "cats/readme.txt": ".txt",
    "stray.png": "not inside a class folder",
}


@pytest.fixture
def messy(tmp_path) -> Path:
    """A folder with every kind of trouble, next to good images of two real classes."""
    root = tmp_path / "messy"
    make_folder(root, names=["cats", "dogs"], per_class=6, size=S)
    c = root / "cats"
    (c / "zero.png").write_bytes(b"")
    png, jpg = encode(noise(64)), encode(noise(64), "JPEG")
    (c / "trunc.png").write_bytes(png[:len(png) // 2])
    (c / "trunc.jpg").write_bytes(jpg[:len(jpg) // 2])
    (c / "notes.png").write_text("shopping list\n- milk\n- eggs\n")
    (c / "page.png").write_text("<!DOCTYPE html>\n<html><body>Access denied</body></html>\n")
    svg = '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"></svg>\n'
    (c / "vector.svg").write_text(svg)
    (c / "vector_renamed.png").write_text(svg)
    (c / "huge.png").write_bytes(huge_png())
    (c / "readme.txt").write_text("not a picture")
    # unusual but usable
    frames = [Image.new("RGB", (S, S), col) for col in [(250, 0, 0), (0, 0, 250)]]
    frames[0].save(c / "anim.gif", save_all=True, append_images=frames[1:], duration=40, loop=0)
    v = np.linspace(0, 65535, S * S).astype(np.uint16).reshape(S, S)
    Image.frombytes("I;16", (S, S), v.astype("<u2").tobytes()).save(c / "deep16.png")
    Image.new("CMYK", (S, S), (0, 255, 255, 0)).save(c / "cmyk.jpg", quality=95)
    p = Image.new("P", (S, S), 0)
    p.putpalette([0, 255, 0, 255, 0, 0] + [0] * 762)
    p.paste(1, (0, 0, S // 2, S))
    p.save(c / "pal.png", transparency=0)
    Image.new("LA", (S, S), (90, 40)).save(c / "la.png")
    Image.new("L", (S, S), 77).save(c / "l.png")
    Image.new("RGB", (1, 1), (10, 200, 30)).save(c / "dot.png")
    img = Image.new("RGB", (2 * S, S), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, S, S))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(c / "exif.jpg", exif=exif.tobytes(), quality=95)
    make_image(0, 50, S).save(c / "café ünï 😀.png")
    make_image(0, 51, S).save(c / "with  spaces & (1).png")
    (c / "sub" / "deeper").mkdir(parents=True)
    make_image(0, 52, S).save(c / "sub" / "deeper" / "nested.png")
    os.symlink(".", c / "loop")              # a symlink loop: must terminate
    os.symlink("..", c / "sub" / "up")       # and a second one, through the parent
    # hidden entries: ignored, neither loaded nor reported
    make_image(0, 53, S).save(c / ".hidden.png")
    (c / ".thumbs").mkdir()
    make_image(0, 54, S).save(c / ".thumbs" / "t.png")
    (root / ".cache").mkdir()
    make_image(1, 55, S).save(root / ".cache" / "x.png")
    (root / ".DS_Store").write_bytes(b"\0\1\2junk")
    # folder-level trouble
    (root / "empty").mkdir()
    (root / "solo").mkdir()
    make_image(1, 56, S).save(root / "solo" / "only.png")
    make_image(1, 57, S).save(root / "stray.png")
    return root


def test_every_bad_file_reported_and_nothing_touched(messy):
    before = snapshot(messy)
    ds = open_dataset(messy, size=S)
    assert snapshot(messy) == before

    bad = {str(Path(b.path).relative_to(messy)): b.reason for b in ds.bad}
    assert set(bad) == set(BAD), bad
    for rel, words in BAD.items():
        assert words in bad[rel], (rel, bad[rel])
        assert "\n" not in bad[rel]
    assert ds.summary()["bad"] == [{"path": b.path, "reason": b.reason} for b in ds.bad]

    loaded = sorted(str(Path(p).relative_to(messy)) for p in ds.items)
    usable = ["anim.gif", "deep16.png", "cmyk.jpg", "pal.png", "la.png", "l.png", "dot.png", "exif.jpg",
              "café ünï 😀.png", "with  spaces & (1).png", "sub/deeper/nested.png"]
    expected = ([f"cats/cats_{i:03d}.png" for i in range(6)] + [f"cats/{n}" for n in usable]
                + [f"dogs/dogs_{i:03d}.png" for i in range(6)] + ["solo/only.png"])
    assert loaded == sorted(expected)  # each once: the symlink loops added nothing
    assert ds.vocab == ["cats", "dogs", "solo"]
    assert len(ds.images) == len(ds.items) == len(ds.labels) == len(ds.split) == len(ds.sizes) == len(ds.modes)
    assert any("empty" in n and "left out" in n for n in ds.notes)
    assert any("solo" in n and "only 1 image" in n for n in ds.notes)
    assert not any(".cache" in n for n in ds.notes)
    assert ds.split[ds.items.index(str(messy / "solo" / "only.png"))] == 0
    json.dumps(ds.summary())


def test_unusual_images_decoded_right(messy):
    ds = open_dataset(messy, size=S)
    assert ds.channels == 4  # most images are transparent crests

    def img(name):
        return ds.images[ds.items.index(str(messy / "cats" / name))].astype(int)

    assert (img("anim.gif") == [250, 0, 0, 255]).all()                    # first frame
    v = np.linspace(0, 65535, S * S).astype(np.uint16).reshape(S, S)
    assert np.array_equal(img("deep16.png")[..., 0], v >> 8)              # scaled, not clipped
    assert np.abs(img("cmyk.jpg")[..., :3] - [255, 0, 0]).max() <= 8
    pal = img("pal.png")
    assert (pal[:, S // 2:, 3] == 0).all() and (pal[:, :S // 2] == [255, 0, 0, 255]).all()
    assert (img("la.png") == [90, 90, 90, 40]).all()
    assert (img("l.png") == [77, 77, 77, 255]).all()
    assert (img("dot.png") == [10, 200, 30, 255]).all()
    ex = img("exif.jpg")
    assert np.abs(ex[:4, :, :3].mean((0, 1)) - [0, 0, 255]).max() < 25    # rotated: blue on top
    assert np.abs(ex[-4:, :, :3].mean((0, 1)) - [255, 0, 0]).max() < 25
    modes = dict(zip([Path(p).name for p in ds.items], ds.modes))
    assert modes["deep16.png"].startswith("I") and modes["cmyk.jpg"] == "CMYK" and modes["pal.png"] == "P"
    sizes = dict(zip([Path(p).name for p in ds.items], ds.sizes))
    assert sizes["dot.png"] == (1, 1)


def test_messy_folder_from_cache_is_the_same(messy):
    a = open_dataset(messy, size=S)
    b = open_dataset(messy, size=S)
    assert a.items == b.items and a.vocab == b.vocab and np.array_equal(a.images, b.images)
    assert [(x.path, x.reason) for x in a.bad] == [(x.path, x.reason) for x in b.bad]
    assert a.notes == b.notes and a.sizes == b.sizes and a.modes == b.modes


@pytest.mark.timeout(60)
def test_symlink_loop_to_root_terminates(tmp_path):
    root = make_folder(tmp_path / "d", per_class=3, size=S)
    os.symlink("..", root / "class0" / "up")
    os.symlink("self.png", root / "class1" / "self.png")  # a link to itself
    ds = open_dataset(root, size=S)
    assert len(ds.items) == 6  # nothing seen twice, nothing of class1 labelled class0 through the link
    for p, y in zip(ds.items, ds.labels):
        assert Path(p).parent.name == ds.vocab[y]
    assert any("self.png" in b.path for b in ds.bad)


def test_non_utf8_file_name(tmp_path):
    root = make_folder(tmp_path / "d", per_class=3, size=S)
    make_image(0, 9, S).save(os.path.join(os.fsencode(root / "class0"), b"bad\xffname.png"))
    for _ in range(2):  # fresh, then from the cache
        ds = open_dataset(root, size=S)
        assert len(ds.items) == 7 and not ds.bad
        json.dumps(ds.summary())


# ---------------------------------------------------------------- whole-folder errors

def one_line(e) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


def test_missing_folder(tmp_path):
    with pytest.raises(DataError) as e:
        open_dataset(tmp_path / "nowhere")
    assert "no such folder" in one_line(e) and "nowhere" in str(e.value)


def test_not_a_folder(tmp_path):
    f = tmp_path / "a.png"
    make_image(0, 0).save(f)
    with pytest.raises(DataError) as e:
        open_dataset(f)
    assert "not a folder" in one_line(e)


def test_no_classes(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError) as e:
        open_dataset(tmp_path / "d")
    assert "no class folders" in one_line(e)
    make_image(0, 0).save(tmp_path / "d" / "loose.png")
    with pytest.raises(DataError):
        open_dataset(tmp_path / "d")


def test_one_class_only(tmp_path):
    root = make_folder(tmp_path / "d", n_classes=1, per_class=4, size=S)
    (root / "empty").mkdir()
    with pytest.raises(DataError) as e:
        open_dataset(root, size=S)
    assert "only one class" in one_line(e) and "class0" in str(e.value)


def test_only_bad_files(tmp_path):
    for k in range(2):
        (tmp_path / "d" / f"c{k}").mkdir(parents=True)
        (tmp_path / "d" / f"c{k}" / "x.png").write_bytes(b"")
    with pytest.raises(DataError) as e:
        open_dataset(tmp_path / "d", size=S)
    assert "no readable images" in one_line(e) and "empty file" in str(e.value)


@pytest.mark.parametrize("kw", [dict(valid_pct=1.0), dict(valid_pct=-0.1), dict(size=4), dict(size=5000)])
def test_bad_arguments(tiny, kw):
    with pytest.raises(DataError) as e:
        open_dataset(tiny, **kw)
    one_line(e)


# ---------------------------------------------------------------- layouts

def presplit(root: Path, splits: dict) -> Path:
    """splits: folder name -> {class: n images}."""
    i = 0
    for split, classes in splits.items():
        for cls, n in classes.items():
            (root / split / cls).mkdir(parents=True)
            for _ in range(n):
                make_image(int(cls[-1]), i, S).save(root / split / cls / f"{i}.png")
                i += 1
    return root


@pytest.mark.parametrize("valid_name", ["valid", "validation", "val", "Valid"])
def test_train_valid_layout(tmp_path, valid_name):
    root = presplit(tmp_path / "d", {"train": {"c0": 4, "c1": 3}, valid_name: {"c0": 2, "c1": 1, "c2": 2}})
    ds = open_dataset(root, size=S)
    assert ds.presplit and ds.vocab == ["c0", "c1", "c2"]  # the union of both folders' classes
    for p, s, y in zip(ds.items, ds.split, ds.labels):
        assert s == (0 if "/train/" in p else 1)
        assert ds.vocab[y] == Path(p).parent.name
    c = ds.summary()["counts"]
    assert c["c0"] == {"train": 4, "valid": 2, "test": 0, "total": 6}
    assert c["c2"] == {"train": 0, "valid": 2, "test": 0, "total": 2}
    assert ds.summary()["n_train"] == 7 and ds.summary()["n_valid"] == 5 and ds.summary()["presplit"]


def test_train_test_layout_uses_test_for_validation(tmp_path):
    root = presplit(tmp_path / "d", {"train": {"c0": 3, "c1": 3}, "test": {"c0": 2, "c1": 2}})
    ds = open_dataset(root, size=S)
    assert ds.presplit and len(ds.idx("valid")) == 4 and len(ds.idx("test")) == 0


def test_train_valid_test_layout_keeps_test_apart(tmp_path):
    root = presplit(tmp_path / "d", {"train": {"c0": 3, "c1": 3}, "valid": {"c0": 1, "c1": 1},
                                      "test": {"c0": 2, "c1": 2, "c3": 1}})
    (root / "extra" / "c0").mkdir(parents=True)
    make_image(0, 99, S).save(root / "extra" / "c0" / "x.png")
    (root / ".ipynb_checkpoints").mkdir()
    make_image(0, 98, S).save(root / "stray.png")
    make_image(0, 97, S).save(root / "train" / "loose.png")
    ds = open_dataset(root, size=S)
    assert {(Path(b.path).relative_to(root).as_posix(), b.reason) for b in ds.bad} == {
        ("stray.png", "image is not inside a class folder"), ("train/loose.png", "image is not inside a class folder")}
    assert ds.vocab == ["c0", "c1", "c3"]
    for p, s in zip(ds.items, ds.split):
        assert s == {"train": 0, "valid": 1, "test": 2}[Path(p).parent.parent.name]
    assert (len(ds.idx("train")), len(ds.idx("valid")), len(ds.idx("test"))) == (6, 2, 5)
    assert not any("extra" in p for p in ds.items)
    assert any("extra" in n for n in ds.notes)
    assert not any("ipynb" in n for n in ds.notes)  # hidden folders are ignored, not reported
    assert ds.summary()["n_test"] == 5


def test_presplit_with_empty_valid_is_an_error(tmp_path):
    root = presplit(tmp_path / "d", {"train": {"c0": 3, "c1": 3}})
    (root / "valid" / "c0").mkdir(parents=True)
    (root / "valid" / "c0" / "x.png").write_bytes(b"")
    with pytest.raises(DataError) as e:
        open_dataset(root, size=S)
    one_line(e)


def test_class_named_like_a_split_without_partner_is_a_class(tmp_path):
    root = make_folder(tmp_path / "d", names=["train", "other"], per_class=3, size=S)
    ds = open_dataset(root, size=S)
    assert not ds.presplit and ds.vocab == ["other", "train"]


# ---------------------------------------------------------------- split

def test_split_is_deterministic_and_stratified(tiny4):
    a = open_dataset(tiny4, size=S, seed=1)
    b = open_dataset(tiny4, size=S, seed=1)
    c = open_dataset(tiny4, size=S, seed=2)
    assert np.array_equal(a.split, b.split)
    assert not np.array_equal(a.split, c.split)
    for ds in (a, c):
        for k in range(ds.c):
            assert ((ds.labels == k) & (ds.split == 1)).sum() == round(16 * 0.2)
    assert not a.presplit and set(np.unique(a.split)) == {0, 1}


@pytest.mark.parametrize("pct", [0.0, 0.1, 0.25, 0.5, 0.9])
def test_valid_pct_respected(tiny4, pct):
    ds = open_dataset(tiny4, size=S, valid_pct=pct)
    for k in range(4):
        n = int(((ds.labels == k) & (ds.split == 1)).sum())
        want = round(16 * pct)
        assert n == (min(max(1, want), 15) if pct > 0 else 0)
    assert ds.valid_pct == pct


def test_split_indices_brute_force():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 200)
    labels[:1] = 7  # a class with one item stays in train
    s = split_indices(labels, 0.3, seed=3)
    assert np.array_equal(s, split_indices(labels, 0.3, seed=3))
    for k in np.unique(labels):
        n = (labels == k).sum()
        want = 0 if n < 2 else min(max(1, round(n * 0.3)), n - 1)
        assert (s[labels == k] == 1).sum() == want


# ---------------------------------------------------------------- cache

def cache_files():
    return sorted(p.name for p in (D.cache_dir() / "datasets").glob("*") if not p.name.startswith("."))


def forbid_decoding(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("decoded although the cache should have been used")
    monkeypatch.setattr(D, "decode", boom)
    monkeypatch.setattr(D, "header", boom)


def test_second_open_uses_cache(tiny, monkeypatch):
    a = open_dataset(tiny, size=S)
    assert len(cache_files()) == 2
    with monkeypatch.context() as m:
        forbid_decoding(m)
        b = open_dataset(tiny, size=S)
        c = open_dataset(tiny, size=S, seed=7)  # a different split needs no decoding either
    assert np.array_equal(a.images, b.images) and a.images.dtype == b.images.dtype == np.uint8
    assert a.items == b.items and np.array_equal(a.labels, b.labels) and np.array_equal(a.split, b.split)
    assert a.sizes == b.sizes and a.modes == b.modes
    assert np.array_equal(a.images, c.images) and not np.array_equal(a.split, c.split)


def test_cache_not_used_for_another_size(tiny, monkeypatch):
    open_dataset(tiny, size=S)
    calls = []
    real = D.decode
    monkeypatch.setattr(D, "decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    ds = open_dataset(tiny, size=20)
    assert ds.size == 20 and len(calls) == 24


def test_touching_or_adding_a_file_invalidates_cache(tiny, monkeypatch):
    a = open_dataset(tiny, size=S)
    calls = []
    real = D.decode
    monkeypatch.setattr(D, "decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    f = tiny / "class0" / "class0_000.png"
    st = f.stat()
    make_image(1, 0, 32).save(f)  # new content...
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    b = open_dataset(tiny, size=S)
    assert calls and not np.array_equal(a.images, b.images)
    calls.clear()
    make_image(1, 77, 32).save(tiny / "class1" / "new.png")
    c = open_dataset(tiny, size=S)
    assert calls and len(c.items) == 25
    calls.clear()
    (tiny / "class1" / "new.png").unlink()
    d = open_dataset(tiny, size=S)
    assert len(d.items) == 24 and np.array_equal(d.images, b.images)


def test_corrupt_cache_is_ignored(tiny):
    a = open_dataset(tiny, size=S)
    for p in (D.cache_dir() / "datasets").glob("*.npy"):
        p.write_bytes(b"garbage")
    b = open_dataset(tiny, size=S)
    assert np.array_equal(a.images, b.images)


def test_no_cache_writes_nothing(tiny):
    open_dataset(tiny, size=S, cache=False)
    assert not (D.cache_dir() / "datasets").exists() or cache_files() == []


def test_unwritable_cache_only_costs_speed(tiny, monkeypatch):
    def fail(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "save", fail)
    ds = open_dataset(tiny, size=S)
    assert len(ds.items) == 24


def test_channels_follow_the_images(tmp_path):
    rgba = open_dataset(make_folder(tmp_path / "rgba", per_class=4, size=S), size=S)
    assert rgba.channels == 4 and rgba.summary()["channels"] == 4
    root = tmp_path / "rgb"
    for k in range(2):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(4):
            make_image(k, i, S, mode="RGB").save(root / f"c{k}" / f"{i}.jpg")
    rgb = open_dataset(root, size=S)
    assert rgb.channels == 3 and rgb.images.shape == (8, S, S, 3)


def test_threaded_decoding_matches_serial(tiny4):
    a = open_dataset(tiny4, size=S, cache=False, workers=1)
    b = open_dataset(tiny4, size=S, cache=False, workers=2)
    assert a.items == b.items and np.array_equal(a.images, b.images)


def test_progress_reports_to_the_end(tiny4):
    seen = []
    open_dataset(tiny4, size=S, cache=False, progress=lambda d, t, what="": seen.append((d, t)))
    assert seen and seen[-1] == (64, 64)


def test_images_match_decode(tiny):
    from logoapp.images import decode
    ds = open_dataset(tiny, size=20)
    for p, x in zip(ds.items, ds.images):
        assert np.array_equal(x, decode(p, 20, ds.channels))


def test_fit_size_keeps_small_images_small():
    assert D.fit_size([32] * 5 + [500], 140) == 32           # the median, not the largest
    assert D.fit_size([1000, 3000, 640], 140) == 140         # big photos: at most Settings.size
    assert D.fit_size([6, 8], 140) == 16                     # never below 16
    assert D.fit_size([], 140) == 140                        # nothing readable: the default


def test_no_size_stores_images_at_their_own_size(tmp_path, monkeypatch):
    small = make_folder(tmp_path / "small", per_class=5, size=24)
    big = make_folder(tmp_path / "big", per_class=5, size=200)
    a, b = open_dataset(small), open_dataset(big)
    assert a.images.shape[1:] == (24, 24, 4) and b.size == 140
    assert np.array_equal(a.images[0], np.asarray(Image.open(a.items[0])))  # not resampled at all
    assert open_dataset(small, size=48).size == 48           # an explicit size still wins
    with monkeypatch.context() as m:                         # and a fitted size is found again from the cache
        forbid_decoding(m)
        again = open_dataset(small)
    assert np.array_equal(again.images, a.images)
