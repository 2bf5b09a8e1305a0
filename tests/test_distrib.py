"""Data-parallel training: each process's shard of an epoch, and `logoapp train --processes 2` (torchrun, gloo on
CPUs) against one process on the same data: the same accuracy within 2 points, one model folder, same format."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from logoapp import distrib
from logoapp.cli.common import without
from logoapp.predict import Predictor

ROOT = Path(__file__).resolve().parents[1]


def test_shards_are_disjoint_equal_and_cover_all_but_a_tail(monkeypatch):
    idx = torch.randperm(103, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(distrib, "active", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "4")
    parts = []
    for r in range(4):
        monkeypatch.setenv("RANK", str(r))
        parts.append(distrib.shard(idx))
    assert {len(p) for p in parts} == {25}                 # every process takes as many steps
    flat = torch.cat(parts).tolist()
    assert len(set(flat)) == 100 and set(flat) <= set(idx.tolist())


def test_single_process_is_untouched(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distrib.world() == 1 and not distrib.setup()
    idx = torch.arange(10)
    assert distrib.shard(idx) is idx


def test_without_drops_the_flag_and_its_value():
    argv = ["train", "d", "--processes", "2", "--epochs", "3"]
    assert without(argv, "--processes") == ["train", "d", "--epochs", "3"]
    assert without(["train", "--processes=2", "d"], "--processes") == ["train", "d"]


def _train(tmp: Path, data: Path, models: Path, *extra: str) -> dict:
    env = {**os.environ, "LOGOAPP_CACHE": str(tmp / "cache"), "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "logoapp", "train", str(data), "--model", "linear", "--epochs", "6",
                        "--size", "24", "--models", str(models), "--json", *extra],
                       capture_output=True, text=True, env=env, timeout=400, cwd=tmp)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_processes_match_one(tmp_path):
    from logoapp.synth import generate
    data = generate(tmp_path / "crests", n_classes=4, per_class=50, size=32, seed=1)
    one = _train(tmp_path, data, tmp_path / "m1")
    two = _train(tmp_path, data, tmp_path / "m2", "--processes", "2")
    assert abs(one["accuracy"] - two["accuracy"]) <= 0.02, (one["accuracy"], two["accuracy"])
    assert [p.name for p in (tmp_path / "m2").iterdir()] == ["linear"]  # rank 0 alone wrote a folder
    a, b = Predictor.load(tmp_path / "m1" / "linear"), Predictor.load(tmp_path / "m2" / "linear")
    assert set(a.meta) == set(b.meta) and a.vocab == b.vocab
    assert two["n_params"] == one["n_params"]
