"""ImageNet weights on first use, against loopback servers the tests start: a good checkpoint, a corrupt one, a
transfer cut short, no server at all, and offline mode. Nothing here touches the network."""
from __future__ import annotations

import hashlib
import http.server
import io
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from app_server import free_port
from logoapp import weights


def checkpoint() -> bytes:
    b = io.BytesIO()
    torch.save({"w": torch.arange(1000, dtype=torch.float32)}, b)
    return b.getvalue()


@contextmanager
def serve(files: dict[str, bytes], cut: int | None = None):
    """A loopback HTTP server for `files`; with cut, every answer promises the whole file but stops after cut bytes."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            data = files.get(self.path.rsplit("/", 1)[-1])
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:cut] if cut else data)

        def log_message(self, *a):
            pass
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}/models"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """torch's hub folder in tmp, and a toy backbone whose file name carries the hash of the checkpoint served."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("LOGOAPP_OFFLINE", raising=False)
    data = checkpoint()
    name = f"toy-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    monkeypatch.setitem(weights.BACKBONES, "toy", weights.Backbone("toy", name, 0.1, "a test checkpoint"))
    return tmp_path / "hub" / "checkpoints", name, data


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_downloads_once_verified_with_progress(hub, monkeypatch):
    folder, name, data = hub
    seen = []
    with serve({name: data}) as url:
        monkeypatch.setenv("LOGOAPP_WEIGHTS_URL", url)
        p = weights.fetch("toy", progress=lambda done, total: seen.append((done, total)))
    assert p == folder / name and p.read_bytes() == data
    assert seen[-1] == (len(data), len(data))
    assert leftovers(folder) == [name]
    assert weights.fetch("toy") == p  # on disk: no server needed any more
    assert {r["name"]: r["on_disk"] for r in weights.listing()}["toy"] is True


def test_a_corrupt_checkpoint_is_refused_and_nothing_is_left(hub, monkeypatch):
    folder, name, data = hub
    with serve({name: data[:-1] + b"!"}) as url:
        monkeypatch.setenv("LOGOAPP_WEIGHTS_URL", url)
        with pytest.raises(weights.WeightsError, match="could not download toy weights: .*corrupt.*--no-pretrained"):
            weights.fetch("toy")
    assert leftovers(folder) == []


def test_a_transfer_cut_short_leaves_nothing(hub, monkeypatch):
    folder, name, data = hub
    with serve({name: data}, cut=len(data) // 2) as url:
        monkeypatch.setenv("LOGOAPP_WEIGHTS_URL", url)
        with pytest.raises(weights.WeightsError, match="could not download toy weights"):
            weights.fetch("toy")
    assert leftovers(folder) == []


def test_no_server_and_offline_give_one_clear_line(hub, monkeypatch):
    folder, name, _ = hub
    monkeypatch.setenv("LOGOAPP_WEIGHTS_URL", f"http://127.0.0.1:{free_port()}/models")
    with pytest.raises(weights.WeightsError) as e:
        weights.fetch("toy")
    msg = str(e.value)
    assert "\n" not in msg and "cannot reach" in msg and name in msg and "--no-pretrained" in msg, msg
    monkeypatch.setenv("LOGOAPP_OFFLINE", "1")
    with pytest.raises(weights.WeightsError, match="offline"):
        weights.fetch("toy")
    assert leftovers(folder) == []


def test_known_backbones_name_torchvision_files():
    for b in weights.BACKBONES.values():
        assert len(weights.expected_prefix(b.file)) == 8
