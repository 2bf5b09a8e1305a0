"""Commands that take a model elsewhere: `export` (ONNX, TorchScript, checked against logoapp's own predictions) and
`space` (a folder ready to push to a Hugging Face Space)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from .common import CliError, emit, load_predictor


def cmd_export(args):
    from .. import export as X
    from .. import parity
    p = load_predictor(args.model_dir)
    out = Path(args.out) if args.out else X.default_out(args.model_dir, args.format)
    if out.is_dir():
        out = out / X.default_out(args.model_dir, args.format).name
    tmp = out.with_name(f".{out.stem}.checking{out.suffix}")  # the file takes its name only once it passed
    t0 = time.perf_counter()
    try:
        X.export(p.model, p.meta, args.format, tmp)
        if sys.stderr.isatty():  # a progress note for people; a script's stderr gets only the one error line
            print(f"exported to {args.format} in {time.perf_counter() - t0:.1f}s; checking it against logoapp's "
                  f"predictor on {'the images of ' + args.data if args.data else 'a generated probe set'}...",
                  file=sys.stderr, flush=True)
        report = parity.check(tmp, p, args.data)
        if not report.ok:
            raise CliError(f"the {args.format} export does not predict as logoapp does (top-1 agreement "
                           f"{report.agreement:.2%} < {parity.AGREEMENT:.1%}, largest probability difference "
                           f"{report.max_diff:.2g}); nothing was written")
        tmp.replace(out)
    except X.ExportError as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    report.path = str(out)
    if args.json:
        return emit({"model": str(args.model_dir), "format": args.format, "out": str(out),
                     "bytes": out.stat().st_size, "parity": report.to_dict()})
    print(report.line())
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB): uint8 (N, H, W, {p.channels}) "
          f"{'RGBA' if p.channels == 4 else 'RGB'} pixels in, 'logits' and 'probs' out; classes and temperature in "
          f"its metadata")


def cmd_space(args):
    from .. import space
    try:
        out = space.build(args.model_dir, args.out, args.title, args.private_auth)
    except space.SpaceError as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(f"cannot write {args.out}: {e.strerror or e}") from None
    if args.json:
        return emit({"model": str(args.model_dir), "out": str(out),
                     "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
                                     and "logoapp" not in p.relative_to(out).parts[:1])})
    print(f"wrote {out}: app.py, requirements.txt, README.md (the Space's settings), model/, logoapp/"
          + (", assets/" if (out / "assets").is_dir() else "") + "\nnext: create a Gradio Space on huggingface.co, "
          f"then: cd {out} && git init -b main && git add . && git commit -m 'logoapp demo' && git remote add space "
          "https://huggingface.co/spaces/OWNER/SPACE && git push --force space main"
          + ("\nthen set the secret LOGOAPP_AUTH=user:password in the Space's settings" if args.private_auth else ""))


def add(sub):
    """Register this module's commands."""
    s = sub.add_parser(
        "export", help="write a model as ONNX or TorchScript with its preprocessing inside, checked against logoapp",
        description="Write MODEL_DIR as one ONNX or TorchScript file that takes uint8 (N, H, W, C) pixels at any "
                    "size and does logoapp's resize and normalisation itself; class names and the calibration "
                    "temperature travel in its metadata. The export is then run beside logoapp's own predictor "
                    "(on --data's images, else on a generated probe set) and refused below 99.9% top-1 agreement.")
    s.add_argument("model_dir", metavar="MODEL_DIR")
    s.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="file format (default onnx)")
    s.add_argument("--out", default=None, metavar="FILE",
                   help="file to write (default MODEL_DIR/model.onnx or MODEL_DIR/model.torchscript)")
    s.add_argument("--data", default=None, metavar="DATA",
                   help="check the export on this dataset's validation images and original files ('embedded' for "
                        "the built-in crests); default: a generated probe set")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout (file, size, parity)")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("space", help="write a folder ready to push to a Hugging Face Space (the predict-only demo)",
                       description="Write DIR with what a Hugging Face Space needs to serve MODEL_DIR's predict-only "
                                   "demo: README.md with the Space's front matter, app.py, requirements.txt (torch's "
                                   "CPU wheels), the logoapp package, the model folder and its example images.")
    s.add_argument("model_dir", metavar="MODEL_DIR")
    s.add_argument("--out", required=True, metavar="DIR", help="folder to write (new or empty)")
    s.add_argument("--title", default=None, help="the Space's title (default: the model's name)")
    s.add_argument("--private-auth", action="store_true",
                   help="require a login: the Space refuses to start until its secret LOGOAPP_AUTH is set")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout (folder and files)")
    s.set_defaults(fn=cmd_space)
