"""The fix log: relabel (move a file into another class folder) and exclude (move it under _excluded/), each
appended to .logoapp-changes.jsonl in the dataset folder, and undone in reverse order. Nothing is ever deleted
and no file is ever overwritten: a name already taken gets a free one (logged). Writers lock the dataset folder
itself (fcntl.flock on its descriptor), so concurrent changes cannot interleave and the folder holds no lock file;
once every change is undone the log goes too, and the folder is exactly as it was."""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

from .data import SPLIT_FOLDERS, Dataset, open_dataset
from .ondisk import is_mapped

LOG = ".logoapp-changes.jsonl"
EXCLUDED = "_excluded"
READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)
RENAME_NOREPLACE = 1  # renameat2 flag (Linux 3.15+): fail instead of replacing an existing file


class FixError(ValueError):
    """A change that cannot be made or undone, with one line saying why."""


class ReadOnlyError(FixError):
    """The dataset folder cannot be written to."""


def _read_only(root: Path, e: OSError | None = None) -> ReadOnlyError:
    why = f" ({e.strerror})" if e is not None and e.strerror else ""
    return ReadOnlyError(f"cannot change {root}: the folder is read-only{why}")


@contextmanager
def _locked(root: Path):
    """Hold an exclusive lock on the dataset folder; OSErrors meaning 'not writable' become ReadOnlyError."""
    if not root.is_dir():
        raise FixError(f"no such dataset folder: {root}")
    if not os.access(root, os.W_OK):
        raise _read_only(root)
    fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    except OSError as e:
        if e.errno in READ_ONLY:
            raise _read_only(root, e) from None
        raise FixError(f"cannot change {root}: {e.strerror or e}") from None
    finally:
        os.close(fd)  # closing releases the lock


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Move src to dst atomically, failing with FileExistsError rather than replacing dst."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is not None:
        if fn(-100, os.fsencode(src), -100, os.fsencode(dst), RENAME_NOREPLACE) == 0:  # -100: AT_FDCWD
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):  # EINVAL: a file system without the flag
            raise OSError(err, os.strerror(err), str(src), None, str(dst))
    if os.path.lexists(dst):  # the fallback is safe too: every writer holds the folder lock
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


def _free(path: Path) -> Path:
    """path, or else the first of 'name (1).ext', 'name (2).ext', ... not taken."""
    k, out = 0, path
    while os.path.lexists(out):
        k += 1
        out = path.with_name(f"{path.stem} ({k}){path.suffix}")
    return out


def _class_dir(root: Path, rel: Path) -> int:
    """How many leading parts of rel name its class folder: 2 in a train/valid/test layout, else 1."""
    subs = {p.name.lower() for p in root.iterdir() if p.is_dir()}
    presplit = "train" in subs and bool(subs & {"valid", "validation", "val", "test"})
    return 2 if presplit and rel.parts[0].lower() in SPLIT_FOLDERS else 1


def _target(root: Path, path) -> tuple[Path, Path]:
    """(absolute, relative) path of an image file inside root, refusing anything else."""
    p = Path(path)
    p = Path(os.path.abspath(p if p.is_absolute() else root / p))
    try:
        rel = p.relative_to(root)
    except ValueError:
        raise FixError(f"{path} is not inside the dataset folder {root}") from None
    if not p.is_file():
        raise FixError(f"no such file: {p}")
    if rel.parts[0] == EXCLUDED:
        raise FixError(f"{rel} is excluded already (undo brings it back)")
    if len(rel.parts) <= _class_dir(root, rel):
        raise FixError(f"{rel} is not inside a class folder")
    return p, rel


def _make_dirs(root: Path, d: Path) -> list[str]:
    """mkdir -p d; returns the folders made (relative, outermost first), for undo to remove."""
    made = []
    for parent in reversed([d, *d.parents]):
        if parent != root and root in parent.parents and not parent.exists():
            parent.mkdir()
            made.append(parent.relative_to(root).as_posix())
    return made


