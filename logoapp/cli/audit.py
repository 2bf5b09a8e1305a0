"""Commands that check a dataset and fix it: `logoapp audit` reports, `logoapp fix` moves files (and undoes)."""
from __future__ import annotations

import os

from .common import CliError, bar, data_args, emit, open_data, pct


def _report(r, limit: int) -> None:
    """The audit as a short readable report on stdout."""
    lab, leak, imb = r.labels, r.leakage, r.imbalance
    print(f"audit of {r.root}: {r.n_images} images in {r.seconds:.1f}s ("
          + ", ".join(f"{k.replace('_', ' ')} {v:.1f}s" for k, v in r.timings.items()) + ")")
    groups = r.duplicates
    print(f"\nduplicates: {len(groups)} groups of copies ({sum(g.exact for g in groups)} exact), {r.cross_split} "
          f"spanning splits, {sum(g.conflict for g in groups)} filed under different classes")
    if leak["reported"] is not None:
        acc, clean = pct(leak["reported"]).strip(), pct(leak["without_leaked"]).strip()
        print(f"  validation accuracy {acc}, {clean} without the "
              f"{leak['n_leaked']} validation images that have a copy in train ({lab.get('reference', 'your model')})")
    for k, g in enumerate(groups[:limit], 1):
        print(f"  [{k}] {len(g.paths)} {'exact' if g.exact else 'near'} copies" + (" CONFLICT" if g.conflict else ""))
        for p, c, s in zip(g.paths, g.classes, g.splits):
            print(f"      {os.path.relpath(p, r.root)}  ({c}, {s})")
    if lab.get("folds"):
        print(f"\nlabel issues: {len(r.label_issues)} suspects, about {lab['n_estimated']} label errors estimated "
              f"(confident learning, {lab['folds']} folds of {lab['model']} at {lab['size']} px: "
              f"{lab['seconds']:.1f}s)")
        for k, s in enumerate(r.label_issues[:limit], 1):
            print(f"  {k:>3}. {s.score:.2f}  {os.path.relpath(s.path, r.root)}: given {s.given}, looks like "
                  f"{s.suggested}")
    big, small = imb["largest"], imb["smallest"]
    print(f"\nclass balance: largest / smallest = {imb['ratio']:.1f} ({big}: {imb['counts'][big]}, "
          f"{small}: {imb['counts'][small]})")
    print(f"odd images: {len(r.odd)}")
    for o in r.odd[:limit]:
        print(f"  {os.path.relpath(o.path, r.root)} ({o.label}): {', '.join(o.reasons)}")
    more = max(len(groups), len(r.label_issues), len(r.odd)) > limit
    if more:
        print(f"\n(first {limit} of each; --limit N for more, --json for all)")


def cmd_audit(args):
    from ..audit import audit
    ds = open_data(args)
    try:
        r = audit(ds, folds=args.folds, model=args.model, progress=bar("auditing"))
    except ValueError as e:
        raise CliError(str(e)) from None
    if args.json:
        return emit(r.to_json())
    _report(r, args.limit)


def _path(path: str) -> str:
    """A path as typed: from the current folder when it exists there, else from the dataset folder."""
    return os.path.abspath(path) if os.path.exists(path) else path


def _pair(text: str) -> tuple[str, str]:
    path, eq, cls = text.rpartition("=")
    if not eq or not path or not cls:
        raise CliError(f"--relabel takes PATH=CLASS, got {text!r}")
    return _path(path), cls


def cmd_fix(args):
    from .. import fixes
    root = "" if args.data == "embedded" else args.data
    if not os.path.isdir(root):
        raise CliError(f"not a dataset folder: {args.data} (the built-in set is read-only: write a copy with "
                       "`logoapp synth DIR` to fix one)")
    if args.undo and (args.relabel or args.exclude):
        raise CliError("--undo goes alone: undo first, then make new changes")
    if args.all and not args.undo:
        raise CliError("--all goes with --undo (revert every change)")
    try:
        if args.undo:
            recs = fixes.undo(root, all=args.all)
            done = [f"undone: {r['op']} {r['from']} -> {r['to']}" for r in recs] or ["nothing to undo"]
        else:
            recs = [fixes.relabel(root, *_pair(t)) for t in args.relabel or []]
            recs += [fixes.exclude(root, _path(p)) for p in args.exclude or []]
            done = [f"{r['op']}: {r['from']} -> {r['to']}" for r in recs]
    except fixes.FixError as e:
        raise CliError(str(e)) from None
    left = fixes.changes(root)
    if args.json:
        return emit({"done": recs, "changes": left})
    for line in done or [f"{len(left)} change(s) logged in {os.path.join(root, fixes.LOG)}"]:
        print(line)
    if not done:
        for r in left:
            print(f"  {r['time']}  {r['op']}: {r['from']} -> {r['to']}")


def add(sub):
    """Register this module's commands."""
    from .. import models as M
    s = sub.add_parser("audit", help="check a dataset: duplicates, train/valid leakage, label errors, balance, odd "
                       "images")
    data_args(s)
    s.add_argument("--folds", type=int, default=5, help="folds for the label check (default 5; 0 skips it)")
    s.add_argument("--model", choices=M.trainable(), default="linear",
                   help="the fast model trained per fold (default linear, at 32 px)")
    s.add_argument("--limit", type=int, default=20, help="rows shown per section (default 20; --json gives all)")
    s.set_defaults(fn=cmd_audit)

    s = sub.add_parser("fix", help="relabel or exclude images (files are moved, never deleted; every move is "
                       "logged and can be undone)")
    s.add_argument("data", metavar="DATA", help="the dataset folder")  # PATHs: from here, or from DATA
    s.add_argument("--relabel", nargs="+", metavar="PATH=CLASS", help="move each image into the folder of CLASS")
    s.add_argument("--exclude", nargs="+", metavar="PATH", help="move each image to DATA/_excluded/<class>/")
    s.add_argument("--undo", action="store_true", help="revert the last change")
    s.add_argument("--all", action="store_true", help="with --undo: revert every change")
    s.add_argument("--json", action="store_true", help="print the changes made and those still logged as JSON")
    s.set_defaults(fn=cmd_fix)
