"""Shared pieces: figure records, interleaved timing, machine info, progress lines and the benchmark data sets."""
from __future__ import annotations

import datetime
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

T0 = time.perf_counter()


def log(msg: str) -> None:
    """Progress goes to stderr, so stdout stays a clean table or one JSON object."""
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def median(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def alternate(runs: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each run once per round, order reversed every other round (ABBA), so drift hits both sides alike.
    Each run returns its own measurement (seconds, or a rate); the lists come back per name."""
    out = {k: [] for k in runs}
    names = list(runs)
    for r in range(rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            gc.collect()
            out[k].append(runs[k]())
    return out


def calls(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of single calls, the functions taking turns call by call (order reversed every other round), with
    the garbage collector paused: for latencies of milliseconds on a machine whose load changes by the second."""
    out = {k: [] for k in fns}
    names = list(fns)
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            for k in (names if r % 2 == 0 else names[::-1]):
                t = time.perf_counter()
                fns[k]()
                out[k].append(time.perf_counter() - t)
    finally:
        gc.enable()
    return out


def per_call(fn: Callable[[], object], n: int) -> Callable[[], float]:
    """A run for `alternate`: seconds per call of fn, over n back-to-back calls."""
    def run() -> float:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t) / n
    return run


GOAL_TEXT = {">=": "≥", "<=": "≤"}


def figure(name: str, value, unit: str, reference, ref_unit: str, ratio, op: str, target: float, how: str,
           **extra) -> dict:
    """One row of the results: value vs reference, their ratio and the goal the ratio is judged against."""
    ok = None if ratio is None else (ratio >= target if op == ">=" else ratio <= target)
    return {"name": name, "value": value, "unit": unit, "reference": reference, "reference_unit": ref_unit,
            "ratio": ratio, "goal": {"op": op, "target": target, "text": f"{GOAL_TEXT[op]} {target:g}"},
            "pass": bool(ok) if ratio is not None else False, "how": how, **extra}


def paired(num, den) -> float | None:
    """Median of num[i] / den[i] over measurements taken side by side: each pair saw the same machine load, so
    this stays put when the load swings between pairs (the shared machine's noise), unlike a ratio of medians."""
    return median([a / b for a, b in zip(num, den) if a and b])


def ratio(a, b) -> float | None:
    return None if a is None or b in (None, 0) else a / b


def machine() -> dict:
    """CPU model, cores, memory, library versions, load and date: what the figures were measured on."""
    import fastai
    import numpy
    import PIL
    import torch
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu or "unknown", "cores": cores, "memory_gb": mem_gb, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "fastai": fastai.__version__,
            "numpy": numpy.__version__, "pillow": PIL.__version__, "platform": platform.platform(),
            "load_avg_start": load_avg(), "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def load_avg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def bench_dir() -> Path:
    """Generated benchmark folders live beside logoapp's own caches (LOGOAPP_CACHE moves both)."""
    from logoapp.config import cache_dir
    d = cache_dir() / "bench"
    d.mkdir(parents=True, exist_ok=True)
    return d


def crests(name: str, per_class: int, size: int, seed: int) -> Path:
    """A generated crest folder (10 classes x per_class at size px), made once and reused."""
    from logoapp import synth
    out = bench_dir() / f"{name}-{per_class * len(synth.CLUBS)}-{size}px-s{seed}"
    if not synth.is_complete(out):
        log(f"generating {per_class * len(synth.CLUBS)} crests at {size}px into {out} (once)")
    return synth.generate(out, n_classes=None, per_class=per_class, size=size, seed=seed)
