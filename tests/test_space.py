"""`logoapp space`: the folder a Hugging Face Space needs, and its app.py serving /predict on 127.0.0.1."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app_server import free_port
from conftest import make_image
from logoapp.cli import main


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def space_env(port: int, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGOAPP_") and k != "PYTHONPATH"}
    return {**env, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
            "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            **extra}


def test_space_folder_has_what_a_space_needs(trained, tmp_path, capsys):
    folder, _ = trained
    out = tmp_path / "space"
    rc, stdout, err = run(capsys, "space", folder, "--out", out, "--title", "Crest finder", "--json")
    assert rc == 0, err
    files = set(json.loads(stdout)["files"])
    meta = json.loads((folder / "model.json").read_text())
    assert {"README.md", "app.py", "requirements.txt", ".gitattributes", "model/model.json",
            f"model/{meta['weights']}"} <= files
    assert (out / "logoapp" / "ui" / "demo.py").is_file() and not list(out.rglob("__pycache__"))
    front = (out / "README.md").read_text().split("---")[1]
    for key in ("title: \"Crest finder\"", "sdk: \"gradio\"", "app_file: \"app.py\"", "sdk_version:"):
        assert key in front, front
    req = (out / "requirements.txt").read_text().splitlines()
    assert req[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"
    assert any(r.startswith("torch==") for r in req) and not any(r.startswith("gradio") for r in req)
    rc, stdout, err = run(capsys, "space", folder, "--out", out)  # never over a folder that holds something
    assert rc == 1 and "not empty" in err


@pytest.mark.slow
def test_space_app_serves_predict(trained, tmp_path, capsys):
    """The folder's own app.py, run from the folder with its own copy of logoapp, answers /predict."""
    folder, _ = trained
    out = tmp_path / "space"
    assert run(capsys, "space", folder, "--out", out)[0] == 0
    where = subprocess.run([sys.executable, "-E", "-s", "-c", "import logoapp; print(logoapp.__file__)"], cwd=out,
                           capture_output=True, text=True, env=space_env(0), timeout=60)
    assert Path(where.stdout.strip()).resolve().is_relative_to(out.resolve()), where  # the copy, not this checkout
    port = free_port()
    log = tmp_path / "space.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-E", "-s", "app.py"], cwd=out, env=space_env(port), stdout=f,
                                stderr=subprocess.STDOUT)
    try:
        from gradio_client import Client, handle_file
        url = f"http://127.0.0.1:{port}/"
        client, deadline = None, time.monotonic() + 120
        while client is None:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
            except Exception:
                time.sleep(0.5)
        img = tmp_path / "a.png"
        make_image(2, 1, 40).save(img)
        res = client.predict(handle_file(str(img)), api_name="/predict")
        assert res["label"] in json.loads((folder / "model.json").read_text())["vocab"] and "unknown" in res
        client.close()
    finally:
        proc.terminate()
        proc.wait(20)


def test_private_space_refuses_to_start_without_its_secret(trained, tmp_path, capsys):
    folder, _ = trained
    out = tmp_path / "space"
    assert run(capsys, "space", folder, "--out", out, "--private-auth")[0] == 0
    p = subprocess.run([sys.executable, "-E", "-s", "app.py"], cwd=out, env=space_env(free_port()),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "LOGOAPP_AUTH" in p.stderr and "Traceback" not in p.stderr
    assert "LOGOAPP_AUTH" in (out / "README.md").read_text()
