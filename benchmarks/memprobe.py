"""Child process for the memory figure: `python -m benchmarks.memprobe FOLDER SIZE CACHE` prints one JSON line.

RSS after imports is the baseline; the peak is the kernel's high-water mark (VmHWM) after the dataset is open."""
from __future__ import annotations

import json
import resource
import sys
import time

import torch  # noqa: F401  (a logoapp process always has torch: models, the resize, decoding workers)

from logoapp.data import open_dataset  # noqa: E402  (imports first: the baseline is taken after them)


def status(field: str) -> int | None:
    """A /proc/self/status field in bytes (Linux); None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def main() -> None:
    folder, size, cache = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    baseline = status("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    ds = open_dataset(folder, size=size, cache=cache)
    seconds = time.perf_counter() - t
    # pages that decoding processes wrote into the shared array count here only once this process maps them:
    # read one byte per page, as any use of the data would
    int(ds.images.reshape(-1)[::4096].max(initial=0))
    peak = status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    workers_peak = children * 1024 if children > children_before else 0  # the largest decoding worker, if any ran
    print(json.dumps({"n": len(ds.items), "channels": ds.channels, "nbytes": int(ds.images.nbytes),
                      "baseline": baseline, "peak": peak, "peak_increase": peak - baseline, "seconds": seconds,
                      "bad": len(ds.bad), "workers_peak": workers_peak}))


if __name__ == "__main__":
    main()
