"""Dataset audit (duplicates, leakage, label issues, odd images) and the fix log, on tiny generated folders."""
from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from conftest import make_folder, make_image
from logoapp import audit as A
from logoapp import fixes
from logoapp.data import open_dataset


def scene(seed: int, size: int = 96) -> Image.Image:
    """A photo-like picture: a colour gradient with eight random shapes, softly blurred; every seed different."""
    r = np.random.default_rng(seed)
    a = np.linspace(0, 1, size)[None, :, None]
    c0, c1 = r.integers(0, 256, 3), r.integers(0, 256, 3)
    img = Image.fromarray(np.broadcast_to(c0 * (1 - a) + c1 * a, (size, size, 3)).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(8):
        x0, y0 = r.integers(-size // 4, size, 2)
        w, h = r.integers(size // 8, size // 2, 2)
        shape = d.ellipse if r.integers(2) else d.rectangle
        shape((x0, y0, x0 + w, y0 + h), fill=tuple(r.integers(0, 256, 3).tolist()))
    return img.filter(ImageFilter.GaussianBlur(0.6))


def jpeg(img: Image.Image, scale: float, quality: int = 75) -> Image.Image:
    """Resized and re-encoded as JPEG (transparency flattened onto white first)."""
    img = img.convert("RGBA").resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    flat = Image.new("RGBA", img.size, (255, 255, 255, 255))
    flat.alpha_composite(img)
    buf = io.BytesIO()
    flat.convert("RGB").save(buf, "JPEG", quality=quality)
    return Image.open(buf)


def crop(img: Image.Image, share: float = 0.01) -> Image.Image:
    w, h = img.size
    return img.crop((round(w * share) + 1, round(h * share), w - round(w * share), h - round(h * share) - 1))


def recolour(img: Image.Image) -> Image.Image:
    return ImageEnhance.Color(ImageEnhance.Brightness(img).enhance(1.12)).enhance(0.75)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes), and every folder (-> None)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        out.update({(rel / d).as_posix() + "/": None for d in dirnames})
        out.update({(rel / f).as_posix(): Path(dirpath, f).read_bytes() for f in filenames})
    return out


def contents(root: Path) -> list[str]:
    """Hashes of every file's bytes (the log left out): what must never shrink while files move."""
    return sorted(hashlib.sha1(b).hexdigest() for k, b in snapshot(root).items()
                  if b is not None and not k.endswith(fixes.LOG))


@pytest.fixture
def copies(tmp_path) -> tuple[Path, list[tuple[str, str, bool]]]:
    """train/ and valid/ with 4 classes of distinct scenes, and planted copies: (original, copy, exact)."""
    root = tmp_path / "scenes"
    for k in range(4):
        for i in range(10):
            split = "valid" if i >= 8 else "train"
            (root / split / f"c{k}").mkdir(parents=True, exist_ok=True)
            scene(100 * k + i).save(root / split / f"c{k}" / f"s{i}.png")
    plant = [("train/c0/s0.png", "valid/c0/s0-same.png", True, lambda im: im),
             ("train/c1/s1.png", "valid/c1/s1-small.jpg", False, lambda im: jpeg(im, 0.7)),
             ("train/c2/s2.png", "valid/c2/s2-big.jpg", False, lambda im: jpeg(im, 1.6, 85)),
             ("train/c3/s3.png", "valid/c3/s3-crop.png", False, crop),
             ("valid/c0/s8.png", "train/c0/s8-recolour.png", False, recolour),
             ("train/c1/s4.png", "train/c1/s4-crop.png", False, crop)]  # within train: not cross-split
    for src, dst, _, make in plant:
        make(Image.open(root / src)).save(root / dst)
    return root, [(str(root / s), str(root / d), exact) for s, d, exact, _ in plant]


def test_planted_copies_grouped_and_counted_across_splits(copies):
    root, planted = copies
    ds = open_dataset(root, cache=False)
    rep = A.audit(ds, folds=0)
    groups = {p: g for g in rep.duplicates for p in g.paths}
    for src, dst, exact in planted:
        assert src in groups and groups[src] is groups.get(dst), (src, dst)
        assert groups[src].exact == exact
    assert len(rep.duplicates) == len(planted)  # no unrelated scene was paired
    assert rep.cross_split == 5 == sum(len(set(g.splits)) > 1 for g in rep.duplicates)
    out = json.loads(json.dumps(rep.to_json()))
    assert out["cross_split"] == 5 and out["conflicts"] == 0 and out["label_issues"] == []
    assert {"paths", "classes", "splits", "exact"} <= set(out["duplicates"][0])
    for key in ("duplicates", "cross_split", "label_issues", "imbalance", "odd", "seconds"):
        assert key in out


def test_transparent_logo_matches_flattened_copies(tmp_path):
    """A crest with transparency and its copies flattened onto white, onto black, with the alpha dropped, halved."""
    from logoapp import synth
    root = tmp_path / "crests"
    for k in range(2):
        (root / f"club{k}").mkdir(parents=True)
        for i in range(12):
            synth.crest(k + 2, 7, i, 128).save(root / f"club{k}" / f"{i}.png")
    src = Image.open(root / "club0" / "3.png")
    jpeg(src, 1.3).save(root / "club0" / "3-white.jpg")
    black = Image.new("RGBA", src.size, (0, 0, 0, 255))
    black.alpha_composite(src.convert("RGBA"))
    black.convert("RGB").save(root / "club0" / "3-black.png")
    src.convert("RGB").save(root / "club0" / "3-noalpha.jpg", quality=90)
    src.resize((64, 64), Image.BICUBIC).convert("RGB").save(root / "club0" / "3-half.jpg", quality=90)
    ds = open_dataset(root, cache=False)
    assert ds.channels == 4
    groups = A.duplicates(ds)
    assert len(groups) == 1
    assert sorted(Path(p).name for p in groups[0].paths) == ["3-black.png", "3-half.jpg", "3-noalpha.jpg",
                                                             "3-white.jpg", "3.png"]


def test_copies_filed_under_two_classes_are_a_conflict(copies):
    root, _ = copies
    Image.open(root / "train" / "c2" / "s5.png").save(root / "train" / "c3" / "stray.png")
    rep = A.audit(open_dataset(root, cache=False), folds=0)
    conflicts = [g for g in rep.duplicates if g.conflict]
    assert len(conflicts) == 1 and sorted(Path(p).name for p in conflicts[0].paths) == ["s5.png", "stray.png"]
    assert sorted(conflicts[0].classes) == ["c2", "c3"] and conflicts[0].exact
    assert rep.to_json()["conflicts"] == 1


def test_leakage_accuracy_without_leaked_images(copies):
    root, _ = copies
    ds = open_dataset(root, cache=False)
    groups = A.duplicates(ds)
    va = ds.idx("valid")
    leaked = {i for g in groups if "train" in g.splits for i, s in zip(g.indices, g.splits) if s == "valid"}
    assert len(leaked) == 5
    probs = np.full((len(va), ds.c), 0.1)
    right = np.array([i in leaked or k % 2 == 0 for k, i in enumerate(va)])  # leaked ones all right, others half
    probs[np.arange(len(va)), np.where(right, ds.labels[va], (ds.labels[va] + 1) % ds.c)] = 0.9
    out = A.leakage(ds, groups, probs=probs)
    assert out["n_leaked"] == 5 and sorted(out["leaked"]) == sorted(ds.items[i] for i in leaked)
    assert out["reported"] == pytest.approx(right.mean())
    assert out["without_leaked"] == pytest.approx(right[[i not in leaked for i in va]].mean())
    from logoapp import ideal
    by_model = A.leakage(ds, groups, model=ideal.fit(ds))  # a model instead of probabilities
    assert by_model["reported"] is not None and by_model["n_leaked"] == 5


def reference_joint(probs, labels):
    """The confident joint straight from the paper's definition, one item at a time."""
    k = probs.shape[1]
    t = [np.mean([p[j] for p, y in zip(probs, labels) if y == j]) for j in range(k)]
    joint = np.zeros((k, k), int)
    for p, y in zip(probs, labels):
        over = [j for j in range(k) if p[j] >= t[j]]
        if over:
            joint[y, max(over, key=lambda j: p[j])] += 1
    return np.array(t), joint


def test_confident_learning_matches_the_definition():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    probs = rng.dirichlet(np.ones(3) * 0.5, 60)
    probs[np.arange(50), labels[:50]] += 2  # most agree with their label, the last 10 are noise
    probs /= probs.sum(1, keepdims=True)
    cl = A.confident_learning(probs, labels)
    t, joint = reference_joint(probs, labels)
    np.testing.assert_allclose(cl["thresholds"], t)
    np.testing.assert_array_equal(cl["joint"], joint)
    assert cl["q"].sum() == pytest.approx(1)
    assert cl["n_estimated"] == round(60 * (cl["q"].sum() - np.trace(cl["q"])))
    assert cl["flagged"][probs.argmax(1) != labels].all()  # nothing the model disagrees with is dropped


def test_planted_relabels_rank_at_the_top(tmp_path):
    root = make_folder(tmp_path / "data", n_classes=4, per_class=20)
    moved = []
    for k, to in ((0, 2), (3, 1)):
        src = root / f"class{k}" / f"class{k}_005.png"
        moved.append(root / f"class{to}" / "planted.png" if not moved else root / f"class{to}" / "planted2.png")
        src.rename(moved[-1])
    ds = open_dataset(root, cache=False)
    calls = []
    rep = A.audit(ds, folds=4, progress=lambda *a: calls.append(a))
    top = [s.path for s in rep.label_issues[:4]]
    assert {str(p) for p in moved} <= set(top), rep.label_issues[:6]
    sug = {s.path: s.suggested for s in rep.label_issues}
    assert sug[str(moved[0])] == "class0" and sug[str(moved[1])] == "class3"
    assert rep.label_issues[0].score >= rep.label_issues[-1].score
    assert rep.labels["folds"] == 4 and len(rep.labels["fold_seconds"]) == 4 and rep.seconds > 0
    assert rep.probs.shape == (len(ds.items), 4)
    assert calls[-1][0] == calls[-1][1] and [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert all(isinstance(m, str) for _, _, m in calls)


def test_odd_images_and_balance(tmp_path):
    root = make_folder(tmp_path / "data", n_classes=2, per_class=15)
    Image.new("RGBA", (32, 32), (40, 40, 40, 255)).save(root / "class0" / "blank.png")
    Image.new("RGBA", (32, 32), (200, 0, 0, 0)).save(root / "class0" / "invisible.png")
    make_image(1, 99, 32).resize((200, 32)).save(root / "class1" / "wide.png")
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 4), np.uint8)
    Image.fromarray(noise).save(root / "class1" / "noise.png")
    ds = open_dataset(root, cache=False)
    odd = {Path(o.path).name: " ".join(o.reasons) for o in A.odd_images(ds)}
    assert "near-blank" in odd.pop("blank.png")
    assert "transparent" in odd.pop("invisible.png")
    assert "aspect" in odd.pop("wide.png")
    assert "far from every class" in odd.pop("noise.png")
    assert odd == {}
    bal = A.imbalance(ds)
    assert bal["counts"] == {"class0": 17, "class1": 17} and bal["ratio"] == 1.0


# ---- the fix log -------------------------------------------------------------------------------------------------

def test_relabel_exclude_undo_round_trip(tiny):
    before, files = snapshot(tiny), contents(tiny)
    Image.open(tiny / "class0" / "class0_001.png").save(tiny / "class1" / "class0_002.png")  # a name to clash with
    before, files = snapshot(tiny), contents(tiny)
    r1 = fixes.relabel(tiny, tiny / "class0" / "class0_001.png", "class1")
    r2 = fixes.relabel(tiny, "class0/class0_002.png", "class1")  # relative path; the name is taken there
    r3 = fixes.exclude(tiny, tiny / "class1" / "class1_000.png")
    r4 = fixes.relabel(tiny, "class1/class1_005.png", "newclass")  # a class folder made on the way
    assert (r1["to"], r2["to"], r3["to"], r4["to"]) == (
        "class1/class0_001.png", "class1/class0_002 (1).png", "_excluded/class1/class1_000.png",
        "newclass/class1_005.png")
    assert r2["renamed"] and not r1["renamed"] and r4["made"] == ["newclass"] and r3["made"] == ["_excluded",
                                                                                               "_excluded/class1"]
    assert contents(tiny) == files  # moved, never deleted or overwritten
    assert [c["to"] for c in fixes.changes(tiny)] == [r["to"] for r in (r1, r2, r3, r4)]
    assert fixes.undo(tiny) == [r4] and not (tiny / "newclass").exists()
    assert len(fixes.changes(tiny)) == 3 and contents(tiny) == files
    assert fixes.undo(tiny, all=True) == [r3, r2, r1]
    assert snapshot(tiny) == before  # byte for byte, file for file, folder for folder; the log is gone too
    assert fixes.undo(tiny) == []


def test_train_valid_layout(copies):
    """In train/ + valid/ folders a relabel stays in its split and an exclusion keeps the split in its path."""
    root, _ = copies
    before = snapshot(root)
    assert fixes.relabel(root, "valid/c1/s9.png", "c2")["to"] == "valid/c2/s9 (1).png"  # c2 has an s9.png
    assert fixes.exclude(root, "train/c0/s3.png")["to"] == "_excluded/train/c0/s3.png"
    ds = open_dataset(root, cache=False)  # _excluded/ is no split: left out
    assert str(root / "valid" / "c2" / "s9 (1).png") in ds.items and not any("_excluded" in p for p in ds.items)
    fixes.undo(root, all=True)
    assert snapshot(root) == before


def test_refusals(tiny, tmp_path):
    outside = tmp_path / "elsewhere.png"
    make_image(0, 1).save(outside)
    for call, words in [(lambda: fixes.relabel(tiny, outside, "class1"), "not inside"),
                        (lambda: fixes.relabel(tiny, "class0/nothing.png", "class1"), "no such file"),
                        (lambda: fixes.relabel(tiny, "class0/class0_000.png", "../up"), "not a usable class"),
                        (lambda: fixes.relabel(tiny, "class0/class0_000.png", "class0"), "already"),
                        (lambda: fixes.exclude(tmp_path / "missing", "x.png"), "no such dataset folder")]:
        with pytest.raises(fixes.FixError, match=words):
            call()
    fixes.exclude(tiny, "class0/class0_000.png")
    with pytest.raises(fixes.FixError, match="excluded already"):
        fixes.exclude(tiny, "_excluded/class0/class0_000.png")
    Image.new("RGB", (4, 4)).save(tiny / "class0" / "class0_000.png")  # someone put a file where undo would go
    with pytest.raises(fixes.FixError, match="exists again"):
        fixes.undo(tiny)
    assert len(fixes.changes(tiny)) == 1  # still logged: nothing was lost


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_folder(tiny):
    before = snapshot(tiny)
    os.chmod(tiny, 0o555)
    try:
        with pytest.raises(fixes.ReadOnlyError, match="read-only"):
            fixes.relabel(tiny, "class0/class0_000.png", "class1")
    finally:
        os.chmod(tiny, 0o755)
    assert snapshot(tiny) == before


def test_read_only_folder_simulated(tiny, monkeypatch):
    """As root chmod stops nothing, so the refusals are simulated: the access check, then a failing move."""
    before = snapshot(tiny)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode == os.W_OK else real(p, mode, **kw))
    with pytest.raises(fixes.ReadOnlyError) as e:
        fixes.exclude(tiny, "class0/class0_000.png")
    assert "\n" not in str(e.value) and "read-only" in str(e.value)
    monkeypatch.setattr(os, "access", real)

    def refuse(*args):
        raise OSError(30, "Read-only file system")
    with monkeypatch.context() as m:
        m.setattr(fixes, "_rename_noreplace", refuse)
        with pytest.raises(fixes.ReadOnlyError, match="read-only"):
            fixes.relabel(tiny, "class0/class0_000.png", "fresh")
    assert snapshot(tiny) == before  # no file moved, no folder left behind, no log written
    monkeypatch.setattr(fixes, "_append", lambda *a: refuse())  # moved, then the log cannot be written
    with pytest.raises(fixes.ReadOnlyError):
        fixes.exclude(tiny, "class0/class0_000.png")
    assert snapshot(tiny) == before  # the move was put back: never a change the log does not know


