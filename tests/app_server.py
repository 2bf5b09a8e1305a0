"""Start `python app.py` on a free loopback port in a subprocess, wait until it answers, stop it afterwards."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shared_cache() -> Path:
    """One decoded-image cache for every app-server test (the embedded set is generated once, ~15 s)."""
    p = Path(os.environ.get("LOGOAPP_TEST_CACHE") or Path(tempfile.gettempdir()) / "logoapp-test-cache")
    p.mkdir(parents=True, exist_ok=True)
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path):
        self.proc, self.url, self.log = proc, url, log

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextmanager
def app_server(*args: str, models: str | Path | None = None, timeout: float = 150, env: dict | None = None):
    """Yield an AppServer running `app.py --port N *args`; its output goes to a log file (read it on failure)."""
    port = free_port()
    models = Path(models or tempfile.mkdtemp(prefix="logoapp-test-models-"))
    log = Path(tempfile.mkstemp(prefix="logoapp-server-", suffix=".log")[1])
    e = {**os.environ, "LOGOAPP_CACHE": str(shared_cache()), "LOGOAPP_MODELS": str(models),
         "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost",
         "no_proxy": "127.0.0.1,localhost", **(env or {})}
    for k in ("LOGOAPP_AUTH", "LOGOAPP_DEMO", "LOGOAPP_DATA"):  # only what the test asks for
        if k not in (env or {}):
            e.pop(k, None)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port),
                                 *args],
                                cwd=ROOT, env=e, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    server = AppServer(proc, url, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app exited with {proc.returncode}:\n{server.output()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except urllib.error.HTTPError:  # e.g. 401 with --auth: it is up
                break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"app did not start in {timeout:.0f} s:\n{server.output()[-3000:]}")
            time.sleep(0.5)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.unlink(missing_ok=True)
