"""Data larger than memory: the cache opened memory-mapped gives the same dataset, bit for bit, as one loaded into
memory; a bad file is left out of the mapped file too; training reads it batch by batch and gets the same model;
readers give their pages back as they go."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import make_folder
from logoapp import ondisk
from logoapp.data import open_dataset


@pytest.fixture
def folder(tmp_path):
    root = make_folder(tmp_path / "d", n_classes=3, per_class=12, size=24)
    (root / "class1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def test_mapped_open_matches_loaded_and_the_hit_maps_again(folder, monkeypatch):
    mem = open_dataset(folder, size=16, mmap=False, cache=False)
    first = open_dataset(folder, size=16, mmap=True)      # a miss: decoded into a file, then mapped
    assert ondisk.is_mapped(first.images) and not ondisk.is_mapped(mem.images)
    again = open_dataset(folder, size=16, mmap=True)      # a hit: the cache file mapped
    assert ondisk.is_mapped(again.images)
    for ds in (first, again):
        assert ds.items == mem.items and (ds.images == mem.images).all() and (ds.split == mem.split).all()
        assert [b.path for b in ds.bad] == [b.path for b in mem.bad] and len(ds.bad) == 1
    loaded = open_dataset(folder, size=16, mmap=False)  # the same cache entry, read into memory
    assert not ondisk.is_mapped(loaded.images) and (loaded.images == mem.images).all()
    monkeypatch.setenv("LOGOAPP_MMAP", "1")
    assert ondisk.is_mapped(open_dataset(folder, size=16).images)
    assert not ondisk.wanted(10**12, False) and ondisk.wanted(1, True)
    monkeypatch.setenv("LOGOAPP_MMAP", "0")
    assert not ondisk.wanted(10**15)


def test_readers_release_pages_every_so_often(folder, monkeypatch):
    ds = open_dataset(folder, size=16, mmap=True)
    calls = []
    monkeypatch.setattr(ondisk, "RELEASE_EVERY", 4 * ds.images[0].nbytes)
    monkeypatch.setattr(ondisk, "release", lambda a: calls.append(a))
    r = ondisk.Rows(ds.images, np.arange(len(ds.items)))
    assert len(r) == len(ds.items) and r.shape == ds.images.shape
    got = np.concatenate([r[i:i + 2] for i in range(0, len(r), 2)])
    assert (got == ds.images).all()
    assert len(calls) == len(ds.items) // 4
    ondisk.Reader(np.zeros((3, 2), np.uint8)).read(10**9)  # in memory: nothing to release, no call
    assert len(calls) == len(ds.items) // 4


def test_training_on_the_map_matches_training_in_memory(folder):
    from logoapp.train import TrainConfig, fit
    cfg = TrainConfig("linear", epochs=2, size=16, seed=1, bs=8)
    a = fit(open_dataset(folder, size=16, mmap=True), cfg)
    b = fit(open_dataset(folder, size=16, mmap=False, cache=False), cfg)
    assert a.accuracy == b.accuracy
    for (k, p), q in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert np.allclose(p.numpy(), q.numpy()), k


def test_bigdata_benchmark_child_reports_its_figures(folder, tmp_path):
    from benchmarks import bigdata
    r = bigdata.child(str(folder), True)
    assert r["mapped"] and r["n"] == 36 and r["cache_bytes"] > 0 and r["images_per_second"] > 0
    assert r["peak_growth"] >= 0
