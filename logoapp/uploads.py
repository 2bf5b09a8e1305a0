"""Uploaded zips -> folders on disk, safely: no traversal, no links, no bombs, no junk written."""
from __future__ import annotations

import stat
import struct
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from .data import DataError
from .images import IMAGE_EXTS, looks_like_image

MAX_DATASET_ZIP_FILES = 50_000   # a dataset upload with more members is refused before anything is written
MAX_DATASET_ZIP_BYTES = 2 * 2**30  # unpacked size cap for an uploaded dataset zip
ZIP_ENTRY_BYTES = 1024            # central-directory bytes allowed per member (a real entry is 46 bytes + its name)


def _size(n: int) -> str:
    return f"{n / 2**30:.0f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n:,} bytes"


def zip_directory(zpath: str | Path, limit: int) -> tuple[int, int]:
    """(members, central-directory bytes), checked *before* zipfile parses the directory: a 2 GB upload of empty
    members would otherwise build millions of ZipInfo objects (GBs of memory) before any count could be checked.
    The members are counted by walking the directory's records, stopping at limit + 1, so an end record that
    under-declares them changes nothing. Raises ValueError for a file that is not a zip."""
    try:
        with open(zpath, "rb") as f:
            end = zipfile._EndRecData(f)  # private but unchanged since Python 2.6; handles comments and zip64
            if not end:
                raise ValueError("not a zip file")
            size = int(end[zipfile._ECD_SIZE])
            if size > limit * ZIP_ENTRY_BYTES:
                return max(int(end[zipfile._ECD_ENTRIES_TOTAL]), limit + 1), size
            # where the directory starts, data prepended or not (zipfile's own arithmetic)
            start = end[zipfile._ECD_LOCATION] - size
            if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
                start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
            f.seek(max(0, start))
            return _count_records(f.read(size), limit), size
    except OSError as e:  # also a file shorter than the 22-byte end record
        raise ValueError(f"not a zip file ({e.strerror or e})") from None


def _count_records(directory: bytes, limit: int) -> int:
    """Central-directory records in `directory`, counted up to limit + 1."""
    n = pos = 0
    while pos + 46 <= len(directory) and directory[pos:pos + 4] == b"PK\x01\x02" and n <= limit:
        name, extra, comment = struct.unpack_from("<HHH", directory, pos + 28)
        pos += 46 + name + extra + comment
        n += 1
    return n


def extract_zip(zpath: str | Path, dest: str | Path, skipped: list | None = None) -> Path:
    """Unpack an uploaded dataset zip safely into dest and return the folder holding the class folders.

    Refuses absolute paths, '..' members, too many members (checked from the end record before the directory is
    parsed) and too many bytes (declared, and counted while writing); skips symlinks and non-image members, adding
    (member, reason) to `skipped`, and macOS metadata silently. Any read error becomes a DataError."""
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    skipped = [] if skipped is None else skipped
    try:
        n, dir_bytes = zip_directory(zpath, MAX_DATASET_ZIP_FILES)
    except ValueError as e:
        raise DataError(str(e)) from None
    if n > MAX_DATASET_ZIP_FILES:
        raise DataError(f"zip has more than {MAX_DATASET_ZIP_FILES:,} files ({_size(dir_bytes)} of file names); "
                        f"the limit is {MAX_DATASET_ZIP_FILES:,} files")
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
                with z.open(i) as src:
                    chunk = src.read(1 << 16)
                    if not looks_like_image(chunk[:16]):  # an all-zero 'bomb.png' is never written to disk
                        skipped.append((name, "not an image: its first bytes are no image format's"))
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open(target, "wb") as dst:
                        written = _copy(src, dst, chunk, written)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as e:
                # a bad CRC, an encrypted or oddly compressed member, a name the file system refuses
                raise DataError(f"cannot unpack {name!r} from the zip: {e}") from None
    return _data_root(dest)


def _copy(src, dst, chunk: bytes, written: int) -> int:
    """Write chunk and the rest of src to dst; the running total of unpacked bytes may not pass the cap."""
    while chunk:
        written += len(chunk)
        if written > MAX_DATASET_ZIP_BYTES:  # zipfile also stops at each declared size; belt and braces
            raise DataError(f"zip unpacks to more than {_size(MAX_DATASET_ZIP_BYTES)}")
        dst.write(chunk)
        chunk = src.read(1 << 20)
    return written


def _data_root(dest: Path) -> Path:
    """The folder holding the class folders: dest, or the single folder a zip wraps them in."""
    root = dest
    for _ in range(3):  # a zip of one folder holding the class folders: use that folder
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir() and any(p.is_dir() for p in entries[0].iterdir()):
            root = entries[0]
        else:
            break
    return root
