"""`logoapp space`: a folder ready to push to a Hugging Face Space that serves the predict-only demo of one model:
the Space's README (front matter), app.py, requirements.txt (torch's CPU wheels), the logoapp package, the model
folder and its example images."""
from __future__ import annotations

import importlib.metadata as md
import json
import platform
import re
import shutil
from pathlib import Path

import torch

from . import store

PACKAGE = Path(__file__).resolve().parent
ASSETS = PACKAGE.parent / "assets"
CPU_WHEELS = "https://download.pytorch.org/whl/cpu"
SKIP = ("gradio",       # the Space installs the gradio of its front matter's sdk_version
        "onnx", "onnxscript", "onnxruntime")  # exporting is not the demo's job: a leaner Space


class SpaceError(ValueError):
    """A folder that cannot be written."""


def requirements() -> list[str]:
    """logoapp's dependencies, torch and torchvision pinned to the versions the model was checked with."""
    deps = _declared()
    pins = {"torch": torch.__version__.split("+")[0], "torchvision": _version("torchvision")}
    out = []
    for d in deps:
        name = re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].strip()
        if name.lower() in SKIP or "extra ==" in d:
            continue
        out.append(f"{name}=={pins[name]}" if pins.get(name) else d.split(";")[0].strip())
    return out


def _declared() -> list[str]:
    """The dependency list of pyproject.toml beside the package (a source checkout), else of the installed one."""
    pyproject = PACKAGE.parent / "pyproject.toml"
    try:
        import tomllib
        return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])
    except (ImportError, OSError, KeyError, ValueError):
        return list(md.requires("logoapp") or [])


def _version(dist: str) -> str | None:
    try:
        return md.version(dist).split("+")[0]
    except md.PackageNotFoundError:
        return None


def readme(meta: dict, title: str, private: bool) -> str:
    """The Space's README.md: Hugging Face's front matter, then what the Space is and how to call it."""
    acc = (meta.get("metrics") or {}).get("accuracy")
    n = len(meta["vocab"])
    short = f"{meta['arch']} image classifier, {n} classes"[:60]
    front = {"title": title[:80], "emoji": "🛡️", "colorFrom": "blue", "colorTo": "indigo", "sdk": "gradio",
             "sdk_version": _version("gradio") or "6.31.0", "python_version": platform.python_version_tuple()[0]
             + "." + platform.python_version_tuple()[1], "app_file": "app.py", "pinned": False,
             "short_description": short}
    lines = ["---", *(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in front.items()), "---", "",
             f"# {title}", "",
             f"A **{meta['arch']}** image classifier for {n} classes ({', '.join(meta['vocab'][:12])}"
             + (", ..." if n > 12 else "") + ")"
             + (f", {acc:.1%} accurate on its validation images" if isinstance(acc, (int, float)) else "")
             + ", made with logoapp. Drop an image to classify it; images unlike the training images are called "
               "unknown.", "",
             "From a program (`pip install gradio_client`):", "", "```python",
             "from gradio_client import Client, handle_file",
             'client = Client("OWNER/SPACE")' + ("  # add hf_token=... for a private Space" if private else ""),
             'print(client.predict(handle_file("image.png"), api_name="/predict"))  # {label, probs, unknown}',
             "```", "", "or one HTTP request per image:", "", "```bash",
             "curl -F file=@image.png https://OWNER-SPACE.hf.space/api/classify", "```", ""]
    if private:
        lines += ["**Login required.** Set the secret `LOGOAPP_AUTH` to `user:password` (Settings → Variables and "
                  "secrets); without it this app refuses to start. Callers log in first (`POST /login`, or "
                  "`Client(..., auth=(user, password))`).", ""]
    return "\n".join(lines)


PRIVATE = '''if not os.environ.get("LOGOAPP_AUTH"):
    sys.exit("logoapp: this Space is private: set the secret LOGOAPP_AUTH to user:password")
'''

APP = '''"""{title}: the predict-only logoapp demo of the model in ./model (written by `logoapp space`)."""
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ["LOGOAPP_DEMO"] = str(HERE / "model")
{guard}
from logoapp.ui import main  # noqa: E402  (after the settings above)

if __name__ == "__main__":
    main([])
'''


def build(model_dir: str | Path, out: str | Path, title: str | None = None, private: bool = False) -> Path:
    """Write the Space folder out/ (new or empty) for the model in model_dir; returns out."""
    model_dir, out = Path(model_dir), Path(out)
    meta = store.read_meta(model_dir)
    store.load(model_dir)  # refuses a tampered or broken model before anything is written
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SpaceError(f"{out} exists and is not empty; give a new folder")
    title = title or f"{meta.get('name') or model_dir.name} · logoapp"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PACKAGE, out / "logoapp", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyi"))
    (out / "model").mkdir()
    for f in ("model.json", meta["weights"]):
        shutil.copy2(model_dir / f, out / "model" / f)
    examples = [p for p in sorted(ASSETS.glob("*.png")) if not p.name.startswith("screenshot")
                and any(p.stem.startswith(c) for c in meta["vocab"])] if ASSETS.is_dir() else []
    if examples:
        (out / "assets").mkdir()
        for p in examples:
            shutil.copy2(p, out / "assets" / p.name)
    (out / "app.py").write_text(APP.format(title=title.replace('"', "'"), guard=PRIVATE if private else ""))
    (out / "requirements.txt").write_text("\n".join([f"--extra-index-url {CPU_WHEELS}", *requirements()]) + "\n")
    (out / "README.md").write_text(readme(meta, title, private))
    (out / ".gitattributes").write_text("*.pt filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs diff=lfs "
                                        "merge=lfs -text\n")
    return out
