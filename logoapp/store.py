"""Model folders: weights (tensors only, loaded with weights_only=True) plus a JSON sidecar. Writes are atomic."""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .config import models_dir

FORMAT = 1
FORMAT_EXTRA = 2               # weights file with extra tensors: older logoapps ask for an upgrade instead of failing
EXTRA = "extra:"               # key prefix of those tensors (the unknown-input test's features); never a module name
REQUIRED = ("arch", "vocab", "size", "data_size", "channels", "weights", "sha256")
MAX_MODEL_ZIP_BYTES = 512 * 2**20   # unpacked size of an imported model zip
MAX_MODEL_ZIP_FILES = 16             # members of a model zip (it holds model.json and one weights file): junk refused
MAX_MODEL_JSON_BYTES = 2**20         # model.json is a few KB
MAX_WEIGHTS_BYTES = 256 * 2**20      # a ResNet-34 is 85 MB; a weights file may not cost more memory than this to load
MAX_CLASSES = 10_000


class ModelError(ValueError):
    """A model folder that cannot be used, with the reason."""


def _atomic_write(path: Path, write) -> None:
    """write(fileobj) into a temp file beside path, fsync, then rename over path."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _versions() -> dict:
    import fastai
    return {"logoapp": __version__, "torch": torch.__version__, "fastai": fastai.__version__,
            "python": platform.python_version()}


def safe_name(name: str) -> str:
    """A folder name anyone can type: letters, digits, '-', '_' and '.'."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    return s[:64] or "model"


