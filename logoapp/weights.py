"""ImageNet weights for the pretrained backbones, fetched on first use the way torch does it: torchvision's published
checkpoint, saved in torch's hub cache (`torch.hub.get_dir()/checkpoints`, where torchvision and fastai look too),
checked against the SHA-256 prefix in its file name, written atomically (a partial file never appears under the
real name), with progress. `LOGOAPP_WEIGHTS_URL` points at a mirror; `LOGOAPP_OFFLINE=1` forbids any download."""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

BASE_URL = "https://download.pytorch.org/models/"
CHUNK = 1 << 20
TIMEOUT = 30  # seconds without a byte before a download gives up


@dataclass(frozen=True)
class Backbone:
    name: str
    file: str      # torchvision's file name; the part after the last '-' is the SHA-256 prefix
    size_mb: float  # for the listing, before anything is downloaded
    note: str


BACKBONES = {b.name: b for b in (
    Backbone("resnet18", "resnet18-f37072fd.pth", 44.7, "ResNet-18, the fast.ai book's default"),
    Backbone("resnet34", "resnet34-b627a593.pth", 83.3, "ResNet-34"),
    Backbone("mobilenet_v3_large", "mobilenet_v3_large-8738ca79.pth", 21.1,
             "MobileNetV3-Large: a quarter of ResNet-18's compute, made for CPU inference"),
)}
_VERIFIED: dict[tuple, bool] = {}  # (path, size, mtime) -> hash prefix matched, so a file is hashed once a process


class WeightsError(RuntimeError):
    """Weights that cannot be had, with one line saying why and what to do instead."""


def offline() -> bool:
    return os.environ.get("LOGOAPP_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def expected_prefix(file: str) -> str:
    """The hash prefix torchvision puts in its file names (resnet18-f37072fd.pth -> f37072fd)."""
    m = re.search(r"-([0-9a-f]{6,64})\.pth?$", file)
    if not m:
        raise ValueError(f"{file} carries no hash prefix")
    return m.group(1)


def find(fname: str, folder: str | Path | None = None) -> Path | None:
    """A checkpoint file already on disk: torch's hub cache, or the models folder (its pretrained/ or itself)."""
    from .config import models_dir
    folder = Path(folder or models_dir())
    places = [cache_dir() / fname, folder / "pretrained" / fname, folder / fname]
    return next((p for p in places if p.is_file()), None)


def path(name: str, folder: str | Path | None = None) -> Path | None:
    """The backbone's checkpoint on disk, or None."""
    return find(_backbone(name).file, folder)


def listing(folder: str | Path | None = None) -> list[dict]:
    """Every backbone, its file, its size and whether it is on disk (for `logoapp weights`)."""
    out = []
    for b in BACKBONES.values():
        p = path(b.name, folder)
        out.append({"name": b.name, "file": b.file, "size_mb": round(p.stat().st_size / 2**20, 1) if p else b.size_mb,
                    "on_disk": p is not None, "path": str(p or cache_dir() / b.file), "note": b.note})
    return out


def fetch(name: str, folder: str | Path | None = None, progress=None) -> Path:
    """The checkpoint's path, downloading it first when it is not on disk. progress(done_bytes, total_bytes)."""
    found = path(name, folder)
    if found is not None:
        return found
    b = _backbone(name)
    fix = (f"train without them with --no-pretrained, or place {b.file} in {cache_dir()}")
    if offline():
        raise WeightsError(f"could not download {name} weights: offline (LOGOAPP_OFFLINE is set); {fix}")
    url = os.environ.get("LOGOAPP_WEIGHTS_URL", BASE_URL).rstrip("/") + "/" + b.file
    try:
        return download(url, cache_dir() / b.file, expected_prefix(b.file), progress)
    except WeightsError as e:
        raise WeightsError(f"could not download {name} weights: {e}; {fix}") from None


def download(url: str, dest: Path, sha_prefix: str, progress=None) -> Path:
    """url -> dest, verified against sha_prefix, written atomically; any failure leaves no file behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=TIMEOUT) as r:  # noqa: S310 (http(s) only)
            total = int(r.headers.get("Content-Length") or 0)
            done = 0
            while chunk := r.read(CHUNK):
                f.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            if total and done != total:
                raise WeightsError(f"the transfer stopped at {done:,} of {total:,} bytes")
        if not digest.hexdigest().startswith(sha_prefix):
            raise WeightsError(f"the file from {url} is corrupt (SHA-256 {digest.hexdigest()[:8]}, expected "
                               f"{sha_prefix})")
        os.replace(tmp, dest)
        return dest
    except urllib.error.HTTPError as e:
        raise WeightsError(f"{url} answered {e.code} {e.reason}") from None
    except http.client.HTTPException as e:  # IncompleteRead, a malformed answer
        raise WeightsError(f"the transfer from {url} broke off ({type(e).__name__})") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e.strerror or e
        raise WeightsError(f"cannot reach {url} ({reason})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def verify(p: Path, file: str | None = None) -> Path:
    """p, after checking its SHA-256 against the prefix in torchvision's file name (once per file and process); a
    WeightsError for a file that does not match (changed, truncated or another file under that name)."""
    p = Path(p)
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        digest = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        _VERIFIED[key] = digest.hexdigest().startswith(expected_prefix(file or p.name))
    if not _VERIFIED[key]:
        raise WeightsError(f"{p} does not match its published SHA-256 ({expected_prefix(file or p.name)}...): "
                           "delete it and download it again")
    return p


def load(name: str, folder: str | Path | None = None, progress=None) -> dict:
    """The backbone's ImageNet state dict: fetched on first use, verified, loaded as plain tensors."""
    p = verify(fetch(name, folder, progress), _backbone(name).file)
    return torch.load(p, map_location="cpu", weights_only=True)


def plan(name: str, folder: str | Path | None = None) -> str:
    """One line saying which weights a run of this backbone will start from, before it starts."""
    b = _backbone(name)
    p = path(name, folder)
    if p is not None:
        return f"starts from ImageNet weights ({b.file}, on disk at {p.parent})"
    if offline():
        return (f"ImageNet weights ({b.file}, {b.size_mb:.0f} MB) are not on disk and downloads are off "
                f"(LOGOAPP_OFFLINE): place the file in {cache_dir()}, or train from random init")
    return f"will start from ImageNet weights: {b.file} ({b.size_mb:.0f} MB) is downloaded once, on first use"


def _backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise WeightsError(f"no ImageNet weights known for {name!r} (known: {', '.join(BACKBONES)})")
    return BACKBONES[name]
