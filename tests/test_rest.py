"""POST /api/classify and the demo's /predict answer: {"label", "probs", "unknown"}, under the login, the upload
cap and the demo's rules (a live predict-only demo with a login on 127.0.0.1, shared by the `slow` tests)."""
from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace

import pytest

from app_server import app_server
from conftest import make_image

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="module")
def demo(trained, tmp_path_factory):
    """`--demo` of a calibrated linear model (with its unknown-input test), a login and a 1 MB upload cap."""
    folder, data = trained
    img = tmp_path_factory.mktemp("img") / "crest.png"
    make_image(1, 5, 48).save(img)
    env = {"LOGOAPP_AUTH": "ada:lovelace", "LOGOAPP_MAX_FILE_SIZE": "1mb"}
    with app_server("--demo", str(folder), env=env) as s:
        yield SimpleNamespace(url=s.url, folder=folder, img=img, server=s)


def expected(folder: Path, img) -> dict:
    from logoapp.predict import Predictor
    from logoapp.ui.rest import answer
    return answer(Predictor.load(folder), str(img))


def login(url: str):
    import httpx
    h = httpx.Client(base_url=url, timeout=30)
    assert h.post("/login", data={"username": "ada", "password": "lovelace"}).status_code == 200
    return h


@pytest.mark.slow
def test_classify_needs_the_login(demo):
    import httpx
    body = demo.img.read_bytes()
    with httpx.Client(base_url=demo.url, timeout=30) as h:
        r = h.post("/api/classify", content=body, headers={"content-type": "image/png"})
        assert r.status_code == 401 and "log in" in r.json()["error"], r.text
        assert h.post("/api/classify", files={"file": ("a.png", body)}).status_code == 401
    with closing(login(demo.url)) as h:
        want = expected(demo.folder, demo.img)
        raw = h.post("/api/classify", content=body, headers={"content-type": "image/png"})
        form = h.post("/api/classify", files={"file": ("a.png", body, "image/png")})
        for r in (raw, form):
            assert r.status_code == 200, r.text
            got = r.json()
            assert set(got) == {"label", "probs", "unknown"} and got["label"] == want["label"], got
            assert got["unknown"] is want["unknown"] and list(got["probs"]) == list(want["probs"])
            assert r.headers["x-content-type-options"] == "nosniff"
        assert h.get("/api/classify").status_code == 405


@pytest.mark.slow
def test_classify_is_capped_and_says_nothing_about_the_server(demo):
    """Bodies above the upload cap (1 MB here, plus multipart slack) are refused, declared or streamed; a bad image
    is one plain line, with no path, address or traceback."""
    with closing(login(demo.url)) as h:
        big = os.urandom(3 * 2**20)
        assert h.post("/api/classify", content=big, headers={"content-type": "image/png"}).status_code == 413
        assert h.post("/api/classify", files={"file": ("big.png", big)}).status_code == 413

        def chunks():  # no content-length: the cap counts what arrives
            for _ in range(6):
                yield bytes(2**19)
        assert h.post("/api/classify", content=chunks()).status_code == 413
        for data in (b"just some text", b"\x89PNG\r\n\x1a\n" + bytes(64), b""):
            r = h.post("/api/classify", content=data, headers={"content-type": "application/octet-stream"})
            assert r.status_code == 400, r.text
            msg = r.json()["error"]
            for leak in ("/tmp", str(demo.folder), "Traceback", "0x", "BytesIO"):
                assert leak not in msg, msg
        assert h.post("/api/classify", content=demo.img.read_bytes()).status_code == 200
    assert "Traceback" not in demo.server.output(), demo.server.output()[-2000:]


@pytest.mark.slow
def test_demo_predict_answers_label_probs_and_unknown(demo):
    """The demo's one endpoint, /predict, answers as /api/classify does; it stays the only API endpoint."""
    from gradio_client import Client, handle_file
    c = Client(demo.url, auth=("ada", "lovelace"), verbose=False, analytics_enabled=False, download_files=False)
    out = c.predict(handle_file(str(demo.img)), api_name="/predict")
    want = expected(demo.folder, demo.img)
    assert out["label"] == want["label"] and out["unknown"] is want["unknown"], (out, want)
    assert out["probs"] == pytest.approx(want["probs"], abs=1e-6)
    c.close()
    with closing(login(demo.url)) as h:
        cfg = h.get("/config").json()
    public = {d.get("api_name") for d in cfg["dependencies"] if d.get("api_visibility", "public") != "private"}
    assert public == {"predict"}, public


def test_full_app_classifier_picks_a_model(tmp_path):
    """The full app's route uses ?model=NAME, else the newest saved model; an unknown name is a LookupError."""
    import torch

    from logoapp import store
    from logoapp.ideal import PixelSimilarity
    from logoapp.ui.registry import Registry
    from logoapp.ui.rest import for_app
    store.save(PixelSimilarity(torch.rand(2, 3, 8, 8), "l1"), {"arch": "pixel", "distance": "l1", "vocab": ["a", "b"],
                                                               "size": 8, "data_size": 8, "channels": 3},
               tmp_path / "px")
    img = tmp_path / "x.png"
    make_image(0, 0, 20).save(img)
    classify = for_app(Registry(tmp_path), None)
    r = classify(img.read_bytes())
    assert r["label"] in ("a", "b") and r["unknown"] is False and set(r["probs"]) == {"a", "b"}
    assert classify(img.read_bytes(), "px") == r
    with pytest.raises(LookupError):
        classify(img.read_bytes(), "nope")
