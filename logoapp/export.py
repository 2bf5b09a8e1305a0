"""A saved model as one file other programs run without logoapp: ONNX (onnxruntime) or TorchScript (torch.jit.load),
with logoapp's preprocessing inside the graph, so the export sees exactly what training and prediction saw.

The graph takes what every logoapp model takes, uint8 (N, H, W, C) pixels at any batch size and any image size
(C: the model's channels, 4 = RGBA, 3 = RGB), and does what `logoapp predict` does after decoding a file:
  1. squish to the model's stored image size (images.resize: antialiased bilinear, RGBA premultiplied so transparent
     pixels do not bleed colour; an image already at that size passes untouched), kept on the uint8 grid;
  2. the model's own resize and normalisation (models.Prep), then the network;
  3. outputs `logits` and `probs` = softmax(logits / temperature), the calibrated probabilities.
Class names, the temperature and the input contract travel in the file's metadata (`logoapp` key, JSON).
After writing, `parity.check` runs the export and logoapp's Predictor side by side (cli/export.py)."""
from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__, store
from .images import ImageError, background_of, method_of, to_channels

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript"}
META_KEY = "logoapp"          # the metadata entry (ONNX metadata_props; TorchScript extra file logoapp.json)
OPSET = 18                    # the first ONNX opset whose Resize has antialias (what the squish needs)


class ExportError(ValueError):
    """A model that cannot be exported, or an export that does not predict as logoapp does."""


def flatten(a: np.ndarray, meta: dict) -> np.ndarray:
    """(H, W, 3|4) uint8 -> (H, W, model channels): what a caller feeds the export for an image of other channels.
    The one place that decides how a transparent image meets an RGB model: over the background the model learned
    from its training images (images.background_of: white for models saved without one), as logoapp predicts."""
    return to_channels(np.ascontiguousarray(a), int(meta["channels"]), background=background_of(meta))


def squish(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, size, size) in [0, 255] on the uint8 grid: images.resize as tensor ops
    (RGBA premultiplied, resized, un-premultiplied; fully transparent pixels get colour 0). An image already at size
    passes through unchanged, decided by a tensor test rather than Python, so the graph keeps its dynamic size."""
    x = x.permute(0, 3, 1, 2).float()
    h, w = torch.ones_like(x[0, 0, :, 0]).sum(), torch.ones_like(x[0, 0, 0, :]).sum()
    same = (h == size) & (w == size)

    def rs(t):  # one axis at a time, rounded between, as torch's uint8 kernel (and Pillow) resize
        t = F.interpolate(t, size=(t.shape[2], size), mode="bilinear", antialias=True, align_corners=False).round()
        return F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)

    if x.shape[1] != 4:
        return rs(x).round().clamp(0, 255)
    a = x[:, 3:]
    t = x[:, :3] * a + 128  # premultiplied colour rounded as Pillow (and images._premultiply) round it
    r = rs(torch.cat([torch.floor((t + torch.floor(t / 256)) / 256), a, x[:, :3]], 1))  # + alpha, plain colour
    pa, al = r[:, :3].round(), r[:, 3:4].round().clamp(0, 255)
    rgb = torch.where(al > 0, torch.floor(pa * 255 / al.clamp(min=1) + 0.5).clamp(max=255), torch.zeros_like(pa))
    rgb = torch.where(same, r[:, 4:].round(), rgb)  # same size: the pixels themselves (identity resize)
    return torch.cat([rgb, al], 1)


class Exported(nn.Module):
    """A saved model with its preprocessing: uint8 (N, H, W, C) at any size -> (logits, calibrated probabilities)."""

    def __init__(self, model: nn.Module, meta: dict):
        super().__init__()
        self.model = copy.deepcopy(model).eval().float().cpu()
        self.arch, self.data_size = meta["arch"], int(meta["data_size"])
        self.temperature = float(meta.get("temperature", 1.0) or 1.0)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = squish(x, self.data_size) / 255
        m = self.model
        if self.arch == "pixel":  # ideal.distances without its batch blocks (a Python loop over a dynamic size)
            d = x.flatten(1)[:, None, :] - m.means.flatten(1)[None]
            d = d.abs().mean(-1) if m.kind == "l1" else d.pow(2).mean(-1).sqrt()
            return -d / m.temperature
        return m.body(m.prep.norm(m.prep.resize(x)))  # eval mode: no augmentation

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.logits(x)
        return z, F.softmax(z / self.temperature, 1)


def describe(meta: dict, fmt: str) -> dict:
    """The metadata an export carries: enough to feed it and read its answer without logoapp."""
    return {"format": fmt, "logoapp": __version__, "arch": meta["arch"], "classes": list(meta["vocab"]),
            "temperature": float(meta.get("temperature", 1.0) or 1.0), "channels": int(meta["channels"]),
            "image_size": int(meta["data_size"]), "model_size": int(meta["size"]),
            "input": f"uint8 (N, H, W, {meta['channels']}) {'RGBA' if meta['channels'] == 4 else 'RGB'}, any N, H, W",
            "outputs": ["logits", "probs (softmax of logits / temperature)"],
            "name": meta.get("name"), "metrics": meta.get("metrics") or {},
            "background": list(background_of(meta)),  # flatten transparent images on it for an RGB model
            "resize": method_of(meta)}


def default_out(model_dir: str | Path, fmt: str) -> Path:
    """MODEL_DIR/model.onnx or MODEL_DIR/model.torchscript: the export travels with its model folder."""
    return Path(model_dir) / f"model{SUFFIX[fmt]}"


def example(meta: dict, n: int = 2) -> torch.Tensor:
    """A batch to trace with (any values: the graph has no data-dependent branches)."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, meta["data_size"], meta["data_size"], meta["channels"]), dtype=torch.uint8,
                         generator=g)


