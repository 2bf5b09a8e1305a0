"""The records a training run reports, in order: one Start, Batch records (at most MAX_UPDATES_PER_S a second, and
always the last batch of an epoch), one Epoch per epoch, then one Done (or one Error instead). `train.train` yields
them, `train.fit` passes them to its `emit` callback; the app draws them, the CLI prints them. Each has a `type`
(its name in lower case) and `to_dict()` for JSON."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Union


class _Record:
    type: ClassVar[str]

    def to_dict(self) -> dict:
        """Plain data with the record's type: what `logoapp train --json` prints (objects left out)."""
        out = {"type": self.type}
        out.update((f.name, getattr(self, f.name)) for f in fields(self) if f.repr)
        return out


@dataclass
class Start(_Record):
    """Training is about to begin."""
    type: ClassVar[str] = "start"
    model: str                  # the rung's name
    config: dict                # the resolved TrainConfig
    n_train: int
    n_valid: int
    n_params: int
    device: str
    weights_note: str           # where pretrained weights came from, or why there were none ('' when not used)
    n_iter: int                 # batches per epoch


@dataclass
class Batch(_Record):
    """Progress within an epoch (training batches only)."""
    type: ClassVar[str] = "batch"
    epoch: int                  # 0-based
    iter: int                   # 0-based batch number within the epoch
    n_iter: int
    n_epoch: int
    train_loss: float           # mean over this epoch's batches so far
    train_acc: float
    smooth_loss: float          # fastai's exponentially smoothed loss
    smooth_acc: float           # the same smoothing of the batch accuracy
    lr: float
    progress: float             # fraction of the whole run done, 0..1
    elapsed: float              # seconds since the run began


@dataclass
class Epoch(_Record):
    """One epoch finished and validated (NaN figures when there is no validation split)."""
    type: ClassVar[str] = "epoch"
    epoch: int
    n_epoch: int
    train_loss: float
    valid_loss: float
    accuracy: float
    seconds: float
    elapsed: float

    HISTORY: ClassVar[tuple[str, ...]] = ("epoch", "train_loss", "valid_loss", "accuracy", "seconds")

    def history(self) -> dict:
        """The row model.json keeps for this epoch."""
        return {k: getattr(self, k) for k in self.HISTORY}


@dataclass
class Done(_Record):
    """The run ended (finished, or stopped early with the model trained so far)."""
    type: ClassVar[str] = "done"
    model: str
    accuracy: float             # on the validation split (evaluate.evaluate)
    per_class: dict[str, float]
    history: list[dict]         # Epoch.history() per epoch
    seconds: float
    images_per_second: float
    n_params: int
    stopped: bool
    pretrained: bool
    weights_note: str
    model_path: str | None      # where it was saved (None: not saved)
    # calibration, fitted only for a saved model with a validation (or test) split; None otherwise
    temperature: float | None = None        # calibrate.py's T
    unknown: dict | None = None             # the unknown-input test (model.json's "unknown")
    calibration_seconds: float | None = None  # what fitting those two cost, after training
    net: Any = field(default=None, repr=False)    # the trained model, on the CPU in eval mode
    meta: dict = field(default_factory=dict, repr=False)  # what store.save writes to model.json
    extra: dict = field(default_factory=dict, repr=False)  # tensors saved beside the weights: Predictor(net, meta,
    #                                                        extra=extra) answers as the saved folder does


@dataclass
class Error(_Record):
    """The run failed; nothing was saved."""
    type: ClassVar[str] = "error"
    message: str


Event = Union[Start, Batch, Epoch, Done, Error]
