"""The app's own temporary folders (unpacked uploads, export zips): named after the process that made them, removed
when it exits, and swept at the next start when a killed process left them behind."""
from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

PREFIX = "logoapp-"
_NAME = re.compile(rf"^{PREFIX}(?P<kind>[a-z]+)-(?P<pid>\d+)-")
_mine: set[str] = set()
_lock = threading.Lock()


def make(kind: str) -> Path:
    """A new folder `logoapp-<kind>-<pid>-XXXX` in the system temp folder, removed at the latest when we exit."""
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-{os.getpid()}-")
    with _lock:
        _mine.add(path)
    return Path(path)


def remove(path: str | Path | None) -> None:
    """Remove one of our folders (and forget it); harmless when it is already gone."""
    if path:
        shutil.rmtree(path, ignore_errors=True)
        with _lock:
            _mine.discard(str(path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale(root: str | Path | None = None) -> list[Path]:
    """Remove the folders of processes that no longer run (a killed app leaves its uploads behind)."""
    root = Path(root or tempfile.gettempdir())
    gone = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return gone
    for p in entries:
        m = _NAME.match(p.name)
        if m and p.is_dir() and not p.is_symlink() and int(m["pid"]) != os.getpid() and not _alive(int(m["pid"])):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p)
    return gone


@atexit.register
def _remove_mine() -> None:
    for p in list(_mine):
        shutil.rmtree(p, ignore_errors=True)
