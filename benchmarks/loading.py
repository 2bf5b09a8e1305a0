"""Loading: open_dataset's decoding vs a plain PIL loop, the on-disk cache vs decoding, and peak memory."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from logoapp.config import Settings
from logoapp.data import open_dataset
from logoapp.images import IMAGE_EXTS

from .common import alternate, figure, log, median, paired, ratio

SIZE = 140


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))


def pil_loop(files: list[Path]) -> list[np.ndarray]:
    """The reference: open, convert to RGBA, resize, np.asarray; one thread, no checks."""
    return [np.asarray(Image.open(f).convert("RGBA").resize((SIZE, SIZE), Image.BILINEAR)) for f in files]


def cpu_now() -> float:
    """CPU seconds of this process, all threads (and of finished child processes, should any run)."""
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + c.ru_utime + c.ru_stime


def timed(fn, cpu: list):
    """A run for `alternate`: wall seconds of fn(); its CPU seconds (all processes) go to cpu."""
    def run() -> float:
        c, t = cpu_now(), time.perf_counter()
        fn()
        wall = time.perf_counter() - t
        cpu.append(cpu_now() - c)
        return wall
    return run


def bench(folder: Path, quick: bool) -> dict:
    files = image_files(folder)
    n = len(files)
    with Image.open(files[0]) as im:
        src = f"{im.width}px {im.mode} PNG"
    open_dataset(folder, size=SIZE)  # make sure the cache entry exists (and the files are in the page cache)
    rounds = 3 if quick else 9  # per-round ratios on a shared 2-core machine spread over +-20%: 9 for a steady median
    log(f"loading: {rounds} rounds over {n} files ({src} -> {SIZE}px): open_dataset(cache=False) / PIL loop / cached")
    cpu = {"decode": [], "pil": [], "cached": []}
    r = alternate({"decode": timed(lambda: open_dataset(folder, size=SIZE, cache=False), cpu["decode"]),
                   "pil": timed(lambda: pil_loop(files), cpu["pil"]),
                   "cached": timed(lambda: open_dataset(folder, size=SIZE), cpu["cached"])}, rounds)
    dec, pil, hit = (n / median(r[k]) for k in ("decode", "pil", "cached"))
    samples = {k: [round(n / s, 1) for s in v] for k, v in r.items()}
    cpu_ms = {k: round(median(v) / n * 1000, 3) for k, v in cpu.items()}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {
        "load_decode": figure(
            "loading: decode + resize", dec, "img/s", pil, "img/s (single-threaded PIL loop)",
            paired(r["pil"], r["decode"]),
            ">=", 1.5, f"open_dataset(cache=False) on {n} {src} files -> {SIZE}px uint8, with its header pass, checks "
            f"and its {Settings().workers} decoding threads, vs open/convert/resize/asarray in one thread; {rounds} "
            "interleaved rounds; values are medians, the ratio is the median of per-round paired ratios. CPU time "
            f"per image: {cpu_ms['decode']:.2f} ms vs {cpu_ms['pil']:.2f} ms, so on {cores} idle cores, perfectly "
            f"parallel, the ratio would be {min(cores, Settings().workers) * cpu_ms['pil'] / cpu_ms['decode']:.2f}x",
            samples=samples, cpu_ms_per_image=cpu_ms,
            cpu_bound_ratio=min(cores, Settings().workers) * cpu_ms["pil"] / cpu_ms["decode"]),
        "load_cache": figure(
            "loading: cache re-open", hit, "img/s", dec, "img/s (decoding, cache=False)",
            paired(r["decode"], r["cached"]),
            ">=", 10, f"open_dataset on the unchanged folder from its on-disk uint8 cache vs decoding it again; "
            f"{rounds} interleaved rounds, paired as above", samples=samples),
    }


def probe(folder: Path, cache: bool) -> dict:
    """Open the folder in a fresh interpreter (benchmarks.memprobe) and return its memory report."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.memprobe", str(folder), str(SIZE), "1" if cache else "0"],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory(folder: Path) -> dict:
    """Peak RSS while the folder is open, relative to its raw uint8 size: decoding, then re-opening from the cache."""
    log(f"memory: fresh subprocesses opening {folder.name}")
    probe(folder, cache=True)  # writes the cache entry when missing, so the cached probe below is a hit
    figs = {}
    for key, cache, what in (("memory_decode", False, "decoding (cache=False)"),
                             ("memory_cache", True, "from the cache")):
        m = probe(folder, cache)
        raw = m["n"] * SIZE * SIZE * m["channels"]
        mb = 2 ** 20
        figs[key] = figure(
            f"memory: open {m['n']:,} images, {what}", m["peak_increase"] / mb, "MB", raw / mb,
            f"MB (raw uint8 {m['n']}x{SIZE}x{SIZE}x{m['channels']})", ratio(m["peak_increase"], raw), "<=", 1.3,
            f"judged on peak RSS minus the RSS after imports ({m['baseline'] / mb:.0f} MB); the whole-process peak is "
            f"{m['peak'] / mb:.0f} MB = {m['peak'] / raw:.2f}x raw"
            + (f"; decoding worker processes peaked at {m['workers_peak'] / mb:.0f} MB each at most (their RSS "
               "includes the pages of the shared array they wrote, which are counted here too)"
               if m.get("workers_peak") else ""), peak_mb=m["peak"] / mb, workers_peak_mb=m.get("workers_peak", 0) / mb,
            baseline_mb=m["baseline"] / mb, peak_ratio=m["peak"] / raw, seconds=m["seconds"])
    return figs
