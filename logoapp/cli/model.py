"""Commands about a model: train it, score it, predict with it, explain its answers."""
from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

from .common import CliError, bar, data_args, distributed, emit, load_predictor, open_data, pct, per_class_table


def cmd_train(args):
    from .. import models as M
    from .. import store
    from ..train import Batch, Done, Epoch, Error, Start, TrainConfig, train
    from ..train import backbone_weights, still_rising
    from ..weights import WeightsError
    from .weights import _bytes_bar
    if args.offline:
        os.environ["LOGOAPP_OFFLINE"] = "1"
    cfg = TrainConfig(model=args.model, epochs=args.epochs, lr=args.lr, bs=args.bs, size=args.size,
                      aug=False if args.no_aug else None, seed=42 if args.seed is None else args.seed,
                      pretrained=not args.no_pretrained)
    if args.no_pretrained and M.get(args.model).head_only:
        raise CliError(f"--no-pretrained: the {args.model} rung is a head on ImageNet features; pick another model")
    try:  # before the data: a missing download fails in a second, with the fix
        backbone_weights(cfg, progress=_bytes_bar(M.get(args.model).weights or ""))
    except WeightsError as e:
        raise CliError(str(e)) from None
    ds = open_data(args)
    out = args.out or store.unique_dir(args.models, args.model)
    from tqdm import tqdm
    bar, done = None, None
    stop = threading.Event()
    try:
        for e in train(ds, cfg, stop=stop, out=out):
            if isinstance(e, Start):
                bar = tqdm(total=e.n_iter * e.config["epochs"], file=sys.stderr, desc=args.model, leave=False,
                           disable=None, dynamic_ncols=True)
                if e.weights_note:
                    print(e.weights_note, file=sys.stderr)
            elif isinstance(e, Batch) and bar is not None:
                bar.total = e.n_epoch * e.n_iter  # fine_tune adds a frozen epoch
                bar.n = e.epoch * e.n_iter + e.iter + 1
                bar.set_postfix(loss=f"{e.train_loss:.3f}", acc=f"{e.train_acc:.3f}", refresh=True)
            elif isinstance(e, Epoch) and not args.json:
                (bar.write if bar else print)(f"epoch {e.epoch + 1}/{e.n_epoch}  train_loss {e.train_loss:.4f}  "
                                              f"valid_loss {e.valid_loss:.4f}  accuracy {pct(e.accuracy)}  "
                                              f"{e.seconds:.1f}s")
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
        return emit(done.to_dict())
    print(f"{args.model}: accuracy {pct(done.accuracy)} in {done.seconds:.1f}s "
          f"({done.images_per_second:.0f} images/s, {done.n_params:,} parameters)")
    per_class_table(done.per_class)
    if done.temperature is not None:
        print(f"calibrated on the validation images: temperature {done.temperature:.2f}, unknown-input test "
              f"({done.unknown['method']}) in {done.calibration_seconds:.1f}s")
    if still_rising(done.history):
        print(f"validation accuracy was still rising at the last epoch: try more epochs (--epochs "
              f"{2 * len(done.history)})")
    print(f"saved to {done.model_path}")


def cmd_eval(args):
    from ..data import resolve
    from ..evaluate import evaluate
    p = load_predictor(args.model_dir)
    ds = resolve(args.data, size=p.size, valid_pct=args.valid_pct, seed=args.seed, progress=bar("loading"),
                 resize=p.method)  # the model's own resize method (model.json), not a flag
    if args.split == "test" and not len(ds.idx("test")):
        raise CliError(f"{ds.root} has no test split (only a pre-split folder with train/, valid/ and test/ has "
                       "one); use --split valid, or --split all on a separate test folder")
    r = evaluate(p.model, ds, args.split, vocab=p.vocab, channels=p.channels, temperature=p.temperature,
                 background=p.background)
    if not r.n:
        raise CliError(f"no images of the model's classes ({', '.join(p.vocab[:5])}...) in the {args.split} split "
                       f"of {ds.root}")
    if args.json:
        return emit({"model": str(args.model_dir), **r.to_dict(n_confused=20), "split": args.split,
                      "skipped": [b.__dict__ for b in ds.bad]})
    print(f"{args.model_dir} on {r.n} {args.split} images of {ds.root}: accuracy {pct(r.accuracy)}, "
          f"balanced accuracy {pct(r.balanced_accuracy)}, macro F1 {pct(r.macro_f1)}")
    w = max(map(len, r.support))
    print(f"  {'class':<{w}}  {'recall':>6} {'precision':>9} {'F1':>6} {'n':>5}")
    for c in r.support:
        print(f"  {c:<{w}}  {pct(r.recall[c]):>6} {pct(r.precision[c]):>9} {pct(r.f1[c]):>6} {r.support[c]:>5}")
    if r.most_confused():
        print("\nmost confused (actual -> predicted: count):")
        for a, b, n in r.most_confused()[:10]:
            print(f"  {a} -> {b}: {n}")


