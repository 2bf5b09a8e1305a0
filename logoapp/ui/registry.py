"""The models a picker can offer (Evaluate's and Predict's): the current data's pixel baselines plus every saved
model folder, and the picker updates and handlers both tabs share."""
from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr
import torch

from .. import ideal, store
from ..views import DataCtx, misfit
from .state import Session
from .wiring import Updates

BASE = "@baseline-"             # picker values of the pixel baselines ('@' never appears in a saved model's name)
PICKERS = ("emodel", "pmodel")  # the pickers of the Evaluate and Predict tabs
FITTING = ("emodel",)           # pickers that offer only the models the loaded data can score


class Registry:
    """Models a picker can offer: the pixel baselines of the current data plus every model folder on disk."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._cache: dict[str, tuple[float, torch.nn.Module, dict, dict]] = {}
        self._lock = threading.Lock()

    def saved(self) -> list[dict]:
        return store.list_models(self.folder)

    def choices(self, ctx: DataCtx | None, fit: bool = False) -> list[tuple[str, str]]:
        """(label, value) of every model; fit: only those whose classes (and, for a pixel model, image size) fit
        ctx's data (unfit lists the others)."""
        out = []
        if ctx is not None:
            for kind in ideal.DISTANCES:
                acc = ctx.baseline(kind)["accuracy"] if kind in ctx.computed() else None
                label = f"pixel-similarity baseline · {kind.upper()}" + (f" · {acc:.1%}" if acc is not None else "")
                out.append((label, BASE + kind))
        for m in self.saved():
            acc = m.get("accuracy")
            if fit and ctx is not None and misfit(m, ctx):
                continue
            out.append((f"{m['name']} · {m['arch']}" + (f" · {acc:.1%}" if isinstance(acc, (int, float)) else ""),
                        m["name"]))
        return out

    def unfit(self, ctx: DataCtx) -> list[tuple[str, str]]:
        """(name, why) of the saved models the loaded data cannot score."""
        return [(m["name"], why) for m in self.saved() if (why := misfit(m, ctx))]

    def default(self, ctx: DataCtx | None) -> str | None:
        """The newest saved model for these classes, else the L1 baseline."""
        for m in self.saved():
            if ctx is None:
                return m["name"]
            try:
                if store.read_meta(m["path"])["vocab"] == ctx.ds.vocab:
                    return m["name"]
            except store.ModelError:
                continue
        return BASE + "l1" if ctx is not None else None

    def get(self, name: str, ctx: DataCtx | None, with_extra: bool = False) -> tuple:
        """(model, meta) by picker value; saved models are loaded once and reused until their files change.
        with_extra: (model, meta, the tensors stored beside the weights: the unknown-input test's)."""
        if not name:
            raise gr.Error("Pick a model first.")
        if name.startswith(BASE):
            if ctx is None:
                raise gr.Error("The pixel baseline needs a dataset.")
            b = ctx.baseline(name[len(BASE):])
            return (b["model"], b["meta"], {}) if with_extra else (b["model"], b["meta"])
        known = {m["name"]: m["path"] for m in self.saved()}
        if name not in known:
            raise gr.Error(f"No model named '{name}' in {self.folder}.")
        path = Path(known[name])
        mtime = (path / "model.json").stat().st_mtime
        with self._lock:
            hit = self._cache.get(str(path))
            if hit and hit[0] == mtime:
                return hit[1:] if with_extra else hit[1:3]
        try:
            model, meta, extra = store.load(path, with_extra=True)
        except store.ModelError as e:
            raise gr.Error(str(e)) from None
        with self._lock:
            self._cache[str(path)] = (mtime, model, meta, extra)
        return (model, meta, extra) if with_extra else (model, meta)

    def folder_of(self, name: str) -> Path:
        known = {m["name"]: m["path"] for m in self.saved()}
        if name not in known:
            raise gr.Error(f"No saved model named '{name}'.")
        return Path(known[name])


def pickers(s: Session, names=PICKERS, choices=None, **values) -> Updates:
    """Picker updates with the current choices (Evaluate's: only models that fit the data, with a note naming the
    others); emodel=..., pmodel=... also select a model in that picker (not a model it does not offer)."""
    out = Updates()
    for n in names:
        fit = n in FITTING
        ch = s.reg.choices(s.data, fit=True) if fit else (s.reg.choices(s.data) if choices is None else choices)
        kw = dict(choices=ch)
        if fit:
            kw["info"] = unfit_note(s.reg.unfit(s.data))
        if n in values and (not fit or values[n] in [v for _, v in ch]):
            kw["value"] = values[n]
        out[n] = gr.update(**kw)
    return out


def unfit_note(unfit: list[tuple[str, str]]) -> str:
    """The Evaluate picker's note on the saved models it does not offer, and why."""
    if not unfit:
        return ""
    first = "; ".join(f"{n}: {why}" for n, why in unfit[:2])
    more = f" (and {len(unfit) - 2} more)" if len(unfit) > 2 else ""
    return f"Not offered, made for other data: {first}{more}."


def on_models_tab(s: Session, e_val, p_val) -> Updates:
    """Evaluate or Predict opened: models saved by other sessions (or copied in) show up; a pick that is gone falls
    back to the default."""
    evals = [v for _, v in s.reg.choices(s.data, fit=True)]
    vals = [v for _, v in s.reg.choices(s.data)]
    return pickers(s, emodel=e_val if e_val in evals else s.reg.default(s.data),
                   pmodel=p_val if p_val in vals else s.reg.default(s.data))
