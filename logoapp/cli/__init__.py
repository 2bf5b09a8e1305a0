"""`logoapp` on the command line: a thin shell over the library, like app.py. Errors are one line, never a traceback.

One module per group of commands, each with an `add(sub)` that registers its parsers; this file only composes them."""
from __future__ import annotations

import argparse
import sys

from . import audit, data, export, model, weights
from .common import CliError  # noqa: F401  (re-exported: callers catch logoapp.cli.CliError)

EPILOG = """examples:
  logoapp                                  start the web app on the built-in crest set
  logoapp synth crests/ --classes 2        write the look-alike red pair as PNG folders
  logoapp info crests/                     classes, counts, sizes, modes, bad files
  logoapp baseline crests/ --distance rmse pixel-similarity (nearest ideal image) accuracy
  logoapp audit crests/                    duplicates, leakage, label errors, odd images
  logoapp fix crests/ --relabel crests/a/x.png=b    move a file into class b (logged; --undo reverts)
  logoapp train crests/ --model cnn        train the default CNN, save it under models/
  logoapp eval models/cnn crests/          accuracy, precision/recall/F1 per class, confusion matrix
  logoapp predict models/cnn a.png b.jpg   class probabilities per image, or "unknown" for an unlike image
  logoapp explain models/cnn a.png --out heat/   a heatmap overlay PNG per image: what the answer rests on
  logoapp weights [download resnet18]      the ImageNet backbones: file, size, on disk? (download one)
  logoapp export models/cnn --format onnx  one ONNX file with the preprocessing inside, checked against logoapp
  logoapp space models/cnn --out space/    a folder ready to push to a Hugging Face Space (predict-only demo)
DATA may be a folder of class sub-folders, a train/ + valid/ (or validation/, test/) layout, or 'embedded'."""


COMMANDS = (data, audit, model, export, weights)  # each: add(sub); the order is the order of `logoapp --help`


def cmd_app(args):
    return web_app(args.rest)


def web_app(argv: list[str]):
    """Start the web app with app.py's flags: the command line's one door into logoapp.ui (imported only here,
    so every other command runs without Gradio)."""
    from ..ui import main as ui_main
    return ui_main(argv)


def parser() -> argparse.ArgumentParser:
    from .. import __version__
    p = argparse.ArgumentParser(prog="logoapp", description="Build an image classifier from a folder of pictures, "
                                "and understand it. With no command, starts the web app.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"logoapp {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    for group in COMMANDS:
        group.add(sub)
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
    from ..data import DataError
    from ..images import ImageError
    from ..store import ModelError
    try:
        args.argv = argv
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
