"""`logoapp weights`: the ImageNet backbones the pretrained rungs start from, and downloading them ahead of time."""
from __future__ import annotations

import os

from .common import CliError, emit


def cmd_weights(args):
    from .. import weights as W
    if args.action == "download":
        if not args.name:
            raise CliError(f"name a backbone to download: {', '.join(W.BACKBONES)}")
        if args.offline:
            os.environ["LOGOAPP_OFFLINE"] = "1"
        try:
            p = W.verify(W.fetch(args.name, args.models, progress=_bytes_bar(args.name)))
        except W.WeightsError as e:
            raise CliError(str(e)) from None
        return emit({"name": args.name, "path": str(p)}) if args.json else print(f"{args.name}: {p}")
    rows = W.listing(args.models)
    if args.json:
        return emit(rows)
    w = max(len(r["name"]) for r in rows)
    for r in rows:
        later = "downloads off" if W.offline() else "fetched on first use"
        where = r["path"] if r["on_disk"] else f"not on disk ({later})"
        print(f"{r['name']:<{w}}  {r['file']:<34} {r['size_mb']:6.1f} MB  {where}")
    print(f"\nfolder: {W.cache_dir()} (torch's hub cache; torchvision and fastai look there too)")


def _bytes_bar(name: str):
    """progress(done, total) in bytes as a tqdm bar on stderr."""
    from tqdm import tqdm
    state = {}

    def progress(done, total):
        if "bar" not in state:
            state["bar"] = tqdm(total=total or None, desc=f"downloading {name}", unit="B", unit_scale=True,
                                unit_divisor=1024, file=__import__("sys").stderr, leave=False, disable=None)
        state["bar"].n = done
        state["bar"].refresh()
        if total and done >= total:
            state["bar"].close()
    return progress


def add(sub):
    """Register this module's commands."""
    s = sub.add_parser("weights", help="list the ImageNet backbones (file, size, on disk?) or download one",
                       description="The pretrained rungs start from torchvision's published ImageNet checkpoints, "
                       "fetched into torch's hub cache on first use and checked against their SHA-256 prefix. "
                       "LOGOAPP_WEIGHTS_URL points at a mirror; LOGOAPP_OFFLINE=1 forbids downloads.")
    s.add_argument("action", nargs="?", choices=["list", "download"], default="list")
    s.add_argument("name", nargs="?", default=None, metavar="NAME", help="backbone to download (see the list)")
    s.add_argument("--models", default=None,
                   help="models folder also searched for pretrained/<file> (default ./models)")
    s.add_argument("--offline", action="store_true", help="never download (same as LOGOAPP_OFFLINE=1)")
    s.add_argument("--json", action="store_true", help="print JSON on stdout")
    s.set_defaults(fn=cmd_weights)
