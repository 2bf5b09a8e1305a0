"""`logoapp` on the command line: a thin shell over the library, like app.py. Errors are one line, never a traceback."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
from pathlib import Path

EPILOG = """examples:
  logoapp                                  start the web app on the built-in crest set
  logoapp synth crests/ --classes 2        write the look-alike red pair as PNG folders
  logoapp info crests/                     classes, counts, sizes, modes, bad files
  logoapp baseline crests/ --distance rmse pixel-similarity (nearest ideal image) accuracy
  logoapp train crests/ --model cnn        train the default CNN, save it under models/
  logoapp eval models/cnn crests/          accuracy, precision/recall/F1 per class, confusion matrix
  logoapp predict models/cnn a.png b.jpg   class probabilities per image, or "unknown" for an unlike image
  logoapp explain models/cnn a.png --out heat/   a heatmap overlay PNG per image: what the answer rests on
DATA may be a folder of class sub-folders, a train/ + valid/ (or validation/, test/) layout, or 'embedded'."""


class CliError(Exception):
    pass


def _bar(desc: str):
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


def _clean(o):
    """JSON-safe: NaN -> null, numpy -> python."""
    import numpy as np
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _json(obj) -> None:
    print(json.dumps(_clean(obj), indent=2))


def _open(args):
    from .data import resolve
    return resolve(args.data, size=getattr(args, "size", None), valid_pct=getattr(args, "valid_pct", None),
                   seed=getattr(args, "seed", None), progress=_bar("loading"))


def _pct(x) -> str:
    return "  n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}%"


def _print_bad(bad, limit=20):
    if bad:
        print(f"\n{len(bad)} file(s) skipped:")
        for b in bad[:limit]:
            print(f"  {b['path']}: {b['reason']}")
        if len(bad) > limit:
            print(f"  ... and {len(bad) - limit} more (use --json for all)")


def cmd_synth(args):
    from .synth import class_names, generate
    try:
        names = class_names(args.classes)
        out = generate(args.out, n_classes=args.classes, per_class=args.per_class, size=args.size, seed=args.seed,
                       progress=_bar("generating"))
    except (ValueError, OSError) as e:  # bad counts, or OUT is someone else's folder
        raise CliError(str(e)) from None
    print(f"wrote {len(names)} classes x {args.per_class} images ({args.size}px RGBA PNG) to {out}: {', '.join(names)}")


def cmd_info(args):
    ds = _open(args)
    s = ds.summary()
    if args.json:
        return _json(s)
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
    _print_bad(s["bad"])


def _per_class_table(per_class: dict) -> None:
    w = max(len(c) for c in per_class) if per_class else 5
    for c, a in per_class.items():
        print(f"  {c:<{w}}  {_pct(a)}")


def cmd_baseline(args):
    from .ideal import baseline
    ds = _open(args)
    r = baseline(ds, args.distance)
    out = {"distance": args.distance, "accuracy": r["accuracy"], "per_class": r["per_class"], "n_train": r["n_train"],
           "n_valid": r["n_valid"], "vocab": ds.vocab, "skipped": [b.__dict__ for b in ds.bad]}
    if args.json:
        return _json(out)
    print(f"pixel similarity ({args.distance}) on {r['n_valid']} validation images "
          f"(ideals from {r['n_train']} training images): accuracy {_pct(r['accuracy'])}")
    _per_class_table(r["per_class"])
    _print_bad(out["skipped"])


def cmd_train(args):
    from . import store
    from .train import Batch, Done, Epoch, Error, Start, TrainConfig, train
    ds = _open(args)
    cfg = TrainConfig(model=args.model, epochs=args.epochs, lr=args.lr, bs=args.bs, size=args.size,
                      aug=False if args.no_aug else None, seed=42 if args.seed is None else args.seed)
    out = args.out or store.unique_dir(args.models, args.model)
    from tqdm import tqdm
    bar, done = None, None
    stop = threading.Event()
    try:
        for e in train(ds, cfg, stop=stop, out=out):
            if isinstance(e, Start):
                bar = tqdm(total=e.n_iter * cfg.resolved().epochs, file=sys.stderr, desc=args.model, leave=False,
                           disable=None, dynamic_ncols=True)
                if e.weights_note:
                    print(e.weights_note, file=sys.stderr)
            elif isinstance(e, Batch) and bar is not None:
                bar.n = e.epoch * e.n_iter + e.iter + 1
                bar.set_postfix(loss=f"{e.train_loss:.3f}", acc=f"{e.train_acc:.3f}", refresh=True)
            elif isinstance(e, Epoch) and not args.json:
                (bar.write if bar else print)(f"epoch {e.epoch}  train_loss {e.train_loss:.4f}  valid_loss "
                                              f"{e.valid_loss:.4f}  accuracy {e.accuracy:.4f}  {e.seconds:.1f}s")
            elif isinstance(e, Error):
                raise CliError(f"training failed: {e.message}")
            elif isinstance(e, Done):
                done = e
    except KeyboardInterrupt:
        stop.set()
        raise
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        return _json(done.to_dict())
    print(f"{args.model}: accuracy {_pct(done.accuracy)} in {done.seconds:.1f}s "
          f"({done.images_per_second:.0f} images/s, {done.n_params:,} parameters)")
    _per_class_table(done.per_class)
    if done.temperature is not None:
        print(f"calibrated on the validation images: temperature {done.temperature:.2f}, unknown-input test "
              f"({done.unknown['method']}) in {done.calibration_seconds:.1f}s")
    print(f"saved to {done.model_path}")


def _load(path):
    from .predict import Predictor
    from .store import ModelError
    try:
        return Predictor.load(path)
    except ModelError as e:
        raise CliError(str(e)) from None


def cmd_eval(args):
    from .data import resolve
    from .evaluate import evaluate
    p = _load(args.model_dir)
    ds = resolve(args.data, size=p.size, valid_pct=args.valid_pct, seed=args.seed, progress=_bar("loading"))
    r = evaluate(p.model, ds, args.split, vocab=p.vocab, channels=p.channels, temperature=p.temperature)
    if not r.n:
        raise CliError(f"no images of the model's classes ({', '.join(p.vocab[:5])}...) in the {args.split} split "
                       f"of {ds.root}")
    if args.json:
        return _json({"model": str(args.model_dir), **r.to_dict(n_confused=20), "split": args.split,
                      "skipped": [b.__dict__ for b in ds.bad]})
    print(f"{args.model_dir} on {r.n} {args.split} images of {ds.root}: accuracy {_pct(r.accuracy)}, "
          f"balanced accuracy {_pct(r.balanced_accuracy)}, macro F1 {_pct(r.macro_f1)}")
    w = max(map(len, r.support))
    print(f"  {'class':<{w}}  {'recall':>6} {'precision':>9} {'F1':>6} {'n':>5}")
    for c in r.support:
        print(f"  {c:<{w}}  {_pct(r.recall[c]):>6} {_pct(r.precision[c]):>9} {_pct(r.f1[c]):>6} {r.support[c]:>5}")
    if r.most_confused():
        print("\nmost confused (actual -> predicted: count):")
        for a, b, n in r.most_confused()[:10]:
            print(f"  {a} -> {b}: {n}")


def cmd_predict(args):
    p = _load(args.model_dir)
    res = p.predict_many(args.images, top=args.top, with_unknown=True)
    if args.json:
        _json(res)
    else:
        for r in res:
            if "error" in r:
                print(f"{r['path']}: error: {r['error']}")
            elif r["unknown"]:
                print(f"{r['path']}: unknown \u2014 closest: {r['label']} ({r['probs'][r['label']]:.1%})")
            else:
                tops = ", ".join(f"{k} {v:.1%}" for k, v in list(r["probs"].items())[:3])
                print(f"{r['path']}: {r['label']}  ({tops})")
    if not any("error" not in r for r in res):
        return 1


def _overlay_path(out, src: str, taken: set) -> Path:
    """out/<image name>.png, numbered when two images share a name."""
    stem, n = Path(src).stem or "image", 0
    while (name := f"{stem}.png" if not n else f"{stem}_{n}.png") in taken:
        n += 1
    taken.add(name)
    return Path(out) / name


def cmd_explain(args):
    from PIL import Image

    from .explain import explain
    p = _load(args.model_dir)
    if args.cls is not None and args.cls not in p.vocab:
        raise CliError(f"no class {args.cls!r} in this model (classes: {', '.join(p.vocab)})")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot write to {args.out}: {e.strerror or e}") from None
    rows, taken = [], set()
    for src in args.images:
        try:
            e = explain(p.model, p.meta, src, target=args.cls)
        except (ValueError, OSError) as err:  # an unreadable image (ImageError) is one row's error
            rows.append({"path": src, "error": str(err)})
            continue
        dest = _overlay_path(args.out, src, taken)
        Image.fromarray(e.overlay).save(dest)
        rows.append({"path": src, "label": e.label, "overlay": str(dest)})
    if args.json:
        _json(rows)
    else:
        for r in rows:
            print(f"{r['path']}: " + (f"error: {r['error']}" if "error" in r else f"{r['label']} -> {r['overlay']}"))
    if not any("error" not in r for r in rows):
        return 1


def cmd_app(args):
    return web_app(args.rest)


def web_app(argv: list[str]):
    """Start the web app with app.py's flags: the command line's one door into logoapp.ui (imported only here,
    so every other command runs without Gradio)."""
    from .ui import main as ui_main
    return ui_main(argv)


def parser() -> argparse.ArgumentParser:
    from . import __version__
    from . import models as M
    p = argparse.ArgumentParser(prog="logoapp", description="Build an image classifier from a folder of pictures, "
                                "and understand it. With no command, starts the web app.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"logoapp {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    def data_args(s, size="square size images are stored at (default: their own typical size, at most 140)"):
        s.add_argument("data", metavar="DATA", help="image folder (class sub-folders or train/valid) or 'embedded'")
        if size:
            s.add_argument("--size", type=int, default=None, help=size)
        s.add_argument("--valid-pct", type=float, default=None,
                       help="validation fraction when not pre-split (default 0.2)")
        s.add_argument("--seed", type=int, default=None, help="random seed for the split (default 42)")
        s.add_argument("--json", action="store_true", help="print one JSON object on stdout")

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

    s = sub.add_parser("train", help="train a model and save it", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="models:\n" + "\n".join(f"  {k:<9} {M.describe(k)}" for k in M.trainable()))
    data_args(s, size="image size for loading and for the model (default: load at the images' own size, at most 140; "
                      "the model at its own default, e.g. 64 for cnn)")
    s.add_argument("--model", choices=M.trainable(), default=M.DEFAULT_MODEL,
                   help=f"which rung of the ladder (default {M.DEFAULT_MODEL})")
    s.add_argument("--epochs", type=int, default=None, help="epochs (default: per model)")
    s.add_argument("--lr", type=float, default=None,
                   help="peak learning rate of the one-cycle schedule (default: per model)")
    s.add_argument("--bs", type=int, default=64, help="batch size (default 64)")
    s.add_argument("--no-aug", action="store_true", help="turn augmentation off")
    s.add_argument("--out", default=None, help="model folder to write (default models/<model>)")
    s.add_argument("--models", default=None, help="models folder for the default --out (default ./models)")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("eval", help="score a saved model on a dataset")
    s.add_argument("model_dir", metavar="MODEL_DIR")
    data_args(s, size=False)
    s.add_argument("--split", choices=["valid", "train", "test", "all"], default="valid",
                   help="which images to score (default valid; 'all' for a separate test folder)")
    s.set_defaults(fn=cmd_eval)

    s = sub.add_parser("predict", help="class probabilities for images, or 'unknown' for images unlike the training "
                       "data (models saved with an unknown-input test)")
    s.add_argument("model_dir", metavar="MODEL_DIR")
    s.add_argument("images", metavar="IMAGE", nargs="+")
    s.add_argument("--top", type=int, default=None, help="keep the top N classes per image")
    s.add_argument("--json", action="store_true",
                   help="print a JSON list on stdout: path, label, probs, unknown (true/false), score per image")
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("explain", help="heatmaps: which parts of each image the model's answer rests on")
    s.add_argument("model_dir", metavar="MODEL_DIR")
    s.add_argument("images", metavar="IMAGE", nargs="+")
    s.add_argument("--out", required=True, metavar="DIR", help="folder for the overlay PNGs (one per image)")
    s.add_argument("--class", dest="cls", default=None, metavar="NAME",
                   help="explain this class (default: the predicted one)")
    s.add_argument("--json", action="store_true", help="print a JSON list on stdout: path, label, overlay per image")
    s.set_defaults(fn=cmd_explain)

    s = sub.add_parser("app", help="start the web app (same flags as app.py; see logoapp app --help)", add_help=False)
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_app)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("--") and argv[0] not in ("--help", "--version", "-h"):
        return web_app(argv) or 0  # no command: the web app (flags pass through)
    args = parser().parse_args(argv)
    if not getattr(args, "fn", None):
        parser().print_help()
        return 2
    from .data import DataError
    from .images import ImageError
    from .store import ModelError
    try:
        return args.fn(args) or 0
    except (CliError, DataError, ModelError, ImageError) as e:
        print(f"logoapp: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("logoapp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
