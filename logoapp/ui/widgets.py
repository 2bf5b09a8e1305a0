"""Small pieces every tab shares: CSS, the theme, the progress-bar HTML, example images, the unopened image input."""
from __future__ import annotations

import html
import logging
from pathlib import Path

import gradio as gr

from .guard import UploadError, uploaded

ASSETS = Path(__file__).resolve().parents[2] / "assets"
DELETE_CACHE = (3600, 86400)    # hourly, Gradio deletes uploads and generated files older than a day (all at exit)

FONT = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
FONT_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]

CSS = """
.la-progress {margin: 2px 0 6px 0}
.la-track {height: 14px; border-radius: 7px; background: var(--neutral-200); overflow: hidden}
.la-fill {height: 100%; background: linear-gradient(90deg, #3b82f6, #2563eb); transition: width .25s ease}
.la-fill.done {background: linear-gradient(90deg, #22c55e, #16a34a)}
.la-fill.stopped {background: linear-gradient(90deg, #f59e0b, #d97706)}
.la-fill.error {background: #dc2626}
.la-text {font-size: 0.9em; margin-top: 4px; color: var(--body-text-color-subdued); font-variant-numeric: tabular-nums}
.la-note {color: var(--body-text-color-subdued); font-size: 0.92em}
#la-header h1 {margin-bottom: 0}
.la-align-end {align-items: flex-end !important}
.la-inline-btn {margin-bottom: 10px; max-height: 44px}
.la-captions .caption-label {white-space: pre-line !important; max-width: 100% !important; left: 0; right: 0 !important;
  bottom: 0 !important; font-size: 11px !important; line-height: 1.25 !important; text-align: center !important;
  border-radius: 0 !important; padding: 2px 3px !important; background: rgba(255, 255, 255, 0.85) !important;
  overflow-wrap: anywhere}
.dark .la-captions .caption-label {background: rgba(20, 20, 20, 0.8) !important}
.la-captions .grid-wrap {min-height: 0 !important; max-height: none !important; height: auto !important;
  overflow-y: visible !important}
.la-below .thumbnail-item {aspect-ratio: auto !important; height: auto !important; display: flex !important;
  flex-direction: column !important}
.la-below .thumbnail-item > img {aspect-ratio: 1 / 1; height: auto !important; flex: none}
.la-below .caption-label {position: static !important; border: 0 !important; background: transparent !important}
"""


def theme():
    """Soft theme with system fonts only: nothing to download, works offline."""
    return gr.themes.Soft(primary_hue="blue", secondary_hue="orange", font=FONT, font_mono=FONT_MONO)


def bar(frac: float, text: str, state: str = "running") -> str:
    """The progress bar's HTML: frac of the track filled, a line of text below; state colours it."""
    pct = 100 * min(1.0, max(0.0, frac))
    return (f'<div class="la-progress"><div class="la-track"><div class="la-fill {state}" style="width:{pct:.1f}%">'
            f'</div></div><div class="la-text">{html.escape(text)}</div></div>')


def secs(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{s} s"


def examples(vocab: list[str] | None) -> list[str]:
    """Example crests from assets/ whose file name starts with a class the model knows (all for vocab None)."""
    if not ASSETS.is_dir():
        return []
    files = sorted(p for p in ASSETS.glob("*.png") if not p.name.startswith("screenshot"))
    if vocab is None:
        return [str(p) for p in files]
    return [str(p) for p in files if any(p.stem.startswith(c) for c in vocab)]


def upload(path) -> str:
    """The path of a file uploaded to this app, else a gr.Error: every handler that opens a file a request named
    checks it here (Gradio checks only requests that mark the file as an upload themselves)."""
    try:
        return uploaded(path)
    except UploadError as e:  # also raised in a component's preprocess, outside any handler: one log line here
        logging.getLogger("logoapp").warning("upload refused: %s", e)
        raise gr.Error(f"Cannot use this file: {e}.", print_exception=False) from None


def unopened(img: gr.Image) -> gr.Image:
    """Make an image input hand its handler the uploaded file's path without Gradio opening it first: logoapp's own
    pipeline then decodes it and says what is wrong with a bad file (Gradio's check raises a raw Pillow error), and
    Gradio never decodes an image before logoapp's size checks (a data: URL is refused instead). An instance
    attribute rather than a subclass: Gradio writes a .pyi stub beside any module that defines a component."""

    def preprocess(payload):
        if payload is None:
            return None
        if (payload.url or "").startswith("data:"):
            raise gr.Error("Cannot use this file: send the image itself as an upload, not a data: URL.",
                           print_exception=False)
        return upload(payload.path)

    img.preprocess = preprocess
    return img
