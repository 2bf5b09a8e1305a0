"""What a public link must withstand: hostile zips, file-route traversal, demo mode, login and upload caps.

Fast tests call `extract_zip` / `store.import_zip` / `main()` directly; the `slow` ones run against live servers on
127.0.0.1 (one full app and one predict-only demo with a login, each shared by its tests). See docs/security.md.
"""
from __future__ import annotations

import http.client
import io
import os
import stat
import struct
import time
import uuid
import zipfile
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from app_server import ROOT, app_server, shared_cache
from conftest import make_image

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # gradio_client would otherwise ping huggingface.co

EXAMPLE = ROOT / "assets" / "millbrook-city.png"


# ============================================================================================= helpers

def png(k: int = 0, i: int = 0) -> bytes:
    b = io.BytesIO()
    make_image(k, i, 16).save(b, "PNG")
    return b.getvalue()


def make_zip(path: Path, members, compression=zipfile.ZIP_DEFLATED) -> Path:
    """members: (name, bytes) pairs, or (name, target, 'symlink') for a symbolic-link member."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data, *kind in members:
            if kind == ["symlink"]:
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16  # how Info-ZIP stores `zip --symlinks`
                z.writestr(info, data)
            else:
                z.writestr(name, data)
    return path


def tree(root: Path) -> set[str]:
    """Every path under root (links not followed): to prove nothing was written outside a folder."""
    out = set()
    for d, dirs, files in os.walk(root):
        out.update(str(Path(d, n).relative_to(root)) for n in dirs + files)
    return out


def lie_about_size(path: Path, size: int) -> Path:
    """Patch a one-member zip so its headers declare `size` unpacked bytes (a bomb's header, without the bomb)."""
    b = bytearray(path.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory entry
        struct.pack_into("<I", b, b.index(sig) + offset, size)
    path.write_bytes(bytes(b))
    return path


def pixel_model(folder: Path, vocab=("ashford-athletic", "millbrook-city"), size: int = 8) -> Path:
    """A tiny saved pixel-similarity model (no dataset needed)."""
    import torch

    from logoapp import store
    from logoapp.ideal import PixelSimilarity
    model = PixelSimilarity(torch.rand(len(vocab), 3, size, size), "l1")
    return store.save(model, {"arch": "pixel", "distance": "l1", "vocab": list(vocab), "size": size, "data_size": size,
                              "channels": 3, "metrics": {"accuracy": 0.5}}, folder)


class Payload:
    """Unpickling this runs `touch marker`: what a hostile 'weights' file would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def pickle_model_zip(path: Path, marker: Path) -> Path:
    """A model zip whose model.json is valid and whose weights (checksum right) are a pickle payload."""
    import hashlib
    import json

    import torch
    b = io.BytesIO()
    torch.save(Payload(marker), b)
    data = b.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    weights = f"weights-{digest[:16]}.pt"
    meta = {"format": 1, "arch": "pixel", "distance": "l1", "vocab": ["a", "b"], "size": 8, "data_size": 8,
            "channels": 3, "weights": weights, "sha256": digest, "name": "innocent"}
    return make_zip(path, [("model.json", json.dumps(meta).encode()), (weights, data)])


def raw_get(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """GET with the path sent exactly as written (httpx and requests would normalise '..' away)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def client(url: str, **kw):
    from gradio_client import Client
    return Client(url, verbose=False, analytics_enabled=False, download_files=False, **kw)


def app_error(fn) -> str:
    """Run fn, expecting the app to refuse; return the message the user sees."""
    with pytest.raises(Exception) as e:
        fn()
    return str(e.value)


# ============================================================================================= dataset zips: unit

def _bomb_declared(tmp, mp):     # headers claim 3.75 GB: refused from the directory, nothing written
    return lie_about_size(make_zip(tmp / "in.zip", [("cats/a.png", png())], zipfile.ZIP_STORED), 0xF000_0000)


def _bomb_compressed(tmp, mp):   # 3 MB of zeros in a 3 kB zip, with the cap lowered to 1 MB
    import logoapp.uploads as uploads
    mp.setattr(uploads, "MAX_DATASET_ZIP_BYTES", 2**20)
    return make_zip(tmp / "in.zip", [("cats/a.png", png()), ("cats/b.png", b"\x89PNG\r\n\x1a\n" + bytes(3 * 2**20))])


def _too_many(tmp, mp):          # more members than the cap: refused from the end record, before zipfile parses
    import logoapp.uploads as uploads
    mp.setattr(uploads, "MAX_DATASET_ZIP_FILES", 5)
    z = make_zip(tmp / "in.zip", [(f"cats/{i}.png", png(0, i)) for i in range(6)])
    mp.setattr(zipfile, "ZipFile", _no_parse)
    return z


def _long_directory(tmp, mp):    # few members but a huge central directory (long names): also refused unparsed
    import logoapp.uploads as uploads
    mp.setattr(uploads, "MAX_DATASET_ZIP_FILES", 5)
    deep = "/".join(["d" * 200] * 12)
    z = make_zip(tmp / "in.zip", [(f"cats/{deep}/{i}.png", png()) for i in range(3)])
    mp.setattr(zipfile, "ZipFile", _no_parse)
    return z


def _no_parse(*a, **k):
    raise AssertionError("zipfile.ZipFile parsed a directory that the end record already showed to be too large")


def _corrupt(tmp, mp):           # a stored member whose bytes no longer match its CRC
    z = make_zip(tmp / "in.zip", [("cats/a.png", png()), ("cats/b.png", b"PAYLOAD-" * 64)], zipfile.ZIP_STORED)
    z.write_bytes(z.read_bytes().replace(b"PAYLOAD-" * 64, b"payload-" * 64))
    return z


def _traversal(name):
    def build(tmp, mp):
        return make_zip(tmp / "in.zip", [("cats/a.png", png()), ("cats/b.png", png(0, 1)), (name, png())])
    return build


OUTSIDE = f"/tmp/logoapp-test-pwned-{uuid.uuid4().hex[:8]}.png"  # unique, in case a broken extractor writes it

HOSTILE = {
    "dotdot-after-good-members": (_traversal("cats/../../pwned.png"), "unsafe path"),
    "backslash-dotdot": (_traversal("..\\pwned.png"), "unsafe path"),
    "backslash-nested-dotdot": (_traversal("cats\\..\\..\\pwned.png"), "unsafe path"),
    "absolute-tmp": (_traversal(OUTSIDE), "unsafe path"),
    "declared-size-bomb": (_bomb_declared, "more than 2 GB"),
    "compression-bomb": (_bomb_compressed, "more than 1 MB"),
    "too-many-members": (_too_many, "has more than 5 files"),
    "huge-directory": (_long_directory, "the limit is 5 files"),
    "corrupt-member": (_corrupt, "cannot unpack 'cats/b.png'"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_dataset_zip_is_refused_and_nothing_is_written(tmp_path, monkeypatch, case):
    """Refused with a clear DataError before a single byte lands in the folder, and nothing anywhere else."""
    from logoapp.data import DataError
    from logoapp.uploads import extract_zip
    build, message = HOSTILE[case]
    (tmp_path / "box").mkdir()
    zpath = build(tmp_path, monkeypatch)
    before = tree(tmp_path)
    with pytest.raises(DataError, match=message):
        extract_zip(zpath, tmp_path / "box" / "out")
    monkeypatch.undo()
    after = tree(tmp_path)
    outside = {p for p in after - before if p != "box/out" and not p.startswith("box/out/")}
    assert not outside, f"written outside the extraction folder: {sorted(outside)}"
    if case != "corrupt-member":  # a bad CRC shows only once read; on_load then removes the whole folder
        assert not any((tmp_path / "box" / "out").iterdir()), "a refused zip must leave the folder empty"
    assert not Path(OUTSIDE).exists()


@pytest.mark.parametrize("data", [b"", b"just text, not a zip", b"PK\x05\x06" + bytes(10)])
def test_not_a_zip_is_a_clear_error(tmp_path, data):
    from logoapp.data import DataError
    from logoapp.uploads import extract_zip
    (tmp_path / "x.zip").write_bytes(data)
    with pytest.raises(DataError, match="not a zip"):
        extract_zip(tmp_path / "x.zip", tmp_path / "out")


def test_symlink_members_are_skipped_with_a_reason(tmp_path):
    """A link member is never created (nor written as a file holding its target); a file 'through' a directory
    link lands inside the folder, not where the link points."""
    from logoapp.uploads import extract_zip
    outside = tmp_path / "outside"
    outside.mkdir()
    z = make_zip(tmp_path / "links.zip", [
        ("set/cats/a.png", png()), ("set/dogs/b.png", png(1)),
        ("set/cats/passwd.png", "/etc/passwd", "symlink"),
        ("set/evil", str(outside), "symlink"),
        ("set/evil/c.png", png(1, 2)),
    ])
    skipped = []
    root = extract_zip(z, tmp_path / "out", skipped)
    files = tree(tmp_path / "out")
    assert not any(os.path.islink(tmp_path / "out" / f) for f in files), files
    assert not (root / "cats" / "passwd.png").exists()
    assert (root / "evil" / "c.png").is_file() and not any(outside.iterdir())
    assert sorted(skipped) == [("set/cats/passwd.png", "a symbolic link (links in uploaded zips are never followed)"),
                               ("set/evil", "a symbolic link (links in uploaded zips are never followed)")]


def test_non_image_members_are_skipped_with_a_reason_and_never_written(tmp_path):
    from logoapp.uploads import extract_zip
    z = make_zip(tmp_path / "mixed.zip", [
        ("cats/a.png", png()), ("dogs/b.jpg", png(1)),
        ("cats/notes.txt", b"hello"), ("dogs/run.exe", b"MZ" + bytes(5000)), ("cats/logo.svg", b"<svg/>"),
        ("dogs/README", b"x"), ("__MACOSX/cats/._a.png", b"x"), ("cats/.DS_Store", b"x"),
    ])
    skipped = []
    root = extract_zip(z, tmp_path / "out", skipped)
    assert tree(root) == {"cats", "cats/a.png", "dogs", "dogs/b.jpg"}
    assert dict(skipped) == {"cats/notes.txt": "not an image file type (.txt)",
                             "dogs/run.exe": "not an image file type (.exe)",
                             "cats/logo.svg": "an SVG (vector) image; convert it to PNG first",
                             "dogs/README": "not an image file type (no extension)"}


# ============================================================================================= model zips: unit

def test_model_zip_takes_only_its_two_files(tmp_path):
    """Extra members of a model zip (traversal, absolute, links) are never written anywhere."""
    from logoapp import store
    src = pixel_model(tmp_path / "src" / "m")
    members = [(n, (src / n).read_bytes()) for n in ("model.json", store.read_meta(src)["weights"])]
    z = make_zip(tmp_path / "m.zip", members + [("../pwned.png", b"x"), (OUTSIDE, b"x"), ("a/../../pwned2.png", b"x"),
                                                  ("link", "/etc/passwd", "symlink")])
    before = tree(tmp_path)
    dest = store.import_zip(z, tmp_path / "models")
    assert sorted(p.name for p in dest.iterdir()) == sorted(n for n, _ in members)
    assert {p for p in tree(tmp_path) - before if not p.startswith("models")} == set()
    assert not Path(OUTSIDE).exists()


# ============================================================================================= main(): exposure

class FakeApp:
    local_url, share_url = "http://127.0.0.1:1/", None

    def queue(self, **kw):
        return self

    def launch(self, **kw):
        self.launched = kw

    def block_thread(self):
        pass


@pytest.mark.parametrize("argv, folders, cap", [
    (["--host", "127.0.0.1"], True, "2gb"),
    (["--host", "0.0.0.0"], False, "2gb"),                  # the network (and a Space) may not read server folders
    (["--host", "127.0.0.1", "--share"], False, "2gb"),     # nor a public share link
    (["--host", "0.0.0.0", "--allow-folders"], True, "2gb"),
    (["--host", "0.0.0.0", "--demo", "m"], False, "64mb"),
    (["--host", "0.0.0.0", "--max-file-size", "5mb"], False, "5mb"),
])
def test_main_exposure_settings(monkeypatch, capsys, argv, folders, cap):
    """Folder loading by path only on localhost (or --allow-folders); upload caps; login; no monitoring page."""
    import logoapp.ui.server as ui
    for k in ("LOGOAPP_DEMO", "LOGOAPP_DATA", "LOGOAPP_MAX_FILE_SIZE", "SPACE_ID"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("LOGOAPP_AUTH", "ada:lovelace")
    seen, app = {}, FakeApp()
    monkeypatch.setattr(ui, "build_app", lambda *a, **k: (seen.update(k), app)[1])
    monkeypatch.setattr(ui, "share_possible", lambda *a, **k: False)  # no network: --share must fall back
    ui.main(argv)
    assert seen["allow_folders"] is folders
    assert app.launched["max_file_size"] == cap
    assert app.launched["auth"] == ("ada", "lovelace")
    assert app.launched["enable_monitoring"] is False
    assert app.launched["share"] is False


# ============================================================================================= live full app

@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The full app on 127.0.0.1 with its temp folder (TMPDIR) and models folder inside this module's tmp dir."""
    base = tmp_path_factory.mktemp("full")
    tmp, models = base / "tmp", base / "models"
    tmp.mkdir()
    pixel_model(models / "pixel-seed")
    env = {"TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(tmp / "gradio")}
    with app_server(models=models, env=env) as s:
        port = int(s.url.rstrip("/").rsplit(":", 1)[1])
        yield SimpleNamespace(url=s.url, port=port, base=base, tmp=tmp, models=models, server=s)


def pets_zip(path: Path, junk: bool = False) -> Path:
    members = [(f"pets/{c}/{c}_{i}.png", png(k, i)) for k, c in enumerate(("cats", "dogs")) for i in range(6)]
    if junk:
        members += [("pets/notes.txt", b"hello"), ("pets/cats/link.png", "/etc/passwd", "symlink"),
                    ("__MACOSX/pets/._cats", b"x")]
    return make_zip(path, members)


def load_zip(c, zpath: Path):
    from gradio_client import handle_file
    return c.predict("zip upload", "", handle_file(str(zpath)), 32, 0.2, 42, api_name="/load_data")


@pytest.mark.slow
def test_dataset_zip_upload_over_http(full, tmp_path):
    """A traversal zip is refused and leaves nothing behind; a zip with junk loads, reporting what it skipped,
    and leaves no copy of the uploader's images in the shared decoded-image cache."""
    c = client(full.url)
    bad = make_zip(tmp_path / "upload.zip", [("pets/cats/a.png", png()), ("pets/dogs/b.png", png(1)),
                                             ("pets/../../pwned.png", png()), ("a/../../../pwned.png", png())])
    msg = load_zip(c, bad)[-1]  # refused: one line in the load message (the last output), the data before kept
    assert "unsafe path in zip" in msg and "pets/../../pwned.png" in msg and "is still loaded" in msg, msg
    assert not [p for p in tree(full.base) if "pwned" in p], "a traversal member was written"
    assert not list(full.tmp.glob("logoapp-zip-*")), "a refused upload's folder was left behind"

    cache = shared_cache()
    cached = tree(cache)
    out = load_zip(c, pets_zip(tmp_path / "pets.zip", junk=True))
    assert "12 images" in out[0] and "2 classes" in out[0], out[0]
    left_out = {row[0]: row[1] for row in out[3]["data"]}
    assert left_out.get("(zip) pets/notes.txt") == "not an image file type (.txt)", left_out
    assert "symbolic link" in left_out.get("(zip) pets/cats/link.png", ""), left_out
    assert tree(cache) == cached, f"an upload was cached on disk: {sorted(tree(cache) - cached)}"
    c.close()


@pytest.mark.slow
def test_file_routes_serve_nothing_outside_gradio_cache(full, tmp_path):
    """/etc/passwd, the app's source, model weights, the image cache and other users' unpacked uploads cannot be
    read through Gradio's file routes, whatever the spelling; nor fed to /predict as a server path."""
    c = client(full.url)
    load_zip(c, pets_zip(tmp_path / "pets.zip"))          # a session with an unpacked upload on the server
    unpacked = sorted(full.tmp.glob("logoapp-zip-*/**/*.png"))
    assert unpacked, "the upload should be unpacked under the server's TMPDIR while its session lives"
    weights = sorted(full.models.glob("*/weights-*.pt"))
    cache_file = next(p for p in sorted(shared_cache().rglob("*")) if p.is_file())
    secrets = [Path("/etc/passwd"), ROOT / "logoapp" / "ui" / "app.py", ROOT / "app.py", weights[0],
               full.models / "pixel-seed" / "model.json", cache_file, unpacked[0]]
    gradio_dir = full.tmp / "gradio"
    for f in secrets:
        rel = os.path.relpath(f, ROOT)
        up = "../" * 12 + str(f).lstrip("/")
        paths = [f"/gradio_api/file={f}", f"/gradio_api/file={quote(str(f), safe='')}", f"/file={f}",
                 f"/gradio_api/file={rel}", f"/gradio_api/file/{rel}", f"/gradio_api/file={up}",
                 f"/gradio_api/file={up.replace('/', '%2f')}", f"/gradio_api/file={up.replace('../', '%2e%2e/')}",
                 f"/gradio_api/file={up.replace('../', '..%252f')}",
                 f"/gradio_api/file={gradio_dir}/{up}", f"/gradio_api/file={gradio_dir}/..%2f..%2f{str(f).lstrip('/')}",
                 f"/static/{up.replace('/', '%2f')}", f"/assets/{up.replace('/', '%2f')}", f"/static/{up}"]
        head = f.read_bytes()[:48]
        for p in paths:
            status, body = raw_get(full.port, p)
            assert status != 200 and head not in body, f"{p} -> {status} {body[:80]!r}"

    # a FileData naming a server path (not an upload) is refused, so /predict cannot be pointed at server files
    import httpx
    with httpx.Client(base_url=full.url, timeout=30) as h:
        for path in (str(EXAMPLE), str(unpacked[0])):
            status, text = _call(h, "predict", [{"path": path, "meta": {"_type": "gradio.FileData"}}, "@baseline-l1"])
            assert status == 400 and "not uploaded to this app" in text, (status, text[:300])  # refused at the door
    c.close()


@pytest.mark.slow
def test_monitoring_page_is_off(full):
    """Gradio's /monitoring/summary would list every event every visitor ran; logoapp switches it off."""
    for path in ("/monitoring/summary", "/monitoring"):
        status, body = raw_get(full.port, path)
        assert status in (403, 404), (path, status, body[:200])


@pytest.mark.slow
def test_model_zip_import_refusals_over_http(full, tmp_path):
    """Through the Predict tab's import: a pickle payload is refused and never runs; junk zips are refused early."""
    import torch
    from gradio_client import handle_file
    sanity = tmp_path / "sanity"                                  # the payload is live: careless loading runs it
    with zipfile.ZipFile(pickle_model_zip(tmp_path / "s.zip", sanity)) as z:
        blob = z.read(next(n for n in z.namelist() if n.endswith(".pt")))
    torch.load(io.BytesIO(blob), weights_only=False)
    assert sanity.exists()

    c = client(full.url)
    before = sorted(p.name for p in full.models.iterdir())
    marker = tmp_path / "pwned"
    evil = pickle_model_zip(tmp_path / "model.zip", marker)
    msg = app_error(lambda: c.predict(handle_file(str(evil)), api_name="/import_model"))
    assert "cannot be loaded safely" in msg, msg
    time.sleep(0.5)
    assert not marker.exists(), "the pickle payload ran on the server"

    many = make_zip(tmp_path / "many.zip", [(f"x{i}.txt", b"x") for i in range(40)])
    msg = app_error(lambda: c.predict(handle_file(str(many)), api_name="/import_model"))
    assert "more than 16 files" in msg, msg
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all")
    msg = app_error(lambda: c.predict(handle_file(str(tmp_path / "junk.zip")), api_name="/import_model"))
    assert "Not a model zip" in msg, msg
    assert sorted(p.name for p in full.models.iterdir()) == before, "a refused zip added a model"
    from logoapp import store
    good = store.export_zip(pixel_model(tmp_path / "pixel-good"))  # and a real export is taken in
    assert "Imported **pixel-good**" in c.predict(handle_file(str(good)), api_name="/import_model")
    assert "pixel-good" in [p.name for p in full.models.iterdir()]
    c.close()


# ============================================================================================= live demo with login

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`--demo MODEL_DIR` with a login (env LOGOAPP_AUTH) and a 1 MB upload cap (env LOGOAPP_MAX_FILE_SIZE)."""
    folder = pixel_model(tmp_path_factory.mktemp("demo") / "pixel-demo")
    env = {"LOGOAPP_AUTH": "ada:lovelace", "LOGOAPP_MAX_FILE_SIZE": "1mb"}
    with app_server("--demo", str(folder), env=env) as s:
        yield SimpleNamespace(url=s.url, port=int(s.url.rstrip("/").rsplit(":", 1)[1]), folder=folder, server=s)


def login(url: str, user="ada", pw="lovelace"):
    import httpx
    h = httpx.Client(base_url=url, timeout=30)
    r = h.post("/login", data={"username": user, "password": pw})
    return h, r.status_code


@pytest.mark.slow
def test_auth_guards_every_route(demo):
    """Without the login: no page config, API info, upload, call, queue, file or monitoring access."""
    import httpx
    with httpx.Client(base_url=demo.url, timeout=30) as h:
        cached = h.get("/")  # the login page itself is public
        assert cached.status_code == 200
        for method, path, kw in [
            ("GET", "/config", {}), ("GET", "/gradio_api/info", {}), ("GET", "/gradio_api/openapi.json", {}),
            ("POST", "/gradio_api/upload", {"files": {"files": ("a.png", EXAMPLE.read_bytes())}}),
            ("POST", "/gradio_api/call/predict", {"json": {"data": [None]}}),
            ("POST", "/gradio_api/queue/join", {"json": {"data": [None], "fn_index": 1, "session_hash": "x"}}),
            ("GET", f"/gradio_api/file={demo.folder / 'model.json'}", {}), ("GET", "/monitoring/summary", {}),
        ]:
            r = h.request(method, path, **kw)
            assert r.status_code in (401, 403), (path, r.status_code, r.text[:200])
    h, status = login(demo.url, pw="wrong")
    assert status in (400, 401) and h.get("/config").status_code in (401, 403)
    h.close()
    h, status = login(demo.url)
    assert status == 200 and h.get("/config").status_code == 200
    h.close()


@pytest.mark.slow
def test_demo_serves_prediction_only(demo):
    """The page config holds no Data/Train/Evaluate tabs and no server paths; every endpoint but /predict fails."""
    from gradio_client import handle_file
    h, _ = login(demo.url)
    r = h.get("/config")
    cfg = r.json()
    public = {d.get("api_name") for d in cfg["dependencies"] if d.get("api_visibility", "public") != "private"}
    assert public == {"predict"}, public
    ids = {c.get("props", {}).get("elem_id") for c in cfg["components"]} - {None}
    assert not {i for i in ids if i.startswith("tab")}, ids
    assert not {c.get("type") for c in cfg["components"]} & {"tabs", "tabitem", "file", "textbox"}
    assert str(demo.folder) not in r.text and str(demo.folder.parent) not in r.text, "server paths in the page"
    for name in ("train", "load_data", "import_model", "export_model", "evaluate", "lr_find", "predict_many"):
        resp = h.post(f"/gradio_api/call/{name}", json={"data": []}, headers={"Connection": "close"})  # 500s reset it
        assert resp.status_code != 200, (name, resp.status_code)
    h.close()
    c = client(demo.url, auth=("ada", "lovelace"))
    for name in ("/train", "/load_data", "/import_model"):
        with pytest.raises(Exception):
            c.predict(api_name=name)
    out = c.predict(handle_file(str(EXAMPLE)), api_name="/predict")
    assert out["label"] in {"ashford-athletic", "millbrook-city"}, out
    c.close()


@pytest.mark.slow
def test_upload_cap_is_enforced(demo):
    """An upload above --max-file-size (here 1 MB) is refused by the server; a small one is accepted."""
    h, _ = login(demo.url)
    big = h.post("/gradio_api/upload", files={"files": ("big.png", os.urandom(2 * 2**20))})
    assert big.status_code == 413, (big.status_code, big.text[:200])
    small = h.post("/gradio_api/upload", files={"files": ("small.png", EXAMPLE.read_bytes())})
    assert small.status_code == 200, small.text[:200]
    h.close()


# ============================================================================== attacks on the live server

def _call(h, name: str, data: list, timeout: float = 20):
    """POST /gradio_api/call/NAME; returns (status, text of the result events or of the refusal)."""
    r = h.post(f"/gradio_api/call/{name}", json={"data": data}, timeout=timeout)
    if r.status_code != 200:
        return r.status_code, r.text
    return 200, h.get(f"/gradio_api/call/{name}/{r.json()['event_id']}", timeout=timeout).text


@pytest.mark.slow
def test_requests_cannot_name_server_files(full, tmp_path):
    """A file value without Gradio's 'meta' mark used to reach logoapp, which opened it: /etc/passwd was 'a text file',
    a named pipe hung a worker. Every handler that takes a file refuses anything but an upload, in every route."""
    import httpx
    fifo = full.tmp / "pipe.png"
    os.mkfifo(fifo)
    cases = [("predict", lambda p: [{"path": p}, "@baseline-l1"]),
             ("predict_many", lambda p: [[{"path": p}], "@baseline-l1"]),
             ("load_data", lambda p: ["zip upload", "", {"path": p}, 32, 0.2, 42]),
             ("import_model", lambda p: [{"path": p}])]
    with httpx.Client(base_url=full.url, timeout=30) as h:
        for name, data in cases:
            for p in ("/etc/passwd", str(EXAMPLE), str(fifo), "/nonexistent/x.png"):
                t0 = time.monotonic()
                status, text = _call(h, name, data(p))
                assert status == 400 and "not uploaded to this app" in text, (name, p, status, text[:300])
                assert "text file" not in text and "No such file" not in text, text
                assert time.monotonic() - t0 < 10, f"{name} {p} took {time.monotonic() - t0:.0f} s"
        r = h.post("/gradio_api/queue/join", json={"data": [{"path": "/etc/passwd"}, "@baseline-l1"], "fn_index": 0,
                                                   "session_hash": "attacker"})
        assert r.status_code == 400, r.text[:200]
    c = client(full.url)  # an honest upload still works
    from gradio_client import handle_file
    assert c.predict(handle_file(str(EXAMPLE)), "@baseline-l1", api_name="/predict")["label"]
    c.close()


@pytest.mark.slow
def test_no_data_urls_and_bodies_are_capped(full):
    """A data: URL made Gradio decode a 12000x12000 PNG before logoapp's checks; JSON bodies had no cap."""
    import base64

    import httpx
    tiny = base64.b64encode(png()).decode()
    with httpx.Client(base_url=full.url, timeout=30) as h:
        status, text = _call(h, "predict", [{"path": "x.png", "url": f"data:image/png;base64,{tiny}",
                                             "meta": {"_type": "gradio.FileData"}}, "@baseline-l1"])
        assert status == 400 and "data: URL" in text, (status, text[:300])
        big = {"data": ["x" * (3 * 2**20), "@baseline-l1"]}
        for path in ("/gradio_api/call/predict", "/gradio_api/queue/join", "/gradio_api/run/predict"):
            r = h.post(path, json=big)
            assert r.status_code in (404, 413), (path, r.status_code)
        assert h.post("/gradio_api/call/predict", json=big).status_code == 413


@pytest.mark.slow
def test_unqueued_routes_are_closed(full):
    """/run/NAME and /api/NAME skipped the queue (5 predictions at once against a limit of 2): closed, with a hint."""
    import httpx
    with httpx.Client(base_url=full.url, timeout=30) as h:
        for path in ("/gradio_api/run/predict", "/run/predict", "/api/predict", "/gradio_api/api/predict"):
            r = h.post(path, json={"data": [None, "@baseline-l1"]})
            assert r.status_code == 404 and "queue" in r.text, (path, r.status_code, r.text[:200])


@pytest.mark.slow
def test_responses_say_nosniff(full):
    import httpx
    with httpx.Client(base_url=full.url, timeout=30) as h:
        up = h.post("/gradio_api/upload", files={"files": ("a.png", EXAMPLE.read_bytes())})
        f = h.get(f"/gradio_api/file={up.json()[0]}")
        assert f.status_code == 200 and f.headers.get("x-content-type-options") == "nosniff"
        assert h.get("/config").headers.get("x-content-type-options") == "nosniff"


@pytest.mark.slow
def test_demo_offers_exactly_predict(demo):
    """load_example answered at /call, /run and /api; unknown names answered 500 with a traceback in the log."""
    h, _ = login(demo.url)
    for path in ("/gradio_api/call/load_example", "/call/load_example", "/gradio_api/run/load_example",
                 "/api/load_example", "/gradio_api/call/no_such_thing", "/gradio_api/run/no_such_thing"):
        r = h.post(path, json={"data": [0]})
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
    assert h.post("/gradio_api/call/predict", json={"data": [None]}).status_code == 200
    h.close()
    time.sleep(0.5)
    assert "Traceback" not in demo.server.output(), demo.server.output()[-2000:]


@pytest.mark.slow
def test_login_page_reveals_nothing(demo):
    """Before login, GET / embedded window.gradio_api_info: every endpoint and the model folder's path."""
    import httpx
    with httpx.Client(base_url=demo.url, timeout=30) as h:
        page = h.get("/").text
    assert "window.gradio_api_info = null;" in page
    assert "predict" not in page.split("window.gradio_api_info")[1][:200]
    assert str(demo.folder) not in page and demo.folder.name not in page
    h, _ = login(demo.url)
    assert "window.gradio_api_info = null;" not in h.get("/").text  # logged in: the page is whole again
    h.close()


@pytest.mark.slow
def test_demo_errors_say_nothing_about_the_server(demo, tmp_path):
    from gradio_client import handle_file
    c = client(demo.url, auth=("ada", "lovelace"))
    for name, data in (("notes.png", b"just some text"), ("broken.png", b"\x89PNG\r\n\x1a\n" + bytes(64)),
                       ("weights.png", b"PK\x03\x04" + bytes(64))):
        (tmp_path / name).write_bytes(data)
        msg = app_error(lambda f=tmp_path / name: c.predict(handle_file(str(f)), api_name="/predict"))
        assert "Cannot use this image" in msg, msg
        for leak in ("0x", "/tmp", str(ROOT), "http", "BytesIO", "Traceback"):
            assert leak not in msg, (name, msg)
    c.close()


@pytest.mark.slow
def test_wrong_logins_are_slowed_down(demo):
    """100 wrong logins took 0.36 s. After a few, each address waits, longer with each wrong try; the right login
    works again once the wait is over. (Last in this module: it leaves 127.0.0.1 with a short wait.)"""
    import httpx
    codes = []
    with httpx.Client(base_url=demo.url, timeout=30) as h:
        for _ in range(30):
            codes.append(h.post("/login", data={"username": "ada", "password": "nope"}).status_code)
        assert codes[:5] == [400] * 5, codes
        assert codes.count(429) >= 20, codes
        r = h.post("/login", data={"username": "ada", "password": "lovelace"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        time.sleep(int(r.headers["retry-after"]) + 0.5)
        assert h.post("/login", data={"username": "ada", "password": "lovelace"}).status_code == 200
