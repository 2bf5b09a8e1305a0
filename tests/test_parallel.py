"""Work over many files in forked processes: same answers as threads, progress to the end, survives a dead worker."""
from __future__ import annotations

import faulthandler
import os
import signal
import sys

import numpy as np
import pytest

from logoapp import parallel
from logoapp.data import open_dataset

from conftest import make_folder

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="worker processes are forked on Linux only")


@pytest.fixture
def few_files_suffice(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_FILES", 8)
    monkeypatch.setattr(parallel, "cores", lambda: 2)


def fill(i: int, out: np.ndarray):
    out[i] = i % 251
    return i, os.getpid()


@linux_only
def test_processes_write_the_shared_array(few_files_suffice):
    n = 300
    out = parallel.empty((n, 5), processes=True)
    seen = []
    records = parallel.map_into(fill, n, out, workers=2, progress=seen.append)
    assert [r[0] for r in records] == list(range(n))
    assert (out[:, 0] == np.arange(n) % 251).all() and (out == out[:, :1]).all()
    assert {r[1] for r in records} - {os.getpid()}, "no record came from a worker process"
    assert seen[-1] == n and seen == sorted(seen)


def test_threads_when_processes_do_not_pay(monkeypatch):
    out = parallel.empty((40, 3), processes=False)
    records = parallel.map_into(fill, 40, out, workers=2)
    assert {r[1] for r in records} == {os.getpid()} and (out[:, 2] == np.arange(40)).all()
    monkeypatch.setenv("LOGOAPP_PROCESSES", "0")
    assert not parallel.use_processes(10_000, 2)


PARENT = os.getpid()


def die_in_worker(i: int, out: np.ndarray):
    if i == 70 and os.getpid() != PARENT:
        os.kill(os.getpid(), signal.SIGKILL)  # a decoder crash takes its worker down
    out[i] = 1
    return i


@linux_only
def test_a_dead_worker_costs_speed_not_answers(few_files_suffice):
    n = 200
    out = parallel.empty((n, 2), processes=True)
    out[:] = 0
    records = parallel.map_into(die_in_worker, n, out, workers=2)
    assert records == list(range(n)) and (out == 1).all()  # what the pool lost was redone in threads


@linux_only
def test_dataset_from_processes_equals_dataset_from_threads(tmp_path, few_files_suffice, monkeypatch):
    root = make_folder(tmp_path / "d", n_classes=3, per_class=15, size=40)
    (root / "class0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    by_procs = open_dataset(root, size=24, cache=False, workers=2)
    monkeypatch.setenv("LOGOAPP_PROCESSES", "0")
    by_threads = open_dataset(root, size=24, cache=False, workers=2)
    assert by_procs.items == by_threads.items and np.array_equal(by_procs.images, by_threads.images)
    assert [b.__dict__ for b in by_procs.bad] == [b.__dict__ for b in by_threads.bad] and len(by_procs.bad) == 1
    assert by_procs.sizes == by_threads.sizes and by_procs.modes == by_threads.modes


@linux_only
def test_the_file_that_kills_a_worker_is_found_and_reported(few_files_suffice):
    n = 200
    out = parallel.empty((n, 2), processes=True)
    out[:] = 0
    records = parallel.map_into(die_in_worker, n, out, workers=2, crashed=lambda i: f"crashed on {i}")
    assert records[70] == "crashed on 70"  # never retried in this process, where it would take the caller down
    assert records[:70] == list(range(70)) and records[71:] == list(range(71, n))
    assert (np.delete(out, 70, 0) == 1).all()


@linux_only
def test_a_decoder_crash_is_a_bad_file_not_a_dead_app(tmp_path, few_files_suffice, monkeypatch):
    import logoapp.data as data
    root = make_folder(tmp_path / "d", n_classes=2, per_class=20, size=32)
    bomb = root / "class1" / "crash-me.png"
    bomb.write_bytes((root / "class1" / sorted(p.name for p in (root / "class1").iterdir())[0]).read_bytes())
    real = data.decode

    def decode(path, *a, **k):
        if str(path).endswith("crash-me.png") and os.getpid() != PARENT:
            faulthandler.disable()  # pytest's crash report would only be noise here
            os.kill(os.getpid(), signal.SIGSEGV)  # what a decoder bug on a hostile file does
        return real(path, *a, **k)

    monkeypatch.setattr(data, "decode", decode)
    ds = open_dataset(root, size=24, cache=False, workers=2)
    assert len(ds.items) == 40 and [b.path for b in ds.bad] == [str(bomb)]
    assert "decoder crashed" in ds.bad[0].reason
