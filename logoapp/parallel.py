"""Per-file work over many files, in forked worker processes that write straight into a shared array.

Pillow's decoders drop and retake the GIL many times per image, so decoding threads gain much less from a second
core than processes do (README, Performance). Workers are forked (Linux): they inherit the job and the
output array, which lives in an anonymous shared mapping, write their rows in place and send back only a small
record per file. If a worker dies, what it left is retried one file at a time in a fresh worker, so the file
that killed it is found and reported rather than retried in the caller's process. With one core, few files, no
fork, or a pool that cannot start, the same work runs in threads, so the answer never depends on which way it
ran.
"""
from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

import numpy as np

MIN_FILES = 256   # below this, starting processes costs more than it saves
STEP = 32         # files per task: a task per file costs more in hand-offs than it saves

_JOB: tuple | None = None      # (fn, out) for forked workers: inherited at fork, never pickled
_JOB_LOCK = threading.Lock()   # one process job at a time per process (the job travels in a global)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def use_processes(n: int, workers: int) -> bool:
    """Whether map_into would fork for n files: Linux, 2+ workers and cores, enough files, not switched off."""
    return (sys.platform.startswith("linux") and workers > 1 and cores() > 1 and n >= MIN_FILES
            and os.environ.get("LOGOAPP_PROCESSES", "1") != "0")


def empty(shape: tuple, processes: bool) -> np.ndarray:
    """An uninitialised uint8 array; in an anonymous shared mapping when forked workers will write into it."""
    if not processes:
        return np.empty(shape, np.uint8)
    n = int(np.prod(shape))
    return np.frombuffer(mmap.mmap(-1, max(n, 1)), np.uint8, count=n).reshape(shape)


def _init() -> None:
    import gc
    gc.freeze()  # the inherited objects are never collected here: scanning them would copy their pages
    import torch
    torch.set_num_threads(1)  # one process per core already; and no OpenMP pool from before the fork


def _run(lo: int, hi: int) -> list:
    fn, out = _JOB
    return [fn(i, out) for i in range(lo, hi)]


def map_into(fn: Callable[[int, np.ndarray], object], n: int, out: np.ndarray, workers: int,
             progress: Callable[[int], object] | None = None,
             crashed: Callable[[int], object] | None = None) -> list:
    """[fn(i, out) for i in range(n)]: fn fills out[i] and returns a small picklable record. In forked processes
    when use_processes(n, workers) and out came from empty(..., processes=True); else in `workers` threads.
    progress(done) is called as files finish. If a worker dies, the files not yet done are run one per task in a
    fresh single worker, so a file that kills it again is found: its record is crashed(i) (when given; else it
    is run in a thread like the rest)."""
    records: list = [None] * n
    todo = np.ones(n, bool)
    done, lock = [0], threading.Lock()

    def finished(lo: int, recs: list) -> None:
        with lock:
            records[lo:lo + len(recs)] = recs
            done[0] += int(todo[lo:lo + len(recs)].sum())
            todo[lo:lo + len(recs)] = False
            count = done[0]
        if progress:
            progress(count)

    global _JOB
    if use_processes(n, workers) and _shared(out):
        import torch  # noqa: F401  (imported once here, so forked workers inherit it rather than each import it)
        with _JOB_LOCK:
            _JOB = (fn, out)
            try:
                _in_processes([(lo, min(lo + STEP, n)) for lo in range(0, n, STEP)], min(workers, cores()),
                              finished)
            except BrokenProcessPool:
                if crashed is not None:
                    try:
                        _isolate(np.flatnonzero(todo), finished, crashed)
                    except OSError:
                        pass  # no fresh worker could start: what is left runs in threads below
            except OSError:
                pass  # no pool could start: what is left runs in threads below
            finally:
                _JOB = None

    def run(lo: int) -> None:
        hi = min(lo + STEP, n)
        finished(lo, [fn(i, out) if todo[i] else records[i] for i in range(lo, hi)])

    rest = [lo for lo in range(0, n, STEP) if todo[lo:lo + STEP].any()]
    if len(rest) > 1 and workers > 1:
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(run, rest))
    else:
        for lo in rest:
            run(lo)
    return records


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_init)


def _in_processes(ranges: list, workers: int, finished) -> None:
    """Run (lo, hi) ranges of _JOB in a pool of forked workers; BrokenProcessPool when one dies."""
    with _pool(workers) as ex:
        futs = {ex.submit(_run, lo, hi): lo for lo, hi in ranges}
        try:
            for f in as_completed(futs):
                finished(futs[f], f.result())
        finally:
            for f in futs:
                f.cancel()  # an error or Ctrl-C stops the rest


def _isolate(left: np.ndarray, finished, crashed) -> None:
    """After a worker died: each file left, one at a time, in a single worker; a file that kills it gets
    crashed(i) and a fresh worker takes the next. Slower, but the process that asked survives a decoder crash."""
    k = 0
    while k < len(left):
        try:
            with _pool(1) as ex:
                while k < len(left):
                    i = int(left[k])
                    finished(i, ex.submit(_run, i, i + 1).result())
                    k += 1
        except BrokenProcessPool:
            i = int(left[k])
            finished(i, [crashed(i)])
            k += 1


def _shared(out: np.ndarray) -> bool:
    """Whether out's memory is an anonymous shared mapping (from empty(..., processes=True))."""
    base = out
    while isinstance(base, (np.ndarray, memoryview)):
        base = base.base if isinstance(base, np.ndarray) else base.obj
    return isinstance(base, mmap.mmap)
