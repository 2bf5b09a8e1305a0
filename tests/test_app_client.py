"""The app over HTTP, as a script would use it: gradio_client against a live local server."""
from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from app_server import ROOT, app_server, shared_cache



gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

EXAMPLE = ROOT / "assets" / "millbrook-city.png"   # the pixel baseline gets this one right (checked when it was made)


def endpoints(client: Client) -> set[str]:
    return set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def server(models_dir):
    with app_server(models=models_dir) as s:
        yield s


@pytest.mark.slow
def test_help_documents_every_flag():
    out = subprocess.run([sys.executable, str(ROOT / "app.py"), "--help"], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for flag in ("--data", "--host", "--port", "--models", "--share", "--demo", "--auth", "LOGOAPP_AUTH"):
        assert flag in out.stdout


@pytest.mark.slow
def test_predict_endpoint_gives_the_right_class(server):
    client = Client(server.url, verbose=False, analytics_enabled=False)
    assert {"/predict", "/train", "/stop", "/evaluate"} <= endpoints(client)
    out = client.predict(handle_file(str(EXAMPLE)), api_name="/predict")
    assert out["label"] == "millbrook-city", out
    probs = {c["label"]: c["confidence"] for c in out["confidences"]}
    assert abs(sum(probs.values()) - 1) < 0.05 or len(probs) == 5  # Label shows the top classes only


@pytest.mark.slow
def test_training_streams_updates_and_saves_a_model(server, models_dir):
    client = Client(server.url, verbose=False, analytics_enabled=False)
    job = client.submit("cnn", 1, 0.005, 64, 32, True, 0, api_name="/train")
    seen = [out for out in job]          # iterating waits for each streamed update
    outputs = job.outputs()
    assert len(outputs) >= 4, f"expected streamed updates, got {len(outputs)}"
    bars = [o[0] for o in outputs if isinstance(o[0], str) and "la-progress" in o[0]]
    assert len(set(bars)) >= 3, "the progress bar should change while training"
    assert any("epoch 1/1" in b for b in bars)
    result = outputs[-1][4]              # the last update repeats the result line for API callers
    assert "finished" in result and "validation accuracy" in result, result
    assert seen
    saved = [p for p in models_dir.iterdir() if (p / "model.json").is_file()]
    assert len(saved) == 1 and saved[0].name.startswith("cnn-")
    # the new model can be picked by name for prediction
    out = client.predict(handle_file(str(EXAMPLE)), saved[0].name, api_name="/predict")
    assert out["label"] in {c["label"] for c in out["confidences"]}


@pytest.mark.slow
def test_demo_mode_exposes_predict_only_and_auth_is_enforced(tmp_path, monkeypatch):
    from logoapp import data, ideal, store
    monkeypatch.setenv("LOGOAPP_CACHE", str(shared_cache()))
    ds = data.resolve(None)
    model = ideal.fit(ds, "l1")
    folder = store.save(model, {"arch": "pixel", "distance": "l1", "vocab": ds.vocab, "size": ds.size,
                                "data_size": ds.size, "channels": ds.channels, "metrics": {"accuracy": 0.68}},
                        tmp_path / "pixel-demo")
    with app_server("--demo", str(folder), "--share", env={"LOGOAPP_AUTH": "ada:lovelace"}) as s:
        with pytest.raises(urllib.error.HTTPError) as e:          # no login: the config and API are refused
            urllib.request.urlopen(s.url + "config", timeout=10)
        assert e.value.code in (401, 403)
        with pytest.raises(Exception):
            Client(s.url, verbose=False, analytics_enabled=False)
        with pytest.raises(Exception):
            Client(s.url, auth=("ada", "wrong"), verbose=False, analytics_enabled=False)
        client = Client(s.url, auth=("ada", "lovelace"), verbose=False, analytics_enabled=False)
        api = client.view_api(print_info=False, return_format="dict")
        assert set(api["named_endpoints"]) == {"/predict"}, api["named_endpoints"].keys()
        assert not api["unnamed_endpoints"]
        out = client.predict(handle_file(str(EXAMPLE)), api_name="/predict")
        assert out["label"] == "millbrook-city"
        log = s.output()
        # offline, --share must say so in one line and keep serving locally (online it prints the public URL)
        assert "could not create a public link" in log or "public URL" in log, log[-2000:]
        assert "Traceback" not in log


@pytest.mark.parametrize("member", ["../evil.png", "/etc/evil.png", "a/../../evil.png", "C:/evil.png"])
def test_dataset_zip_refuses_paths_outside_its_folder(tmp_path, member):
    import zipfile

    from logoapp.data import DataError
    from logoapp.uploads import extract_zip
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("ok/a.png", b"x")
        f.writestr(member, b"x")
    with pytest.raises(DataError, match="unsafe path"):
        extract_zip(z, tmp_path / "out")
    assert not (tmp_path / "evil.png").exists()


def test_dataset_zip_unpacks_to_the_class_folders(tmp_path, monkeypatch):
    import zipfile

    import logoapp.uploads as uploads
    z = tmp_path / "set.zip"
    with zipfile.ZipFile(z, "w") as f:
        for cls in ("cats", "dogs"):
            f.writestr(f"pets/{cls}/1.png", b"\x89PNG\r\n\x1a\n")  # an image's first bytes: members are sniffed
        f.writestr("__MACOSX/pets/._cats", b"x")
    root = uploads.extract_zip(z, tmp_path / "out")
    assert root.name == "pets" and sorted(p.name for p in root.iterdir()) == ["cats", "dogs"]
    monkeypatch.setattr(uploads, "MAX_DATASET_ZIP_BYTES", 10)
    with zipfile.ZipFile(tmp_path / "big.zip", "w") as f:
        f.writestr("a/1.png", b"x" * 100)
    with pytest.raises(uploads.DataError, match="more than"):
        uploads.extract_zip(tmp_path / "big.zip", tmp_path / "out2")


@pytest.mark.slow
def test_loading_the_start_up_set_again_shares_it(tmp_path, monkeypatch):
    """The Data tab's Load with the start-up request (size 0, or the stored size) reuses the start-up dataset;
    another size opens a copy of the session's own."""
    from app_server import shared_cache

    from logoapp.ui import Session
    from logoapp.ui.app import start
    from logoapp.ui.tabs.data import on_load as load
    monkeypatch.setenv("LOGOAPP_CACHE", str(shared_cache()))
    monkeypatch.setenv("LOGOAPP_MODELS", str(tmp_path / "models"))
    s, quiet = Session(start(None, progress=lambda *a: None)), (lambda *a, **k: None)
    for size in (0, 140):
        load(s, "embedded crests", "", None, size, 0.2, 42, progress=quiet)
        assert s.ctx is None, size  # None: the session uses the shared start-up set
    load(s, "embedded crests", "", None, 64, 0.2, 42, progress=quiet)
    assert s.ctx is not None and s.ctx.ds.size == 64


@pytest.mark.slow
def test_app_builds_for_a_small_rgb_folder(tmp_path, monkeypatch):
    """Few images, no alpha, odd sizes: every view is drawn without error and the API is the full one."""
    from PIL import Image

    from logoapp.ui import build_app
    for k, colour in enumerate([(200, 30, 30), (30, 60, 200), (40, 160, 60)]):
        d = tmp_path / "photos" / f"kind{k}"
        d.mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (40 + i, 30), tuple(min(255, c + 9 * i) for c in colour)).save(d / f"{i}.jpg")
    (tmp_path / "photos" / "kind0" / "broken.png").write_bytes(b"not an image")
    monkeypatch.setenv("LOGOAPP_MODELS", str(tmp_path / "models"))
    app = build_app(tmp_path / "photos", size=32, progress=lambda *a: None)
    names = {d.get("api_name") for d in app.config["dependencies"]}
    assert {"predict", "train", "stop", "evaluate", "load_data", "lr_find"} <= names