def save(model: nn.Module, meta: dict, out: str | Path, extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Save to out/ (weights-<hash>.pt, then model.json last): a crash at any point leaves the previous model whole.
    extra: tensors kept beside the weights in the same file and checksum (the unknown-input test's features);
    load(..., with_extra=True) gives them back."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state.update({EXTRA + k: v.detach().cpu().contiguous() for k, v in (extra or {}).items()})
    # unique per process and thread: concurrent saves don't collide
    blob_path = out / f".weights.{os.getpid()}.{threading.get_ident()}.pending"
    _atomic_write(blob_path, lambda f: torch.save(state, f))
    digest = hashlib.sha256(blob_path.read_bytes()).hexdigest()
    weights = f"weights-{digest[:16]}.pt"
    os.replace(blob_path, out / weights)
    meta = {**meta, "format": FORMAT_EXTRA if extra else FORMAT, "weights": weights, "sha256": digest,
            "versions": _versions(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "name": out.name}
    _atomic_write(out / "model.json", lambda f: f.write(json.dumps(meta, indent=2, default=float).encode()))
    for p in out.glob("weights-*.pt"):  # the previous weights, now unreferenced
        if p.name != weights:
            p.unlink(missing_ok=True)
    _sweep(out)
    return out


def _sweep(out: Path, age: float = 3600) -> None:
    """Remove what saves killed midway left behind (hidden temp files); a save still running is younger than age s."""
    stale = time.time() - age
    for p in [*out.glob(".weights.*.pending"), *out.glob(".*.tmp")]:
        try:
            if p.stat().st_mtime < stale:
                p.unlink()
        except OSError:
            pass  # gone already, or not ours to remove


def _read_json(path: Path) -> dict:
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"not a model folder: {path.parent} has no model.json") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"corrupt model.json in {path.parent}: {e}") from None
    if not isinstance(m, dict):
        raise ModelError(f"corrupt model.json in {path.parent}: not a JSON object")
    return m


def read_meta(folder: str | Path) -> dict:
    """model.json, checked for the fields a model needs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"no such model folder: {folder}")
    m = _read_json(folder / "model.json")
    missing = [k for k in REQUIRED if k not in m]
    if missing:
        raise ModelError(f"model.json in {folder} lacks {', '.join(missing)}")
    if not isinstance(m.get("format", 0), int):
        raise ModelError(f"model.json in {folder} has an invalid format number")
    if m.get("format", 0) > FORMAT_EXTRA:
        raise ModelError(f"{folder} was saved by a newer logoapp (format {m['format']}); upgrade logoapp to load it")
    if not (isinstance(m["vocab"], list) and len(m["vocab"]) >= 2 and all(isinstance(v, str) for v in m["vocab"])):
        raise ModelError(f"model.json in {folder} has no valid vocab (a list of at least two class names)")
    if len(m["vocab"]) > MAX_CLASSES:
        raise ModelError(f"model.json in {folder} names {len(m['vocab']):,} classes (at most {MAX_CLASSES:,})")
    if m["channels"] not in (3, 4) or not all(isinstance(m[k], int) and 8 <= m[k] <= 1024
                                              for k in ("size", "data_size")):
        raise ModelError(f"model.json in {folder} has invalid channels or sizes")
    if not re.fullmatch(r"weights-[0-9a-f]{16}\.pt", str(m["weights"])):
        raise ModelError(f"model.json in {folder} names an invalid weights file")
    _check_calibration(m, folder)
    _check_input(m, folder)
    return m


def _check_input(m: dict, folder) -> None:
    """The optional input entries: "background" (the colour transparent inputs are flattened on, [r, g, b]) and
    "resize" (squish, crop or pad); models saved without them use white and squish (images.background_of,
    images.method_of)."""
    from .images import RESIZE_METHODS
    bg = m.get("background")
    if bg is not None and not (isinstance(bg, list) and len(bg) == 3
                               and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in bg)):
        raise ModelError(f"model.json in {folder} has an invalid background (three integers 0-255)")
    if m.get("resize", "squish") not in RESIZE_METHODS:
        raise ModelError(f"model.json in {folder} has an invalid resize method (one of {', '.join(RESIZE_METHODS)})")


def input_meta(ds, n: int = 512) -> dict:
    """What model.json records about how a dataset's images were read, for prediction to do the same: the
    background transparent inputs are flattened on (images.typical_background of up to n training images) and the
    resize method."""
    import numpy as np

    from .images import typical_background
    tr = ds.idx("train")
    tr = tr if len(tr) else np.arange(len(ds.items))
    pick = np.sort(tr[::max(1, len(tr) // n)])  # a sample read from the cache, never every image (mapped caches)
    return {"background": list(typical_background(ds.images[pick])), "resize": getattr(ds, "resize", "squish")}


def _check_calibration(m: dict, folder) -> None:
    """The optional calibration entries (temperature, unknown-input test), checked when present."""
    from .calibrate import check_temperature
    from .ood import check_meta
    try:
        if "temperature" in m:
            check_temperature(m["temperature"])
        if m.get("unknown") is not None:
            check_meta(m["unknown"])
    except ValueError as e:
        raise ModelError(f"model.json in {folder}: {e}") from None


def build_from_meta(m: dict) -> nn.Module:
    """An untrained model of the architecture the metadata describes."""
    from . import models as M
    from .ideal import PixelSimilarity
    if m["arch"] == "pixel":
        means = torch.zeros(len(m["vocab"]), m["channels"], m["data_size"], m["data_size"])
        return PixelSimilarity(means, m.get("distance", "l1"))
    if m["arch"] not in M.trainable():
        raise ModelError(f"unknown architecture {m['arch']!r} (this logoapp knows {', '.join(M.names())})")
    aug = {**m.get("aug", {}), "enabled": False}
    model, _ = M.build(m["arch"], m["channels"], len(m["vocab"]), m["data_size"], m["size"], m.get("mean"),
                       m.get("std"), aug, pretrained=False)
    return model


def load(folder: str | Path, with_extra: bool = False) -> tuple[nn.Module, dict] | tuple[nn.Module, dict, dict]:
    """(model in eval mode, metadata); refuses missing, corrupt, tampered or mismatched files with a ModelError.
    with_extra: (model, metadata, the extra tensors saved with it ({} for models saved without))."""
    folder = Path(folder)
    m = read_meta(folder)
    wpath = folder / m["weights"]
    if not wpath.is_file():
        raise ModelError(f"{folder}: weights file {m['weights']} is missing")
    if wpath.stat().st_size > MAX_WEIGHTS_BYTES:
        raise ModelError(f"{folder}: weights file is larger than {MAX_WEIGHTS_BYTES // 2**20} MB")
    shapes = _expected_shapes(folder, m)  # before anything is allocated: what the metadata's model would cost
    data = wpath.read_bytes()
    if hashlib.sha256(data).hexdigest() != m["sha256"]:
        raise ModelError(f"{folder}: weights file is corrupt or was changed (checksum mismatch)")
    try:
        import io
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses any pickled code; report it, never run it
        raise ModelError(f"{folder}: weights file cannot be loaded safely "
                         f"({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{folder}: weights file is not a plain tensor dictionary")
    _check_whole(folder, state)
    extra = {k[len(EXTRA):]: state.pop(k) for k in [k for k in state if k.startswith(EXTRA)]}
    _check_shapes(folder, m, state, shapes)
    model = _build(folder, m)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).split("\n")[0:3]
        raise ModelError(f"{folder}: weights do not fit a {m['arch']} with {len(m['vocab'])} classes "
                         f"({' '.join(s.strip() for s in first)[:300]})") from None
    return (model.eval(), m, extra) if with_extra else (model.eval(), m)


def _build(folder: Path, m: dict) -> nn.Module:
    """build_from_meta, with any failure of a hand-edited or hostile model.json as a ModelError."""
    try:
        return build_from_meta(m)
    except ModelError:
        raise
    except Exception as e:  # wrong types, unknown options
        raise ModelError(f"{folder}: model.json does not describe a model this logoapp can build "
                         f"({type(e).__name__}: {str(e)[:200]})") from None


def _expected_shapes(folder: Path, m: dict) -> dict[str, tuple]:
    """The tensor shapes the model that model.json describes would hold, found by building it on the 'meta' device
    (no memory); refused when the parameters alone would pass MAX_WEIGHTS_BYTES."""
    with torch.device("meta"):
        model = _build(folder, m)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    cost = sum(4 * math.prod(s) for s in shapes.values())
    if cost > MAX_WEIGHTS_BYTES:
        raise ModelError(f"{folder}: model.json describes a model of {cost / 2**20:,.0f} MB "
                         f"(at most {MAX_WEIGHTS_BYTES // 2**20} MB)")
    return shapes


def _check_whole(folder: Path, state: dict) -> None:
    """Every tensor must be stored whole: one 'stretched' from one stored number (stride 0) would cost a small file
    gigabytes once copied into the model."""
    for k, t in state.items():
        if not t.is_contiguous() or t.untyped_storage().nbytes() < t.numel() * t.element_size():
            raise ModelError(f"{folder}: weights file holds a tensor ({k}) that is not stored whole")


def _check_shapes(folder: Path, m: dict, state: dict, shapes: dict) -> None:
    """The weights must fit the model model.json describes exactly: no tensor missing, extra or of another shape."""
    wrong = sorted(set(shapes) ^ set(state)) or [k for k in shapes if tuple(state[k].shape) != shapes[k]]
    if wrong:
        raise ModelError(f"{folder}: weights do not fit a {m['arch']} with {len(m['vocab'])} classes "
                         f"({len(wrong)} tensors missing, extra or of the wrong shape, first: {wrong[0]})")


def list_models(folder: str | Path | None = None) -> list[dict]:
    """Every loadable model folder under folder (default ./models), newest first."""
    folder = Path(folder or models_dir())
    out = []
    if folder.is_dir():
        for d in folder.iterdir():
            if d.is_dir() and (d / "model.json").is_file():
                try:
                    m = read_meta(d)
                except ModelError:
                    continue
                out.append({"name": d.name, "path": str(d), "arch": m["arch"], "classes": len(m["vocab"]),
                            "accuracy": (m.get("metrics") or {}).get("accuracy"), "date": m.get("date", ""),
                            "vocab": m["vocab"], "data_size": m["data_size"]})
    return sorted(out, key=lambda r: r["date"], reverse=True)


def unique_dir(folder: str | Path | None, stem: str) -> Path:
    """models/<stem>, or models/<stem>-2, -3... if taken."""
    folder = Path(folder or models_dir())
    p, i = folder / safe_name(stem), 2
    while p.exists():
        p, i = folder / f"{safe_name(stem)}-{i}", i + 1
    return p


def export_zip(folder: str | Path, dest: str | Path | None = None) -> Path:
    """One .zip holding model.json and the weights, for sharing or a Space."""
    folder = Path(folder)
    m = read_meta(folder)
    dest = Path(dest or Path(tempfile.mkdtemp(prefix="logoapp-export-")) / f"{folder.name}.zip")
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(folder / "model.json", "model.json")
        z.write(folder / m["weights"], m["weights"])
    return dest


def import_zip(zpath: str | Path, folder: str | Path | None = None, name: str | None = None) -> Path:
    """Check and unpack an exported model zip into models/NAME; only model.json and one weights file are taken."""
    zpath = Path(zpath)
    try:
        z = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelError(f"not a model zip: {e}") from None
    with z, tempfile.TemporaryDirectory(prefix="logoapp-import-") as tmp:
        infos = {i.filename: i for i in z.infolist()}
        if len(infos) > MAX_MODEL_ZIP_FILES:
            raise ModelError(f"not a model zip: {len(infos)} members (a model zip holds model.json and its weights)")
        if "model.json" not in infos:
            raise ModelError("not a model zip: model.json is missing")
        if sum(i.file_size for i in infos.values()) > MAX_MODEL_ZIP_BYTES:
            raise ModelError(f"model zip too large when unpacked (> {MAX_MODEL_ZIP_BYTES // 2**20} MB)")
        if infos["model.json"].file_size > MAX_MODEL_JSON_BYTES:
            raise ModelError("not a model zip: model.json is too large")
        (Path(tmp) / "model.json").write_bytes(z.read("model.json"))
        try:
            m = read_meta(tmp)
        except ModelError as e:
            raise ModelError(str(e).replace(tmp, "the zip")) from None
        if m["weights"] not in infos:
            raise ModelError(f"model zip lacks its weights file {m['weights']}")
        (Path(tmp) / m["weights"]).write_bytes(z.read(m["weights"]))
        try:
            load(tmp)
        except ModelError as e:
            raise ModelError(str(e).replace(tmp, "the zip")) from None
        stem = name if isinstance(name, str) and name else str(m.get("name") or zpath.stem)
        while True:  # unique_dir + mkdir can race with another import of the same name: retry
            dest = unique_dir(folder, stem)
            try:
                dest.mkdir(parents=True)
                break
            except FileExistsError:
                continue
        for f in ("model.json", m["weights"]):
            shutil.copy2(Path(tmp) / f, dest / f)
    return dest
