"""Smoke test of `python -m benchmarks --quick --json`: it runs and every figure is reported. No timing asserts:
timings on a shared machine are noise, so only the structure is checked."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURES = {"train_throughput", "predict_vs_forward", "predict_vs_fastai", "predict_many", "load_decode", "load_cache",
           "memory_decode", "memory_cache", "ladder_pixel", "ladder_linear", "ladder_mlp", "ladder_cnn", "ladder_pair",
           "time_to_cnn", "audit_labels", "audit_copies", "audit_cross_split", "audit_seconds",
           "explain_vs_predict", "rest_vs_client"}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_json(tmp_path):
    env = {**os.environ, "LOGOAPP_CACHE": str(tmp_path / "cache"), "LOGOAPP_MODELS": str(tmp_path / "models")}
    p = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--json"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=590)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout)  # stdout is exactly one JSON object; progress went to stderr
    assert res["mode"] == "quick"
    m = res["machine"]
    for key in ("cpu", "cores", "torch", "fastai", "python", "date"):
        assert m[key], key
    figs = res["figures"]
    assert FIGURES <= set(figs), FIGURES - set(figs)
    for name, f in figs.items():
        for key in ("name", "value", "unit", "reference", "ratio", "goal", "pass", "how"):
            assert key in f, (name, key)
        assert f["goal"]["op"] in (">=", "<=") and isinstance(f["goal"]["target"], (int, float)), name
        assert isinstance(f["pass"], bool), name
        if name != "time_to_cnn":  # "not reached" is a valid answer there
            assert isinstance(f["value"], (int, float)) and f["value"] >= 0, name
            assert isinstance(f["ratio"], (int, float)) and f["ratio"] > 0, name
    assert [r["model"] for r in res["ladder"]] == ["pixel", "linear", "mlp", "cnn"]
    for r in res["ladder"]:
        assert 0 <= r["accuracy"] <= 1 and r["n_params"] > 0 and r["seconds"] >= 0
    mem = figs["memory_decode"]
    assert mem["peak_mb"] >= mem["value"] > 0 and mem["baseline_mb"] > 0
    assert "2000x140x140x4" in mem["reference_unit"]


def test_table_formatting():
    """The table renders a result (including a missing value) without running anything."""
    from benchmarks.__main__ import table
    from benchmarks.common import figure
    res = {"mode": "quick", "seconds": 1.0, "ladder": [{"model": "pixel", "accuracy": 0.5, "epochs": 0, "seconds": 0.1,
                                                         "n_params": 10}],
           "machine": {"date": "today", "cpu": "cpu", "cores": 2, "memory_gb": 1, "torch": "2", "torch_threads": 2,
                       "fastai": "2", "python": "3", "load_avg_start": None, "load_avg_end": None},
           "figures": {"a": figure("a", 2.0, "img/s", 1.0, "img/s (ref)", 2.0, ">=", 1.5, "how"),
                       "b": figure("b", None, "s", 3.0, "s", None, "<=", 1.0, "not reached")}}
    out = table(res)
    assert "| a | 2.0 img/s | 1.0 img/s (ref) | 2.00x | ≥ 1.5 | pass |" in out
    assert "| b | — | 3.0 s | — | ≤ 1 | FAIL |" in out
    assert "1/2 goals met" in out
