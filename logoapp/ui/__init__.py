"""The Gradio app: one module per tab (ui/tabs/), composed by ui/app.py; ui/server.py parses flags and launches.

Everything here converts inputs, calls logoapp and formats the results; what the tabs show is computed in
logoapp.views (no Gradio there). The environment is set up here, once, before anything imports Gradio.
"""
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry, no version check
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from .app import build_app  # noqa: E402
from .demo import build_demo  # noqa: E402
from .server import main, parse_args  # noqa: E402
from .state import Session, Shared  # noqa: E402

__all__ = ["Session", "Shared", "build_app", "build_demo", "main", "parse_args"]
