"""Unit tests for the holes an attack on a live server found (the live-server tests are in test_security.py):
files a request names, model zips that declare more than they hold, zips that hide their size, big images,
non-image members of a dataset zip, and temporary folders that outlive the app."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from test_security import _no_parse, make_zip, png, tree

# ============================================================================================= files a request names

@pytest.fixture
def upload_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "gradio"
    d.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(d))
    return d


def test_only_regular_files_in_the_upload_folder_are_accepted(upload_dir, tmp_path):
    from logoapp.ui.guard import UploadError, check_files, uploaded
    good = upload_dir / "abc" / "crest.png"
    good.parent.mkdir()
    good.write_bytes(png())
    assert uploaded(str(good)) == str(good.resolve())
    outside = tmp_path / "secret.png"
    outside.write_bytes(png())
    fifo = upload_dir / "pipe.png"
    os.mkfifo(fifo)
    link = upload_dir / "link.png"
    link.symlink_to(outside)
    refused = ["/etc/passwd", str(outside), str(upload_dir / ".." / "secret.png"), str(upload_dir), str(link),
               "relative/crest.png", "http://127.0.0.1:1/x.png", "data:image/png;base64,AAAA", ""]
    t0 = time.monotonic()
    for p in [*refused, str(fifo)]:
        with pytest.raises(UploadError):
            uploaded(p)
    assert time.monotonic() - t0 < 2, "a named pipe must be refused without being opened"
    check_files({"data": [{"path": str(good), "meta": {"_type": "gradio.FileData"}}, "cnn"]})
    for payload in ({"data": [{"path": "/etc/passwd"}]}, {"data": [[{"path": str(fifo)}]]},
                    {"data": [{"path": str(good), "url": "data:image/png;base64,iVBOR"}]}):
        with pytest.raises(UploadError):
            check_files(payload)


def test_handlers_refuse_files_that_were_not_uploaded(upload_dir, tmp_path):
    """Every handler that opens a file checks it itself, whatever the request did or did not mark as an upload."""
    import gradio as gr

    from logoapp.ui.widgets import unopened, upload
    with pytest.raises(gr.Error, match="not uploaded to this app"):
        upload("/etc/passwd")
    img = unopened(gr.Image(type="filepath"))
    from gradio.data_classes import FileData
    with pytest.raises(gr.Error, match="not uploaded"):
        img.preprocess(FileData(path="/etc/shadow"))
    with pytest.raises(gr.Error, match="data: URL"):
        img.preprocess(FileData(path=str(upload_dir / "x.png"), url="data:image/png;base64,AAAA"))
    ok = upload_dir / "ok.png"
    ok.write_bytes(png())
    assert img.preprocess(FileData(path=str(ok))) == str(ok.resolve())

    from types import SimpleNamespace

    from logoapp.ui.tabs import data, predict
    s = SimpleNamespace(shared=SimpleNamespace(folder=tmp_path / "models"))  # refused before the session is used
    for call in (lambda: predict.on_predict("/etc/passwd", "m", s), lambda: predict.on_many(["/etc/passwd"], "m", s),
                 lambda: predict.on_import(s, "/etc/passwd"),
                 lambda: data.on_load(s, data.ZIP, "", "/etc/passwd", 0, 0.2, 0, progress=lambda *a, **k: None)):
        with pytest.raises(gr.Error, match="not uploaded to this app"):
            call()


# ============================================================================================= model zips

def _model_zip(path: Path, meta: dict, state: dict) -> Path:
    import hashlib
    b = io.BytesIO()
    torch.save(state, b)
    data = b.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    weights = f"weights-{digest[:16]}.pt"
    meta = {"format": 1, "weights": weights, "sha256": digest, **meta}
    return make_zip(path, [("model.json", json.dumps(meta).encode()), (weights, data)])


def test_a_tiny_model_zip_cannot_declare_a_huge_model(tmp_path, monkeypatch):
    """25 classes at 1024 px with one-number tensors stretched to full shape: refused from model.json alone, before
    any model is built (finding: each first prediction kept ~400 MB)."""
    from logoapp import store
    meta = {"arch": "pixel", "distance": "l1", "vocab": [f"c{i}" for i in range(25)], "size": 1024, "data_size": 1024,
            "channels": 4}
    z = _model_zip(tmp_path / "big.zip", meta, {"means": torch.zeros(1).expand(25, 4, 1024, 1024)})
    assert z.stat().st_size < 4096
    built = []
    real = store.build_from_meta
    monkeypatch.setattr(store, "build_from_meta", lambda m: (built.append(torch.empty(0).device.type), real(m))[1])
    with pytest.raises(store.ModelError, match="describes a model of 400 MB"):
        store.import_zip(z, tmp_path / "models")
    assert built == ["meta"], "only a 'meta' (memory-free) model may be built before the checks"
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())


def test_stretched_or_missing_weights_are_refused(tmp_path):
    """Within the size bounds, weights must still be stored whole and fit the declared model exactly."""
    from logoapp import store
    meta = {"arch": "pixel", "distance": "l1", "vocab": ["a", "b"], "size": 64, "data_size": 64, "channels": 4}
    stretched = _model_zip(tmp_path / "s.zip", meta, {"means": torch.zeros(1).expand(2, 4, 64, 64)})
    with pytest.raises(store.ModelError, match="not stored whole"):
        store.import_zip(stretched, tmp_path / "models")
    empty = _model_zip(tmp_path / "e.zip", meta, {})
    with pytest.raises(store.ModelError, match="do not fit"):
        store.import_zip(empty, tmp_path / "models")
    wrong = _model_zip(tmp_path / "w.zip", meta, {"means": torch.zeros(2, 4, 8, 8)})
    with pytest.raises(store.ModelError, match="do not fit"):
        store.import_zip(wrong, tmp_path / "models")
    good = _model_zip(tmp_path / "g.zip", meta, {"means": torch.rand(2, 4, 64, 64)})
    assert store.load(store.import_zip(good, tmp_path / "models"))[1]["arch"] == "pixel"


# ============================================================================================= dataset zips

def _hide_members(path: Path, declared: int) -> Path:
    """Make the zip's end record declare `declared` members, whatever its directory holds."""
    b = bytearray(path.read_bytes())
    end = b.rindex(b"PK\x05\x06")
    b[end + 8:end + 10] = declared.to_bytes(2, "little")
    b[end + 10:end + 12] = declared.to_bytes(2, "little")
    path.write_bytes(bytes(b))
    return path