def _relabel_many(root: str, names: list[str]) -> None:
    for name in names:
        fixes.relabel(root, f"class0/{name}", "class1")


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_concurrent_writers_keep_the_log_whole(tmp_path, kind):
    root = make_folder(tmp_path / "data", n_classes=2, per_class=24)
    before = snapshot(root)
    names = sorted(p.name for p in (root / "class0").iterdir())
    jobs = [names[i::4] for i in range(4)]
    if kind == "threads":
        workers = [threading.Thread(target=_relabel_many, args=(str(root), j)) for j in jobs]
    else:
        workers = [mp.get_context("fork").Process(target=_relabel_many, args=(str(root), j)) for j in jobs]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    recs = fixes.changes(root)  # every line parses
    assert sorted(r["from"] for r in recs) == sorted(f"class0/{n}" for n in names)
    assert not list((root / "class0").iterdir())
    assert len(fixes.undo(root, all=True)) == len(names)
    assert snapshot(root) == before


def test_zip_of_a_fixed_folder(tiny, tmp_path):
    import zipfile
    fixes.exclude(tiny, "class1/class1_003.png")
    out = fixes.zip_folder(tiny)
    again = fixes.zip_folder(tiny)  # an existing zip is never replaced
    assert out.name == "tiny-fixed.zip" and again.name == "tiny-fixed (1).zip"
    names = zipfile.ZipFile(out).namelist()
    assert len(names) == 23 and "tiny/class0/class0_000.png" in names
    assert not any("_excluded" in n or fixes.LOG in n for n in names)
    assert "tiny/_excluded/class1/class1_003.png" in zipfile.ZipFile(fixes.zip_folder(tiny, tmp_path / "all.zip",
                                                                                      include_excluded=True)).namelist()