def write_onnx(net: Exported, meta: dict, out: Path) -> None:
    """torch.onnx.export with torch.export (dynamo) underneath: the legacy TorchScript exporter has no antialiased
    resize. Dynamic batch, height and width; weights inside the one file."""
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("height", min=2, max=8192),
            2: torch.export.Dim("width", min=2, max=8192)}
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example(meta),), str(out), input_names=["images"], output_names=["logits", "probs"],
                          dynamic_shapes={"x": dims}, dynamo=True, opset_version=OPSET, external_data=False,
                          verbose=False)
    import onnx
    m = onnx.load(str(out))
    m.doc_string = "logoapp image classifier: uint8 (N, H, W, C) pixels in, logits and probs out"
    onnx.helper.set_model_props(m, {META_KEY: json.dumps(describe(meta, "onnx")),
                                    "classes": json.dumps(list(meta["vocab"])),
                                    "temperature": repr(float(meta.get("temperature", 1.0) or 1.0))})
    onnx.save(m, str(out))


def write_torchscript(net: Exported, meta: dict, out: Path) -> None:
    """torch.jit.trace (shapes stay dynamic: nothing in the graph branches on them); metadata as logoapp.json."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, (example(meta),), check_trace=False)
        torch.jit.save(traced, str(out), _extra_files={f"{META_KEY}.json": json.dumps(describe(meta, "torchscript"))})


class _quiet:
    """Silence the exporter's progress lines on stdout (the CLI's stdout is for results and JSON)."""

    def __enter__(self):
        self.old = os.dup(1)
        self.tmp = tempfile.TemporaryFile()
        os.dup2(self.tmp.fileno(), 1)
        return self

    def __exit__(self, *exc):
        os.dup2(self.old, 1)
        os.close(self.old)
        self.tmp.close()
        return False


def export(model: nn.Module, meta: dict, fmt: str, out: str | Path) -> Path:
    """Write model (with meta, as store.load returns them) to out in fmt; the file appears only when whole."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if method_of(meta) != "squish":  # the graph squishes; a crop or a pad inside it is not written yet
        raise ExportError(f"this model makes its inputs square by {method_of(meta)}; exports support squish only "
                          "for now (train with --resize squish to export)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    net = Exported(model, meta).eval()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with torch.no_grad():
            (write_onnx if fmt == "onnx" else write_torchscript)(net, meta, tmp)
        os.replace(tmp, out)
    except ExportError:
        raise
    except Exception as e:  # an operator the exporter cannot translate: one line, not the exporter's page
        raise ExportError(f"cannot export this {meta['arch']} to {fmt}: {type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export_folder(model_dir: str | Path, fmt: str, out: str | Path | None = None) -> Path:
    """Export a saved model folder (default out: MODEL_DIR/model.<fmt>)."""
    model, meta = store.load(model_dir)
    return export(model, meta, fmt, out or default_out(model_dir, fmt))


# ============================================================================================= running an export

class Runner:
    """An exported file, loaded: (N, H, W, C) uint8 -> probabilities, plus the metadata it carries."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"no such file: {self.path}")
        try:
            props = self._open()
        except Exception as e:  # onnxruntime and torch.jit raise their own kinds for a file they cannot read
            raise ExportError(f"{self.path.name} is not a readable {self.path.suffix.lstrip('.')} file "
                              f"({type(e).__name__}: {str(e).strip()[:200]})") from None
        try:
            self.meta = json.loads(props[META_KEY])
            self.vocab, self.channels = self.meta["classes"], int(self.meta["channels"])
        except (KeyError, ValueError, TypeError):
            raise ExportError(f"{self.path.name} was not exported by logoapp (no {META_KEY} metadata)") from None

    def _open(self) -> dict:
        """Load the file; its metadata."""
        if self.path.suffix == ".onnx":
            import onnxruntime as ort
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
            props = self.session.get_modelmeta().custom_metadata_map
            self.fmt, self.module = "onnx", None
        else:
            files = {f"{META_KEY}.json": ""}
            with warnings.catch_warnings():  # torch.jit is deprecated in favour of torch.export, but still loads
                warnings.simplefilter("ignore", FutureWarning)
                self.module = torch.jit.load(str(self.path), map_location="cpu", _extra_files=files).eval()
            props, self.fmt, self.session = {META_KEY: files[f"{META_KEY}.json"]}, "torchscript", None
        return props

    def probs(self, xb: np.ndarray) -> np.ndarray:
        xb = np.ascontiguousarray(xb, dtype=np.uint8)
        if self.session is not None:
            return self.session.run(["probs"], {"images": xb})[0]
        with torch.inference_mode():
            return self.module(torch.from_numpy(xb))[1].numpy()

    def predict_many(self, srcs, bs: int = 64, top: int | None = None, with_unknown: bool = False) -> list[dict]:
        """Predictor.predict_many's rows ({path, label, probs} or {path, error}), through the export: each file
        decoded by logoapp's pipeline at the stored image size, as `logoapp predict MODEL_DIR` does. An export
        carries no unknown-input test: with_unknown rows say unknown false, score null."""
        from .images import decode
        size, rows = int(self.meta["image_size"]), []
        for run in (list(srcs)[i:i + bs] for i in range(0, len(srcs), bs)):
            xs, ok = [], []
            for j, s in enumerate(run):
                try:
                    xs.append(decode(s, size, self.channels))
                    ok.append(j)
                except ImageError as e:
                    rows.append({"path": str(s), "error": str(e)})
                    continue
                rows.append({"path": str(s)})
            start = len(rows) - len(run)
            for j, p in zip(ok, self.probs(np.stack(xs)) if xs else []):
                order = np.argsort(-p)[:top]
                rows[start + j].update(label=self.vocab[order[0]], probs={self.vocab[i]: float(p[i]) for i in order},
                                       **({"unknown": False, "score": None} if with_unknown else {}))
        return rows
