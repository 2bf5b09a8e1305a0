"""Data larger than memory: a generated crest set whose uint8 cache is at least 2 GB (quick: 200 MB), opened
memory-mapped and loaded into memory, each in a fresh process that trains one epoch of the default cnn (64 px:
resized per batch from the map, once up front in memory). Figures: the mapped process's peak memory growth, and
its training throughput against the in-memory path's (same data, same page cache, one after the other).

`python -m benchmarks.bigdata FOLDER MMAP` is the child: it prints one JSON line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings

from .common import crests, figure, log, paired, ratio

SIDE = 256  # px, RGBA: 256 KB per image, so 8,200 images make a 2 GB cache


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def child(folder: str, mapped: bool) -> dict:
    from logoapp.data import open_dataset  # imports before the baseline: they are any training process's cost
    from logoapp.train import TrainConfig, fit
    base = _status("VmRSS")
    t = time.perf_counter()
    ds = open_dataset(folder, size=SIDE, mmap=mapped)
    opened = time.perf_counter() - t
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        done = fit(ds, TrainConfig("cnn", epochs=1, bs=64, seed=0))  # at its default 64 px
    seconds = time.perf_counter() - t  # all of fit: the in-memory path's one-off resize counts too
    return {"mapped": mapped, "n": len(ds.items), "cache_bytes": int(ds.images.nbytes), "open_seconds": opened,
            "train_seconds": seconds, "images_per_second": len(ds.idx("train")) / seconds, "accuracy": done.accuracy,
            "peak_growth": _status("VmHWM") - base}


def _run(folder, mapped: bool, env: dict) -> dict:
    p = subprocess.run([sys.executable, "-m", "benchmarks.bigdata", str(folder), "1" if mapped else "0"],
                       capture_output=True, text=True, env=env, timeout=3600)
    if p.returncode:
        raise RuntimeError(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def bench(quick: bool) -> dict:
    per_class = 80 if quick else 820  # 800 or 8,200 images of 256 KB
    folder = crests("bigdata", per_class, SIDE, 7)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1))}
    log(f"bigdata: first open of {per_class * 10} images at {SIDE}px (decoded into the cache once)")
    _run(folder, True, env)  # fills the cache; the figures below all read it
    pairs = [(_run(folder, True, env), _run(folder, False, env)) for _ in range(1 if quick else 3)]  # interleaved
    mapped, loaded = max((p[0] for p in pairs), key=lambda r: r["peak_growth"]), pairs[0][1]
    speed = paired([m["images_per_second"] for m, _ in pairs], [r["images_per_second"] for _, r in pairs])
    gb = mapped["cache_bytes"] / 2**30
    how = (f"{mapped['n']:,} crests at {SIDE}px RGBA, a {gb:.2f} GB cache; one epoch of the cnn (64 px) in a fresh "
           f"process each (all of fit timed), mapped and loaded alternately, {len(pairs)} round(s): throughput the "
           "median of the paired ratios, memory the largest mapped peak; peak growth = VmHWM minus RSS after imports")
    return {"bigdata_memory": figure("mapped cache: peak memory growth", mapped["peak_growth"] / 2**30, "GB",
                                     gb, "GB (cache size)", ratio(mapped["peak_growth"] / 2**30, 0.5), "<=", 1.0,
                                     how + "; goal: under 0.5 GB", loaded_growth=loaded["peak_growth"] / 2**30),
            "bigdata_throughput": figure("mapped cache: training throughput", mapped["images_per_second"],
                                         "images/s", loaded["images_per_second"], "images/s (in memory)",
                                         speed, ">=", 0.8,
                                         how)}


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], sys.argv[2] == "1")))
