"""What one browser session owns (Session) and what every session of one app shares (Shared). No Gradio here:
the tabs keep a Session in a gr.State, and handlers take it as a plain argument."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .. import tmpdirs
from ..views import DataCtx

if TYPE_CHECKING:
    from ..evaluate import Evaluation
    from .registry import Registry


class Shared:
    """What all sessions of one app share, read-only once built: the start-up data (with its pixel baselines), the
    models folder and its picker registry, and what start-up asked for."""

    def __init__(self, ctx0: DataCtx, reg: Registry, data: str | Path | None = None, size: int | None = None,
                 allow_folders: bool = True):
        self.ctx0, self.reg, self.folder = ctx0, reg, reg.folder
        self.data = data                 # --data as given (None or 'embedded': the crest set)
        self.size = size                 # --size as given (None: fitted to the images)
        self.allow_folders = allow_folders

    @property
    def own_data(self) -> bool:
        """Whether start-up was given a folder (not the embedded crests)."""
        return self.data not in (None, "", "embedded")


class Session:
    """Everything one browser session owns: its dataset (None: the shared one), leaderboard, evaluations, stop flag."""

    def __init__(self, shared: Shared | None = None):
        self.shared = shared
        self.ctx: DataCtx | None = None
        self.board: dict[str, dict] = {}
        self.evals: dict[str, tuple[Evaluation, dict]] = {}
        self.stop = threading.Event()
        self.sel = 0
        self.running = False
        self.imported: str | None = None  # the model the last import added
        self.check = None                  # checkview.Check: the audit of check_ctx and what was done about it
        self.check_ctx: DataCtx | None = None
        self.check_ids: list[int] = []     # dataset index of each thumbnail in the Check-data list
        self.check_sel: int | None = None  # the one picked

    def __deepcopy__(self, memo):  # gr.State copies its initial value per session: give each a fresh one
        return Session(self.shared)

    @property
    def data(self) -> DataCtx:
        """The dataset this session works on: its own, else the app's start-up data."""
        return self.ctx or self.shared.ctx0

    @property
    def reg(self) -> Registry:
        return self.shared.reg

    def use(self, ctx: DataCtx | None) -> None:
        """Switch to another dataset (None: the shared start-up one); what was measured on the old one goes."""
        old, self.ctx = self.ctx, ctx
        if old is not None and old is not ctx and old.tmpdir:
            tmpdirs.remove(old.tmpdir)
        self.board, self.evals, self.sel = {}, {}, 0

    def swap(self, ctx: DataCtx) -> None:
        """The same dataset as it is after a fix (same folder, files moved): the leaderboard stays (its models are
        stale now, and the Train tab says so); evaluations, which scored the old labels, go."""
        self.ctx, self.evals = ctx, {}

    def close(self) -> None:
        """Called by Gradio when the session's state is dropped: remove an unpacked zip, stop a run."""
        self.stop.set()
        self.use(None)
