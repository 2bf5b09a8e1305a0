"""`python app.py` / `logoapp app`: parse the flags, build the app, serve it (locally unless told otherwise)."""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time

from starlette.middleware import Middleware

from .. import __version__, tmpdirs
from .app import build_app
from .guard import Guard
from .widgets import CSS, theme


def share_possible(timeout: float = 3.0) -> bool:
    """Whether Gradio's share server can be reached at all (a quick TCP check, instead of a 30 s hang offline)."""
    try:
        with socket.create_connection(("api.gradio.app", 443), timeout=timeout):
            return True
    except OSError:
        return False


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    user, sep, pw = text.partition(":")
    if not sep or not user or not pw:
        raise SystemExit("logoapp: --auth / LOGOAPP_AUTH must look like USER:PASSWORD")
    return user, pw


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="app.py", description="logoapp: build an image classifier from a folder of pictures and understand it "
                                   "(a Gradio web app; open the printed URL in a browser).")
    p.add_argument("--data", default=env("LOGOAPP_DATA"),
                   help="folder of images, one sub-folder per class (or train/ and valid/); default: the embedded "
                        "crest set (env LOGOAPP_DATA)")
    p.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on (default 127.0.0.1, this computer only); 0.0.0.0 serves your whole "
                        "network (env GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")),
                   help="port to listen on (default 7860; env GRADIO_SERVER_PORT)")
    p.add_argument("--models", default=None, help="folder for trained models (env LOGOAPP_MODELS, else ./models)")
    p.add_argument("--size", type=int, default=None,
                   help="stored image size for the data, in pixels (default: the images' own size, at most 140)")
    p.add_argument("--share", action="store_true",
                   help="also create a temporary public gradio.live link (needs internet; without it the app "
                        "serves locally and says so)")
    p.add_argument("--demo", metavar="MODEL_DIR", default=env("LOGOAPP_DEMO"),
                   help="serve only the Predict tab for this one model: no training, no data browsing, no model "
                        "import, and /predict as the only API endpoint (env LOGOAPP_DEMO)")
    p.add_argument("--auth", metavar="USER:PASS", default=None,
                   help="require this login (env LOGOAPP_AUTH); use it whenever the app is reachable by others")
    p.add_argument("--allow-folders", action="store_true",
                   help="let users load server folders by path even when serving beyond this computer")
    p.add_argument("--max-file-size", default=env("LOGOAPP_MAX_FILE_SIZE"),
                   help="largest upload accepted, e.g. 20mb (env LOGOAPP_MAX_FILE_SIZE); default 64mb with --demo, "
                        "else 2gb (dataset zips)")
    p.add_argument("--mcp", action="store_true", default=env("LOGOAPP_MCP", "").lower() in ("1", "true", "yes"),
                   help="also serve the app's API as MCP tools for assistants, at /gradio_api/mcp/sse (best with "
                        "--demo, whose one tool is predict; needs pip install 'logoapp[mcp]'; env LOGOAPP_MCP=1)")
    return p.parse_args(argv)


def check_mcp(args, auth) -> None:
    """--mcp needs Gradio's MCP extra, and no login: Gradio's MCP server calls the app through a client of its own,
    which cannot log in, so with --auth every tool call would fail."""
    import importlib.util
    if not args.mcp:
        return
    if auth:
        raise SystemExit("logoapp: --mcp cannot be combined with a login (--auth / LOGOAPP_AUTH): Gradio's MCP "
                         "server could not call the app")
    if importlib.util.find_spec("mcp") is None:
        raise SystemExit("logoapp: --mcp needs the MCP extra: pip install 'logoapp[mcp]'")


def api_names(app) -> set[str]:
    """The endpoint names callers may use: every named event that is not private."""
    return {fn.api_name for fn in app.fns.values() if fn.api_name and fn.api_visibility != "private"}


def _bytes(size: str | int) -> int:
    from gradio.utils import _parse_file_size
    return int(_parse_file_size(size))


def main(argv=None) -> None:
    args = parse_args(argv)
    tmpdirs.sweep_stale()  # uploads unpacked by an app that was killed
    auth = parse_auth(args.auth or os.environ.get("LOGOAPP_AUTH"))
    check_mcp(args, auth)
    local = args.host in ("127.0.0.1", "localhost", "::1") and not args.share
    print(f"logoapp {__version__}: starting" + (f" (predict-only demo of {args.demo})" if args.demo else ""),
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    app = build_app(args.data, args.models, args.demo, allow_folders=local or args.allow_folders,
                    size=args.size)
    print(f"logoapp: ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    share = False
    if args.share:
        if os.environ.get("SPACE_ID"):
            print("logoapp: running on Hugging Face Spaces; --share is not needed there", file=sys.stderr)
        elif share_possible():
            share = True
        else:
            print("logoapp: could not create a public link (no connection to gradio.app); serving locally only",
                  file=sys.stderr, flush=True)
    max_file_size = args.max_file_size or ("64mb" if args.demo else "2gb")
    guard = Middleware(Guard, max_upload=_bytes(max_file_size), api_names=lambda: api_names(app), login=bool(auth),
                       classify=getattr(app, "classify", None))
    try:
        app.queue(default_concurrency_limit=2).launch(
            server_name=args.host, server_port=args.port, share=share, auth=auth,
            auth_message="logoapp: log in to continue" if auth else None, theme=theme(), css=CSS,
            show_error=not args.demo,  # the demo shows what was wrong with the input (gr.Error), nothing else
            max_file_size=max_file_size, footer_links=["api", "settings"], quiet=True, prevent_thread_lock=True,
            app_kwargs={"middleware": [guard]}, mcp_server=args.mcp,
            enable_monitoring=False)  # Gradio's /monitoring/summary would show every visitor what the others ran
    except OSError as e:  # most often: the port is taken by another app (or another logoapp)
        print(f"logoapp: error: cannot serve on {args.host}:{args.port}: {str(e).split('. ')[0]}; "
              f"try --port {args.port + 1}", file=sys.stderr)
        sys.exit(1)
    where = app.local_url + (f" and {app.share_url}" if app.share_url else "")
    print(f"* Running on local URL:  {app.local_url}\nlogoapp: open {where} in a browser"
          + (" (login required)" if auth else "") + "; Ctrl+C stops it", flush=True)
    app.block_thread()


if __name__ == "__main__":
    main()
