"""Commands about a dataset: write the built-in set, describe a folder, the pixel-similarity baseline."""
from __future__ import annotations

from .common import CliError, bar, data_args, emit, open_data, pct, per_class_table, print_bad


def cmd_synth(args):
    from ..synth import class_names, generate
    try:
        names = class_names(args.classes)
        out = generate(args.out, n_classes=args.classes, per_class=args.per_class, size=args.size, seed=args.seed,
                       progress=bar("generating"))
    except (ValueError, OSError) as e:  # bad counts, or OUT is someone else's folder
        raise CliError(str(e)) from None
    print(f"wrote {len(names)} classes x {args.per_class} images ({args.size}px RGBA PNG) to {out}: {', '.join(names)}")


def cmd_info(args):
    ds = open_data(args)
    s = ds.summary()
    if args.json:
        return emit(s)
    print(f"{s['root']}: {s['n_images']} images, {s['n_classes']} classes, "
          f"{'pre-split' if s['presplit'] else f'random split (valid {ds.valid_pct:.0%}, seed {ds.seed})'}")
    print(f"cached as {s['image_size']}x{s['image_size']}x{s['channels']} uint8 ({s['memory_mb']} MB)")
    w = max(len(c) for c in s["vocab"])
    print(f"\n{'class':<{w}}  {'train':>6} {'valid':>6} {'test':>6} {'total':>6}")
    for c, n in s["counts"].items():
        print(f"{c:<{w}}  {n['train']:>6} {n['valid']:>6} {n['test']:>6} {n['total']:>6}")
    print("\nsizes: " + ", ".join(f"{k} ({v})" for k, v in s["sizes"].items()))
    print("modes: " + ", ".join(f"{k} ({v})" for k, v in s["modes"].items()))
    for n in s["notes"]:
        print(f"note: {n}")
    print_bad(s["bad"])


def cmd_baseline(args):
    from ..ideal import baseline
    ds = open_data(args)
    r = baseline(ds, args.distance)
    out = {"distance": args.distance, "accuracy": r["accuracy"], "per_class": r["per_class"], "n_train": r["n_train"],
           "n_valid": r["n_valid"], "vocab": ds.vocab, "skipped": [b.__dict__ for b in ds.bad]}
    if args.json:
        return emit(out)
    print(f"pixel similarity ({args.distance}) on {r['n_valid']} validation images "
          f"(ideals from {r['n_train']} training images): accuracy {pct(r['accuracy'])}")
    per_class_table(r["per_class"])
    print_bad(out["skipped"])


def add(sub):
    """Register this module's commands."""
    s = sub.add_parser("synth", help="write the built-in crest set as PNG class folders")
    s.add_argument("out", metavar="OUT", help="folder to write")
    s.add_argument("--classes", type=int, default=None,
                   help="number of classes (default all; 2 = the look-alike red pair)")
    s.add_argument("--per-class", type=int, default=300, help="images per class (default 300)")
    s.add_argument("--size", type=int, default=140, help="image size in pixels (default 140)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.set_defaults(fn=cmd_synth)

    s = sub.add_parser("info", help="classes, counts, sizes, modes and bad files of a dataset")
    data_args(s)
    s.set_defaults(fn=cmd_info)

    s = sub.add_parser("baseline", help="pixel-similarity classifier: nearest class-mean ('ideal') image")
    data_args(s)
    s.add_argument("--distance", choices=["l1", "rmse"], default="l1", help="distance to the ideal images (default l1)")
    s.set_defaults(fn=cmd_baseline)
