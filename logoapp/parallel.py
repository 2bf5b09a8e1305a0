"""Per-file work over many files, in forked worker processes that write straight into a shared array.

Pillow's decoders drop and retake the GIL many times per image, so two decoding threads reach only ~1.4x one
thread on 2 cores, where two processes reach ~1.9x. Workers are forked (Linux): they inherit the job and the
output array, which lives in an anonymous shared mapping, write their rows in place and send back only a small
record per file. With one core, few files, no fork, or a pool that cannot start or breaks, the same work runs
in threads, so the answer never depends on which way it ran.
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
             progress: Callable[[int], object] | None = None) -> list:
    """[fn(i, out) for i in range(n)]: fn fills out[i] and returns a small picklable record. In forked processes
    when use_processes(n, workers) and out came from empty(..., processes=True); else in `workers` threads.
    progress(done) is called as files finish."""
    records: list = [None] * n
    left = set(range(0, n, STEP))
    done, lock = [0], threading.Lock()

    def finished(lo: int, recs: list) -> None:
        with lock:
            records[lo:lo + len(recs)] = recs
            left.discard(lo)
            done[0] += len(recs)
            count = done[0]
        if progress:
            progress(count)

    global _JOB
    if use_processes(n, workers) and _shared(out):
        import torch  # noqa: F401  (imported once here, so forked workers inherit it rather than each import it)
        with _JOB_LOCK:
            _JOB = (fn, out)
            try:
                with ProcessPoolExecutor(min(workers, cores()), mp_context=mp.get_context("fork"),
                                         initializer=_init) as ex:
                    futs = {ex.submit(_run, lo, min(lo + STEP, n)): lo for lo in sorted(left)}
                    try:
                        for f in as_completed(futs):
                            finished(futs[f], f.result())
                    finally:
                        for f in futs:
                            f.cancel()  # an error or Ctrl-C stops the rest
            except (BrokenProcessPool, OSError):
                pass  # a worker died or none could start: what is left runs in threads below
            finally:
                _JOB = None
    def run(lo: int) -> None:
        finished(lo, [fn(i, out) for i in range(lo, min(lo + STEP, n))])

    rest = sorted(left)
    if len(rest) > 1 and workers > 1:
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(run, rest))
    else:
        for lo in rest:
            run(lo)
    return records


def _shared(out: np.ndarray) -> bool:
    """Whether out's memory is an anonymous shared mapping (from empty(..., processes=True))."""
    base = out
    while isinstance(base, (np.ndarray, memoryview)):
        base = base.base if isinstance(base, np.ndarray) else base.obj
    return isinstance(base, mmap.mmap)