def test_a_zip_cannot_hide_its_member_count(tmp_path, monkeypatch):
    """The end record says 1 member, the directory lists 40: counted while reading, refused before zipfile parses."""
    import logoapp.uploads as uploads
    from logoapp.data import DataError
    z = _hide_members(make_zip(tmp_path / "in.zip", [(f"cats/{i}.png", png(0, i)) for i in range(40)]), 1)
    monkeypatch.setattr(uploads, "MAX_DATASET_ZIP_FILES", 5)
    monkeypatch.setattr(zipfile, "ZipFile", _no_parse)
    with pytest.raises(DataError, match="more than 5 files"):
        uploads.extract_zip(z, tmp_path / "out")
    assert uploads.zip_directory(z, 100) == (40, uploads.zip_directory(z, 100)[1])


def test_members_that_are_not_images_are_never_written(tmp_path):
    """Only the extension was checked before: a 3 MB all-zero 'bomb.png' from a tiny zip landed on disk."""
    from logoapp.uploads import extract_zip
    z = make_zip(tmp_path / "in.zip", [("pets/cats/a.png", png()), ("pets/cats/b.png", png(0, 1)),
                                       ("pets/dogs/c.png", png(1)), ("pets/dogs/d.png", png(1, 1)),
                                       ("pets/cats/bomb.png", bytes(3 * 2**20)), ("pets/dogs/page.jpg", b"<html>hi")])
    skipped = []
    root = extract_zip(z, tmp_path / "out", skipped)
    assert sorted(tree(root)) == ["cats", "cats/a.png", "cats/b.png", "dogs", "dogs/c.png", "dogs/d.png"]
    assert {m for m, _ in skipped} == {"pets/cats/bomb.png", "pets/dogs/page.jpg"}
    assert all("not an image" in why for _, why in skipped)


