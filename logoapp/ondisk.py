"""Datasets larger than memory: the uint8 cache opened as a read-only memory map instead of loaded. Readers give
the pages they touched back to the kernel as they go (madvise DONTNEED: they stay in the page cache, but leave
this process's resident memory), so a pass over a set several times the RAM keeps the process's memory bounded."""
from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

SHARE = 0.5                 # auto: a cache larger than this share of the available memory is mapped, not loaded
RELEASE_EVERY = 32 * 2**20  # bytes read from a map between two releases of its pages


def available() -> int:
    """Bytes of memory available now (Linux MemAvailable; else the physical total)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def wanted(nbytes: int, flag: bool | None = None) -> bool:
    """Map (True) or load (False) a cache of nbytes: flag when given, else LOGOAPP_MMAP=1/0, else by size."""
    if flag is not None:
        return flag
    env = os.environ.get("LOGOAPP_MMAP", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    return nbytes > SHARE * available()


def _mapping(a) -> mmap.mmap | None:
    """The mmap under an array (a np.memmap or a view of one), if any."""
    while a is not None:
        m = getattr(a, "_mmap", None)
        if isinstance(m, mmap.mmap):
            return m
        a = getattr(a, "base", None)
    return None


def is_mapped(a) -> bool:
    return _mapping(a) is not None


def release(a) -> None:
    """Drop the pages of a's map from this process (they are re-read from the page cache or disk when needed)."""
    m = _mapping(a)
    if m is not None and hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        m.madvise(mmap.MADV_DONTNEED)


class Reader:
    """Counts bytes read from an array and releases its map's pages every RELEASE_EVERY bytes (a no-op in memory)."""

    def __init__(self, a):
        self.a, self.on, self.n = a, is_mapped(a), 0

    def read(self, nbytes: int) -> None:
        if self.on:
            self.n += nbytes
            if self.n >= RELEASE_EVERY:
                release(self.a)
                self.n = 0


class Rows:
    """a[idx] without the copy, for a mapped array: len(), and slices gathered (then released) when asked."""

    def __init__(self, a, idx: np.ndarray):
        self.a, self.idx, self.reader = a, np.asarray(idx), Reader(a)
        self.shape = (len(self.idx), *a.shape[1:])

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, s):
        out = self.a[self.idx[s]]
        self.reader.read(out.nbytes)
        return out


def rows(a, idx: np.ndarray):
    """a[idx]: a copy in memory, or Rows over a map (read a slice at a time)."""
    return Rows(a, idx) if is_mapped(a) else a[idx]


def create(path, shape: tuple) -> np.memmap:
    """A new .npy file of uint8 zeros with this shape, mapped for writing (forked workers may write into it)."""
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)


def load(path, mapped: bool):
    """A cached .npy: mapped read-only (and the allocator told to give big blocks back), or read into memory."""
    if mapped:
        bound_allocator()
    return np.load(path, mmap_mode="r" if mapped else None, allow_pickle=False)


def first_rows(a: np.ndarray, path) -> Path:
    """A new .npy beside path holding a's rows (a view of path's first rows) and nothing after; path is removed."""
    path = Path(path)
    new = path.with_name(path.name.replace(".spill", ".kept"))
    out = create(new, a.shape)
    src, dst = Reader(a), Reader(out)
    step = max(1, RELEASE_EVERY // max(1, a[0].nbytes))
    for i in range(0, len(a), step):
        out[i:i + step] = a[i:i + step]
        src.read(a[i:i + step].nbytes)
        dst.read(a[i:i + step].nbytes)
    out.flush()
    del out
    path.unlink(missing_ok=True)
    return new


def bound_allocator(threshold: int = 1 << 20) -> None:
    """Return large freed blocks to the system at once (glibc: a fixed mmap threshold instead of its dynamic one,
    which after the first big batch keeps up to 32 MB blocks in the heap), so a mapped dataset's batch-sized
    temporaries do not pile up as resident memory. A no-op off glibc."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").mallopt(-3, int(threshold))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass
