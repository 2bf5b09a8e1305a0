"""One place for logoapp's defaults; each says why it is what it is."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Settings:
    size: int = 140            # crests are 140x140: the most a dataset is stored at unless a size is given
    valid_pct: float = 0.2     # the fast.ai book's default hold-out fraction
    seed: int = 42             # same seed -> same split, same synthetic set, same CPU metrics
    bs: int = 64               # fits comfortably in RAM and keeps 2-core CPUs busy
    workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))  # image decoding threads


def cache_dir() -> Path:
    """Where decoded-image caches and the embedded dataset live (LOGOAPP_CACHE overrides)."""
    env = os.environ.get("LOGOAPP_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "logoapp"
    base.mkdir(parents=True, exist_ok=True)
    return base


def models_dir() -> Path:
    """Where trained models are saved (LOGOAPP_MODELS overrides; default ./models)."""
    return Path(os.environ.get("LOGOAPP_MODELS", "models"))
