"""Uploaded zips -> folders on disk, safely: no traversal, no links, no bombs, no junk written."""
from __future__ import annotations

import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from .data import DataError
from .images import IMAGE_EXTS

MAX_DATASET_ZIP_FILES = 50_000   # a dataset upload with more members is refused before anything is written
MAX_DATASET_ZIP_BYTES = 2 * 2**30  # unpacked size cap for an uploaded dataset zip
ZIP_ENTRY_BYTES = 1024            # central-directory bytes allowed per member (a real entry is 46 bytes + its name)


def _size(n: int) -> str:
    return f"{n / 2**30:.0f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n:,} bytes"


def zip_directory(zpath: str | Path) -> tuple[int, int]:
    """(members, central-directory bytes) as the zip's end record declares them, read *before* zipfile parses the
    directory: a 2 GB upload of empty members would otherwise build millions of ZipInfo objects (GBs of memory)
    before any count could be checked. Raises ValueError for a file that is not a zip."""
    try:
        with open(zpath, "rb") as f:
            end = zipfile._EndRecData(f)  # private but unchanged since Python 2.6; handles comments and zip64
    except OSError as e:  # also a file shorter than the 22-byte end record
        raise ValueError(f"not a zip file ({e.strerror or e})") from None
    if not end:
        raise ValueError("not a zip file")
    return int(end[zipfile._ECD_ENTRIES_TOTAL]), int(end[zipfile._ECD_SIZE])


def extract_zip(zpath: str | Path, dest: str | Path, skipped: list | None = None) -> Path:
    """Unpack an uploaded dataset zip safely into dest and return the folder holding the class folders.

    Refuses absolute paths, '..' members, too many members (checked from the end record before the directory is
    parsed) and too many bytes (declared, and counted while writing); skips symlinks and non-image members, adding
    (member, reason) to `skipped`, and macOS metadata silently. Any read error becomes a DataError."""
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    skipped = [] if skipped is None else skipped
    try:
        n, dir_bytes = zip_directory(zpath)
    except ValueError as e:
        raise DataError(str(e)) from None
    if n > MAX_DATASET_ZIP_FILES or dir_bytes > MAX_DATASET_ZIP_FILES * ZIP_ENTRY_BYTES:
        raise DataError(f"zip has {n:,} files ({_size(dir_bytes)} of file names); the limit is "
                                f"{MAX_DATASET_ZIP_FILES:,} files")
    try:
        z = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"not a zip file: {e}") from None
    with z:
        infos = [i for i in z.infolist() if not i.is_dir()]
        if len(infos) > MAX_DATASET_ZIP_FILES:
            raise DataError(f"zip has {len(infos):,} files; the limit is {MAX_DATASET_ZIP_FILES:,}")
        if sum(i.file_size for i in infos) > MAX_DATASET_ZIP_BYTES:
            raise DataError(f"zip unpacks to more than {_size(MAX_DATASET_ZIP_BYTES)}")
        todo = []  # every name is checked before the first byte is written: a refused zip leaves dest empty
        for i in infos:
            name = i.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
                raise DataError(f"unsafe path in zip: {name!r} (absolute or '..' paths are refused)")
            if not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
                continue  # macOS resource forks, .DS_Store and other hidden files: noise, not data
            if stat.S_ISLNK(i.external_attr >> 16):  # written as a file it would hold the link's target path
                skipped.append((name, "a symbolic link (links in uploaded zips are never followed)"))
                continue
            ext = PurePosixPath(name).suffix.lower()
            if ext not in IMAGE_EXTS:  # never written: a zip of one huge .bin or .exe costs no disk
                skipped.append((name, "an SVG (vector) image; convert it to PNG first" if ext == ".svg"
                                else f"not an image file type ({ext or 'no extension'})"))
                continue
            target = dest.joinpath(*parts)
            if not target.resolve().is_relative_to(dest):
                raise DataError(f"unsafe path in zip: {name!r}")
            todo.append((i, name, target))
        written = 0
        for i, name, target in todo:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(i) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > MAX_DATASET_ZIP_BYTES:  # zipfile also stops at each declared size; belt and braces
                            raise DataError(f"zip unpacks to more than {_size(MAX_DATASET_ZIP_BYTES)}")
                        dst.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as e:
                # a bad CRC, an encrypted or oddly compressed member, a name the file system refuses
                raise DataError(f"cannot unpack {name!r} from the zip: {e}") from None
    root = dest
    for _ in range(3):  # a zip of one folder holding the class folders: use that folder
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir() and any(p.is_dir() for p in entries[0].iterdir()):
            root = entries[0]
        else:
            break
    return root
