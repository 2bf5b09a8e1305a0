"""The tabs, left to right, one module each. A tab module has

- layout(ui, shared): builds its components (with the start-up data's views) and registers them in `ui` by name;
- wire(ui): connects its handlers, which live at module level, take plain inputs plus the Session and return values
  or Updates (by component name);
- refresh(s) -> Updates: what it shows for the session's current data.

refresh_all merges every tab's refresh: it is how one tab (Data's Load) refreshes all the others.
"""
from __future__ import annotations

import importlib

from ..wiring import Updates

TABS = ("data", "check", "ideal", "train", "evaluate", "predict")


def modules() -> list:
    """The tab modules in order (imported when first needed: the predict-only demo never loads them)."""
    return [importlib.import_module(f"{__name__}.{t}") for t in TABS]


def refresh_all(s) -> Updates:
    out = Updates()
    for tab in modules():
        out |= tab.refresh(s)
    return out