def _append(root: Path, rec: dict) -> None:
    with open(root / LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")  # ASCII: names that are not valid UTF-8 survive as escapes
        f.flush()
        os.fsync(f.fileno())


def _move(root: Path, op: str, src: Path, rel: Path, dst: Path, **extra) -> dict:
    """Move src to dst (or a free name beside it), log the move, return the log record. Runs under the lock."""
    made, final, moved = _make_dirs(root, dst.parent), _free(dst), False
    rec = {"op": op, "from": rel.as_posix(), "to": final.relative_to(root).as_posix(), **extra,
           "renamed": final != dst, "made": made, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        _rename_noreplace(src, final)
        moved = True
        _append(root, rec)
    except OSError:
        if moved:
            _rename_noreplace(final, src)  # an unlogged move could never be undone: put it back
        for d in reversed(made):
            os.rmdir(root / d)
        raise
    return rec


def relabel(root, path, new_class: str) -> dict:
    """Move an image into the class folder new_class (made if needed) beside its own; returns the log record."""
    root = Path(os.path.abspath(root))
    if not new_class or new_class != Path(new_class).name or new_class.startswith((".", "_")):
        raise FixError(f"not a usable class name: {new_class!r} (one folder name, not starting with '.' or '_')")
    with _locked(root):
        src, rel = _target(root, path)
        n = _class_dir(root, rel)
        if rel.parts[n - 1] == new_class:
            raise FixError(f"{rel} is in class '{new_class}' already")
        dst = root.joinpath(*rel.parts[:n - 1], new_class, src.name)
        return _move(root, "relabel", src, rel, dst, old_class=rel.parts[n - 1], new_class=new_class)


def exclude(root, path) -> dict:
    """Move an image to _excluded/<its path> (e.g. _excluded/<class>/<file>); returns the log record."""
    root = Path(os.path.abspath(root))
    with _locked(root):
        src, rel = _target(root, path)
        return _move(root, "exclude", src, rel, root / EXCLUDED / rel, old_class=rel.parts[_class_dir(root, rel) - 1])


def changes(root) -> list[dict]:
    """The logged changes not undone yet, oldest first."""
    f = Path(root) / LOG
    if not f.exists():
        return []
    out = []
    for k, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise FixError(f"{f} line {k} is not a change record; fix or remove that line by hand") from None
    return out


def _revert(root: Path, rec: dict) -> None:
    src, dst = root / rec["to"], root / rec["from"]
    if not os.path.lexists(src):
        raise FixError(f"cannot undo: {rec['to']} is gone (moved or deleted since)")
    if os.path.lexists(dst):
        raise FixError(f"cannot undo: {rec['from']} exists again; move it away first")
    dst.parent.mkdir(parents=True, exist_ok=True)
    _rename_noreplace(src, dst)
    for d in reversed(rec.get("made", [])):
        try:
            os.rmdir(root / d)  # only if empty: a folder the change made, not one that holds files now
        except OSError:
            pass


def _rewrite(root: Path, recs: list[dict]) -> None:
    """The log holds exactly recs now; no records, no log."""
    if not recs:
        (root / LOG).unlink(missing_ok=True)
        return
    tmp = root / f"{LOG}.{os.getpid()}.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    os.replace(tmp, root / LOG)


def undo(root, all: bool = False) -> list[dict]:
    """Revert the last change (or every change, newest first); returns the records reverted. Each revert leaves
    the log; after the last one the log file goes too."""
    root = Path(os.path.abspath(root))
    with _locked(root):
        recs = changes(root)
        done = []
        try:
            while recs and (all or not done):
                _revert(root, recs[-1])
                done.append(recs.pop())
        finally:
            if done:
                _rewrite(root, recs)
    return done


def renames(root, recs: list[dict], undone: bool = False) -> dict[str, str]:
    """Where each moved file is now -> where it was before recs (changes made, oldest first, or undone, newest
    first), as absolute paths: what reopen needs to reuse the images it decoded already."""
    root, origin = Path(os.path.abspath(root)), {}
    for r in recs:
        src, dst = (r["to"], r["from"]) if undone else (r["from"], r["to"])
        origin[str(root / dst)] = origin.pop(str(root / src), str(root / src))
    return origin


def zip_folder(root, out=None, include_excluded: bool = False) -> Path:
    """A zip of the dataset folder (as fixed: without _excluded/ and the log unless asked) next to it, or at out;
    an existing file is never replaced (a free name is taken)."""
    root = Path(os.path.abspath(root))
    out = _free(Path(os.path.abspath(out or root.with_name(f"{root.name}-fixed.zip"))))
    try:
        with open(out, "xb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as z:  # images: compressed already
            for dirpath, dirnames, filenames in os.walk(root):
                rel = Path(dirpath).relative_to(root)
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                                     and (include_excluded or rel.parts or d != EXCLUDED))
                for f in sorted(filenames):
                    if not f.startswith(".") and Path(dirpath, f) != out:
                        z.write(Path(dirpath, f), (Path(root.name) / rel / f).as_posix())
    except OSError as e:
        raise FixError(f"cannot write {out}: {e.strerror or e}") from None
    return out


def reopen(ds: Dataset, renamed: dict[str, str] | None = None, cache: bool = True, progress=None) -> Dataset:
    """ds's folder opened again after files moved in it (renamed: new path -> old path, e.g. fixes.renames): with
    the same size, split settings and the images decoded already, so only files new to it are decoded."""
    at = {p: i for i, p in enumerate(ds.items)}
    back = {p: at[p] for p in ds.items} | {new: at[old] for new, old in (renamed or {}).items() if old in at}
    reuse = {p: (ds.images[i], ds.sizes[i], ds.modes[i]) for p, i in back.items()}
    return open_dataset(ds.root, size=ds.size, valid_pct=ds.valid_pct, seed=ds.seed, cache=cache, progress=progress,
                        reuse=reuse, mmap=is_mapped(ds.images))
