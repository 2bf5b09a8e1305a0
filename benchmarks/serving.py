"""Serving: POST /api/classify against gradio_client's /predict on one running predict-only demo, the same image,
taking turns call by call."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import calls, figure, log, median, paired

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(model_dir: Path) -> tuple[subprocess.Popen, str]:
    """`app.py --demo model_dir` on a free loopback port; waits until it answers."""
    import httpx
    port = _port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1",
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    for k in ("LOGOAPP_AUTH", "LOGOAPP_DEMO"):
        env.pop(k, None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--demo", str(model_dir), "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the demo exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the demo did not start in 120 s")


def bench(ds, quick: bool) -> dict:
    """REST round trip vs gradio_client's /predict round trip, on a saved cnn served by the predict-only demo."""
    import httpx
    from gradio_client import Client, handle_file

    from logoapp import models as M
    from logoapp import store
    model, info = M.build("cnn", ds.channels, ds.c, ds.size, pretrained=False)
    folder = Path(tempfile.mkdtemp(prefix="logoapp-bench-serve-")) / "cnn"
    store.save(model, {"arch": "cnn", "vocab": ds.vocab, "size": info["size"], "data_size": ds.size,
                       "channels": ds.channels}, folder)
    path = ds.items[int(ds.idx("valid")[0])]
    data = Path(path).read_bytes()
    rounds = 20 if quick else 200
    log(f"serving: {rounds} rounds of POST /api/classify / gradio_client /predict on one demo, taking turns")
    proc, url = _serve(folder)
    try:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        http = httpx.Client(base_url=url, timeout=60)

        def rest():
            r = http.post("/api/classify", content=data, headers={"content-type": "image/png"})
            r.raise_for_status()
            return r.json()

        def gradio():
            return client.predict(handle_file(path), api_name="/predict")

        a, b = rest(), gradio()  # warm-up, and the same answer both ways
        assert a["label"] == b["label"], (a, b)
        r = calls({"rest": rest, "client": gradio}, rounds)
        http.close()
        client.close()
    finally:
        proc.terminate()
        proc.wait(20)
    return {"rest_vs_client": figure(
        "REST /api/classify round trip vs gradio_client", median(r["rest"]) * 1000, "ms", median(r["client"]) * 1000,
        "ms (gradio_client predict, api_name=/predict)", paired(r["rest"], r["client"]), "<=", 0.25,
        f"one {ds.size}px PNG classified by a predict-only demo (app.py --demo, an untrained cnn) on 127.0.0.1: POST "
        "/api/classify with the file's bytes (httpx, one kept-alive connection) vs gradio_client's predict (upload, "
        f"queue, result over server-sent events); {rounds} calls each, taking turns call by call; values are "
        "medians, the ratio is the median of paired ratios")}