def cmd_predict(args):
    p = load_predictor(args.model_dir, exported=True)
    res = p.predict_many(args.images, top=args.top, with_unknown=True)
    if args.json:
        emit(res)
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

    from ..explain import explain
    p = load_predictor(args.model_dir)
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
        emit(rows)
    else:
        for r in rows:
            print(f"{r['path']}: " + (f"error: {r['error']}" if "error" in r else f"{r['label']} -> {r['overlay']}"))
    if not any("error" not in r for r in rows):
        return 1


def add(sub):
    """Register this module's commands."""
    from .. import models as M
    w = max(map(len, M.trainable()))
    s = sub.add_parser("train", help="train a model and save it", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="models:\n" + "\n".join(f"  {k:<{w}} {M.describe(k)}" for k in M.trainable())
                       + "\n\nbackbone rungs fetch torchvision's ImageNet weights into torch's hub cache on first use "
                         "(see logoapp weights); --offline forbids it, --no-pretrained trains from random init")
    data_args(s, size="image size for loading and for the model (default: load at the images' own size, at most 140; "
                      "the model at its own default, e.g. 64 for cnn)")
    s.add_argument("--model", choices=M.trainable(), default=M.DEFAULT_MODEL,
                   help=f"which rung of the ladder (default {M.DEFAULT_MODEL})")
    s.add_argument("--epochs", type=int, default=None,
                   help="epochs (default: per model; RGB photos trained from scratch get more in small sets)")
    s.add_argument("--lr", type=float, default=None,
                   help="peak learning rate of the one-cycle schedule (default: per model)")
    s.add_argument("--bs", type=int, default=None, help="batch size (default: per model, 64; cnn-wide 512, whose "
                   "learning rate is per 512 images and follows the batch size)")
    s.add_argument("--no-aug", action="store_true", help="turn augmentation off")
    s.add_argument("--no-pretrained", action="store_true",
                   help="train a backbone rung (resnet18, resnet34, mobilenet) from random init, not ImageNet weights")
    s.add_argument("--offline", action="store_true",
                   help="never download ImageNet weights (same as LOGOAPP_OFFLINE=1); fail if they are not on disk")
    s.add_argument("--out", default=None, help="model folder to write (default models/<model>)")
    s.add_argument("--models", default=None, help="models folder for the default --out (default ./models)")
    s.add_argument("--processes", type=int, default=1, metavar="N",
                   help="train as N processes on this machine (PyTorch DDP: gloo on CPUs, NCCL on GPUs); the same "
                        "as `torchrun --nproc-per-node N -m logoapp train ...`")
    s.set_defaults(fn=distributed(cmd_train))

    s = sub.add_parser("eval", help="score a saved model on a dataset")
    s.add_argument("model_dir", metavar="MODEL_DIR")
    data_args(s, size=False, split=False, resize=False)
    s.add_argument("--split", choices=["valid", "train", "test", "all"], default="valid",
                   help="which images to score (default valid; test: the test/ folder of a pre-split train/valid/test "
                        "folder; 'all' for a separate test folder); images are read as the model's were (its size "
                        "and resize method)")
    s.set_defaults(fn=cmd_eval)

    s = sub.add_parser("predict", help="class probabilities for images, or 'unknown' for images unlike the training "
                       "data (models saved with an unknown-input test)")
    s.add_argument("model_dir", metavar="MODEL_DIR", help="a model folder, or an .onnx / .torchscript file written by "
                   "logoapp export")
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