def test_every_format_logoapp_reads_passes_the_sniff():
    from logoapp.images import looks_like_image
    img = Image.fromarray(np.zeros((4, 4, 3), np.uint8))
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM"):
        b = io.BytesIO()
        img.save(b, fmt)
        assert looks_like_image(b.getvalue()[:16]), fmt
    assert not looks_like_image(bytes(16)) and not looks_like_image(b"RIFF\x00\x00\x00\x00WAVEfmt ")


# ============================================================================================= temporary folders

def test_temporary_folders_go_at_exit_and_stale_ones_at_start(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    code = "from logoapp import tmpdirs; p = tmpdirs.make('zip'); (p / 'x.png').write_bytes(b'x'); print(p)"
    made = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert not Path(made.stdout.strip()).exists(), "a folder outlived the process that made it"

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"logoapp-zip-{dead.stdout.strip()}-abcd"
    live = tmp_path / f"logoapp-zip-{os.getpid()}-efgh"
    other = tmp_path / "logoapp-test-models-xyz"
    for d in (stale, live, other):
        (d / "cats").mkdir(parents=True)
    from logoapp import tmpdirs
    assert tmpdirs.sweep_stale(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


# ============================================================================================= big images

def test_a_big_image_decodes_in_bounded_memory(tmp_path):
    """A 49-megapixel PNG (196 MB of RGBA) took 14x its raw size while decoding; now under 4x, in a fresh process."""
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, (64, 64, 4), np.uint8)
    path = tmp_path / "big.png"
    Image.fromarray(np.tile(tile, (7000 // 64, 7000 // 64, 1)), "RGBA").save(path, compress_level=1)
    with Image.open(path) as im:
        raw = im.width * im.height * 4
    code = textwrap.dedent(f"""
        from logoapp.images import decode
        def status(k):
            return int(open("/proc/self/status").read().split(k + ":")[1].split()[0]) * 1024
        r0 = status("VmRSS")
        a = decode({str(path)!r}, 140, 4)
        assert a.shape == (140, 140, 4), a.shape
        print(status("VmHWM") - r0)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    growth = int(out.stdout.strip())
    assert growth < 4 * raw, f"decoding took {growth / 2**20:.0f} MB for {raw / 2**20:.0f} MB of pixels"


def test_big_decodes_run_one_at_a_time(tmp_path, monkeypatch):
    import threading

    from logoapp import images
    monkeypatch.setattr(images, "LARGE_PIXELS", 100)
    a = np.random.default_rng(1).integers(0, 256, (64, 64, 4), np.uint8)
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(a, "RGBA").save(paths[-1])
    inside, peak, lock = set(), [0], threading.Lock()
    real_load = ImageFile.ImageFile.load

    def load(self):  # threads inside a file decoder's load() at once
        with lock:
            inside.add(threading.get_ident())
            peak[0] = max(peak[0], len(inside))
        time.sleep(0.05)
        try:
            return real_load(self)
        finally:
            with lock:
                inside.discard(threading.get_ident())
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    threads = [threading.Thread(target=images.decode, args=(p, 16, 4)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1
    ref = images.resize(a, 16)
    monkeypatch.setattr(images, "LARGE_PIXELS", 10**9)
    assert np.abs(images.decode(paths[0], 16, 4).astype(int) - ref.astype(int)).max() <= 1


def test_error_messages_carry_no_server_details():
    from logoapp.images import ImageError, decode, plain
    msg = plain(OSError("cannot identify image file <_io.BytesIO object at 0x7f3a2c1b9e50> in /work/app/x.png; "
                        "see https://pillow.readthedocs.io/en/12.3.0/handbook.html"))
    assert "0x" not in msg and "/work" not in msg and "http" not in msg and "12.3.0" not in msg, msg
    with pytest.raises(ImageError) as e:
        decode(b"\x89PNG\r\n\x1a\n" + bytes(100), 16)
    assert "0x" not in str(e.value) and "BytesIO" not in str(e.value), str(e.value)
