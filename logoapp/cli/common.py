"""What every command shares: one-line errors, progress bars on stderr, JSON on stdout, opening a dataset."""
from __future__ import annotations

import json
import math
import sys


class CliError(Exception):
    pass


def bar(desc: str):
    """A tqdm progress callback on stderr: progress(done, total, what)."""
    from tqdm import tqdm
    state = {}

    def progress(done, total, what=desc):
        bar = state.get(what)
        if bar is None:
            bar = state[what] = tqdm(total=total, desc=what, file=sys.stderr, leave=False, disable=None,
                                     dynamic_ncols=True)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()
    return progress


def clean(o):
    """JSON-safe: NaN -> null, numpy -> python."""
    import numpy as np
    if isinstance(o, dict):
        return {str(k): clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return clean(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def emit(obj) -> None:
    print(json.dumps(clean(obj), indent=2))


def open_data(args):
    from ..data import resolve
    ds = resolve(args.data, size=getattr(args, "size", None), valid_pct=getattr(args, "valid_pct", None),
                 seed=getattr(args, "seed", None), progress=bar("loading"), resize=getattr(args, "resize", "squish"))
    return group_split(ds) if getattr(args, "split", None) == "group" else ds


def group_split(ds):
    """ds with each group of near copies on one side of its split (--split group)."""
    from ..audit import group_split as regroup
    try:
        ds, moved = regroup(ds)
    except ValueError as e:
        raise CliError(str(e)) from None
    print(f"group split: {moved} image(s) moved to the side of their copies", file=sys.stderr)
    return ds


def pct(x) -> str:
    return "  n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}%"


def print_bad(bad, limit=20):
    if bad:
        print(f"\n{len(bad)} file(s) skipped:")
        for b in bad[:limit]:
            print(f"  {b['path']}: {b['reason']}")
        if len(bad) > limit:
            print(f"  ... and {len(bad) - limit} more (use --json for all)")


def per_class_table(per_class: dict) -> None:
    w = max(len(c) for c in per_class) if per_class else 5
    for c, a in per_class.items():
        print(f"  {c:<{w}}  {pct(a)}")


def load_predictor(path, exported: bool = False):
    """A model folder's Predictor; with exported, an .onnx or .torchscript file from `logoapp export` may stand in
    (it predicts without the unknown-input test)."""
    from ..predict import Predictor
    from ..store import ModelError
    if exported and str(path).endswith((".onnx", ".torchscript")):
        from ..export import ExportError, Runner
        try:
            return Runner(path)
        except ExportError as e:
            raise CliError(f"cannot load {path}: {str(e).splitlines()[0][:300]}") from None
    try:
        return Predictor.load(path)
    except ModelError as e:
        raise CliError(str(e)) from None


def data_args(s, size="square size images are stored at (default: their own typical size, at most 140)",
              split: bool = True, resize: bool = True):
    """DATA plus the options that say how to open it."""
    s.add_argument("data", metavar="DATA", help="image folder (class sub-folders or train/valid) or 'embedded'")
    if size:
        s.add_argument("--size", type=int, default=None, help=size)
    s.add_argument("--valid-pct", type=float, default=None,
                   help="validation fraction when not pre-split (default 0.2)")
    s.add_argument("--seed", type=int, default=None, help="random seed for the split (default 42)")
    if split:
        s.add_argument("--split", choices=["random", "group"], default="random",
                       help="random (default), or group: near copies of one picture stay on one side of the split "
                            "(no leakage from train into validation)")
    if resize:
        s.add_argument("--resize", choices=["squish", "crop", "pad"], default="squish",
                       help="how images are made square: squish the whole image (default), crop its centre square, "
                            "or pad it with black (transparent for RGBA) to a square")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def without(argv: list[str], flag: str) -> list[str]:
    """argv without `flag VALUE` / `flag=VALUE`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out


def distributed(cmd):
    """cmd runs as one of several processes when torchrun (or accelerate) started it, or starts them itself for
    --processes N: rank 0 opens the data first (so it is decoded and cached once), then every rank trains; only
    rank 0 prints."""
    import contextlib
    import functools
    import os

    @functools.wraps(cmd)
    def run(args):
        from .. import distrib
        if getattr(args, "processes", 1) > 1 and distrib.world() < 2:
            return distrib.launch(args.processes, without(args.argv, "--processes"))
        if not distrib.setup():
            return cmd(args)
        try:
            if distrib.rank() == 0:
                open_data(args)
            distrib.barrier()
            if distrib.rank() == 0:
                return cmd(args)
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
                return cmd(args)
        finally:
            distrib.cleanup()
    return run
