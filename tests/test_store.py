"""Model folders: round trips, every kind of refusal (pickle payloads included), atomic saves under kill -9, zips."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from logoapp import models as M
from logoapp import store
from logoapp.ideal import PixelSimilarity
from logoapp.store import ModelError

REPO = Path(__file__).resolve().parents[1]


def build(arch="linear", n=2, channels=4, size=8, seed=0):
    """A fresh (untrained) model and the metadata store needs for it."""
    torch.manual_seed(seed)
    model, info = M.build(arch, channels, n, size, 16 if arch == "cnn" else None, [0.4] * channels, [0.3] * channels,
                          M.default_aug(channels, False))
    meta = {"arch": arch, "vocab": [f"class{k}" for k in range(n)], "size": info["size"], "data_size": size,
            "channels": channels, "mean": [0.4] * channels, "std": [0.3] * channels,
            "aug": M.default_aug(channels, False)}
    return model.eval(), meta


def batch(meta, n=5, seed=0):
    s, c = meta["data_size"], meta["channels"]
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, s, s, c), dtype=np.uint8))


def saved(tmp_path, arch="linear", name="m", **kw) -> Path:
    model, meta = build(arch, **kw)
    return store.save(model, meta, tmp_path / name)


def set_json(folder: Path, **changes) -> None:
    m = json.loads((folder / "model.json").read_text())
    m.update(changes)
    (folder / "model.json").write_text(json.dumps(m))


def put_weights(folder: Path, data: bytes) -> None:
    """Replace the weights with data, and make model.json's name and checksum agree with it."""
    m = json.loads((folder / "model.json").read_text())
    (folder / m["weights"]).unlink()
    digest = hashlib.sha256(data).hexdigest()
    name = f"weights-{digest[:16]}.pt"
    (folder / name).write_bytes(data)
    set_json(folder, weights=name, sha256=digest)


def refused(folder, *words) -> str:
    with pytest.raises(ModelError) as e:
        store.load(folder)
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    for w in words:
        assert w in msg, msg
    return msg


class Payload:
    """Unpickling this runs a shell command: what a hostile model file would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("arch", ["linear", "mlp", "cnn"])
def test_save_load_identical_logits(tmp_path, arch):
    model, meta = build(arch, n=3)
    with torch.no_grad():  # make the weights something other than a fresh init
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    folder = store.save(model, {**meta, "metrics": {"accuracy": 0.5}}, tmp_path / "m")
    loaded, m = store.load(folder)
    x = batch(meta)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training
    assert m["vocab"] == meta["vocab"] and m["arch"] == arch and m["metrics"]["accuracy"] == 0.5
    assert m["format"] == store.FORMAT and set(m["versions"]) >= {"torch", "fastai", "logoapp", "python"}
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", m["weights"]]
    assert m["sha256"] == hashlib.sha256((folder / m["weights"]).read_bytes()).hexdigest()


def test_pixel_model_round_trip(tmp_path):
    means = torch.rand(3, 4, 8, 8)
    model = PixelSimilarity(means, "rmse")
    meta = {"arch": "pixel", "distance": "rmse", "vocab": ["a", "b", "c"], "size": 8, "data_size": 8, "channels": 4}
    loaded, m = store.load(store.save(model, meta, tmp_path / "px"))
    x = batch(meta)
    assert torch.equal(model(x), loaded(x)) and loaded.kind == "rmse"


def test_resave_replaces_weights_and_leaves_no_litter(tmp_path):
    a, meta = build(seed=0)
    b, _ = build(seed=1)
    folder = store.save(a, meta, tmp_path / "m")
    store.save(b, meta, folder)
    loaded, m = store.load(folder)
    x = batch(meta)
    assert torch.equal(loaded(x), b(x))
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", m["weights"]]
    store.save(b, meta, folder)  # the same weights again: same file name, still loadable
    assert torch.equal(store.load(folder)[0](x), b(x))


def test_save_sweeps_what_killed_saves_left_behind(tmp_path):
    a, meta = build(seed=0)
    folder = store.save(a, meta, tmp_path / "m")
    old = [folder / ".weights.123.456.pending", folder / ".model.json.abc123.tmp"]
    young = folder / ".weights.789.456.pending"  # another save may still be writing this one
    for p in old + [young]:
        p.write_bytes(b"partial")
    for p in old:
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    store.save(a, meta, folder)
    assert not any(p.exists() for p in old) and young.exists()


# ---------------------------------------------------------------- refusals

def test_missing_folder(tmp_path):
    refused(tmp_path / "nope", "no such model folder")


def test_missing_model_json(tmp_path):
    folder = saved(tmp_path)
    (folder / "model.json").unlink()
    refused(folder, "no model.json")


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", '"a string"', "\udcff".encode("utf-8", "surrogatepass")])
def test_corrupt_json(tmp_path, text):
    folder = saved(tmp_path)
    (folder / "model.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    refused(folder, "model.json")


def test_json_missing_field(tmp_path):
    folder = saved(tmp_path)
    m = json.loads((folder / "model.json").read_text())
    del m["vocab"]
    (folder / "model.json").write_text(json.dumps(m))
    refused(folder, "lacks vocab")


@pytest.mark.parametrize("changes, words", [
    (dict(format=99), "newer logoapp"),
    (dict(vocab=["only"]), "vocab"),
    (dict(vocab="ab"), "vocab"),
    (dict(channels=2), "channels"),
    (dict(size=0), "sizes"),
    (dict(data_size=10**6), "sizes"),
    (dict(weights="../../etc/passwd"), "invalid weights file"),
    (dict(weights="weights-0123456789abcdef.pt"), "missing"),
    (dict(arch="transformer"), "unknown architecture"),
    (dict(arch=["linear"]), ""),
    (dict(aug="yes"), ""),
    (dict(aug={"evil": 1}), ""),
    (dict(mean="abc"), ""),
    (dict(format="2"), ""),
    (dict(size=16.5), "sizes"),
])
def test_bad_metadata(tmp_path, changes, words):
    folder = saved(tmp_path)
    set_json(folder, **changes)
    refused(folder, words)


def test_truncated_weights(tmp_path):
    folder = saved(tmp_path)
    m = json.loads((folder / "model.json").read_text())
    data = (folder / m["weights"]).read_bytes()
    (folder / m["weights"]).write_bytes(data[:len(data) // 2])
    refused(folder, "checksum")
    put_weights(folder, data[:len(data) // 2])  # checksum agrees: the loader itself must refuse it
    refused(folder, "cannot be loaded safely")
    put_weights(folder, b"")
    refused(folder, "cannot be loaded safely")


def test_changed_weights(tmp_path):
    folder = saved(tmp_path)
    m = json.loads((folder / "model.json").read_text())
    data = bytearray((folder / m["weights"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / m["weights"]).write_bytes(bytes(data))
    refused(folder, "checksum")


def test_wrong_architecture(tmp_path):
    folder = saved(tmp_path, "cnn")
    set_json(folder, arch="mlp")  # the checksum still matches: the shape check has to catch it
    refused(folder, "do not fit", "mlp")


def test_vocab_size_mismatch(tmp_path):
    folder = saved(tmp_path, n=2)
    set_json(folder, vocab=["a", "b", "c"])
    refused(folder, "do not fit", "3 classes")


def test_weights_not_a_tensor_dict(tmp_path):
    import io
    for obj in ([torch.zeros(2)], {"w": 3}, torch.zeros(3)):
        folder = saved(tmp_path, name=f"m{random.random()}")
        b = io.BytesIO()
        torch.save(obj, b)
        put_weights(folder, b.getvalue())
        refused(folder)


def test_payload_is_real(tmp_path):
    """Check the test payload would really run if unpickled carelessly (so the refusals below mean something)."""
    marker = tmp_path / "sanity"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("how", ["torch.save", "pickle", "nested"])
def test_pickle_payload_refused_and_not_run(tmp_path, how):
    import io
    marker = tmp_path / "pwned"
    folder = saved(tmp_path)
    b = io.BytesIO()
    if how == "torch.save":
        torch.save(Payload(marker), b)
    elif how == "nested":
        model, _ = build()
        torch.save({**model.state_dict(), "extra": Payload(marker)}, b)
    else:
        pickle.dump(Payload(marker), b, protocol=2)
    put_weights(folder, b.getvalue())  # the checksum agrees: only safe loading stands in the way
    refused(folder, "cannot be loaded safely")
    assert not marker.exists()


# ---------------------------------------------------------------- atomic save under kill -9

CHILD = textwrap.dedent('''
    """Fork one child per phase; each saves over an existing model and pauses (or loops) at that phase."""
    import io, json, os, sys, time
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    import fastai  # noqa: F401  (store records its version; import before forking)
    from logoapp import models as M, store

    root, meta_path, phases = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
    meta = json.loads(Path(meta_path).read_text())
    nets = []
    for name in ("b.pt", "c.pt"):
        m, _ = M.build(meta["arch"], meta["channels"], len(meta["vocab"]), meta["data_size"], None, meta["mean"],
                       meta["std"], meta["aug"])
        m.load_state_dict(torch.load(root / name, weights_only=True))
        nets.append(m)

    def say(line):
        os.write(1, f"{line}\\n".encode())  # one write per line: forked children share the pipe

    def pause(phase):
        say(f"PAUSE {phase} {os.getpid()}")
        time.sleep(300)

    for phase in phases:
        if os.fork():
            continue
        if phase == "weights-write":     # half the weights bytes written to the temp file
            real_save = torch.save
            def save(obj, f, *a, **k):
                b = io.BytesIO()
                real_save(obj, b, *a, **k)
                f.write(b.getvalue()[:len(b.getvalue()) // 2])
                f.flush()
                pause(phase)
            torch.save = save
        elif phase in ("pending-rename", "weights-rename", "json-rename"):
            real_replace = os.replace
            target = {"pending-rename": ".pending", "json-rename": "model.json"}.get(phase)
            def replace(src, dst):
                name = os.path.basename(str(dst))
                if (target and name.endswith(target)) or (phase == "weights-rename" and name.startswith("weights-")):
                    pause(phase)
                return real_replace(src, dst)
            os.replace = replace
        elif phase == "cleanup":        # new model.json in place, old weights not yet deleted
            real_unlink = Path.unlink
            def unlink(self, missing_ok=False):
                if self.name.startswith("weights-"):
                    pause(phase)
                return real_unlink(self, missing_ok=missing_ok)
            Path.unlink = unlink
        if phase.startswith("loop"):
            say(f"PAUSE {phase} {os.getpid()}")
            i = 0
            while True:
                store.save(nets[i % 2], meta, root / phase)
                i += 1
        store.save(nets[0], meta, root / phase)
        say(f"FINISHED {phase}")
        os._exit(0)
    for _ in phases:
        pid, status = os.wait()
        say(f"EXIT {pid} {os.WIFSIGNALED(status) and os.WTERMSIG(status)}")
''')


@pytest.mark.timeout(120)
def test_kill_minus_9_mid_save_keeps_a_whole_model(tmp_path):
    a, meta = build(seed=0)
    b, _ = build(seed=1)
    c, _ = build(seed=2)
    torch.save(b.state_dict(), tmp_path / "b.pt")
    torch.save(c.state_dict(), tmp_path / "c.pt")
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "child.py").write_text(CHILD)
    phases = ["weights-write", "pending-rename", "weights-rename", "json-rename", "cleanup",
              "loop1", "loop2", "loop3", "loop4"]
    for p in phases:
        store.save(a, meta, tmp_path / p)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), str(tmp_path),
                                 str(tmp_path / "meta.json"), ",".join(phases)], stdout=subprocess.PIPE, stderr=err,
                                text=True, env=env, cwd=tmp_path, start_new_session=True)
    rng = random.Random(0)
    lines, killed = [], 0
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("PAUSE"):
                _, phase, pid = line.split()
                if phase.startswith("loop"):
                    time.sleep(rng.uniform(0.05, 0.4))  # somewhere in the middle of some save
                os.kill(int(pid), signal.SIGKILL)
                killed += 1
            if line.startswith("EXIT"):
                assert line.split()[2] == str(int(signal.SIGKILL)), lines
        proc.wait(30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the fork server and any child still alive after a failure
        except ProcessLookupError:
            pass
        proc.wait()
        proc.stdout.close()
    assert killed == len(phases), (lines, (tmp_path / "err.txt").read_text())
    assert not any(x.startswith("FINISHED") for x in lines)

    x = batch(meta)
    want = {"a": a(x), "b": b(x), "c": c(x)}
    for p in phases:
        model, m = store.load(tmp_path / p)  # whole, and it passes every check
        got = [k for k, v in want.items() if torch.equal(model(x), v)]
        if p == "cleanup":
            assert got == ["b"]
        elif p.startswith("loop"):
            assert len(got) == 1, p
        else:
            assert got == ["a"], p  # killed before model.json moved: still the previous model
        store.save(b, meta, tmp_path / p)  # and the folder takes a new save afterwards
        assert torch.equal(store.load(tmp_path / p)[0](x), want["b"])


# ---------------------------------------------------------------- listing, zips

def test_list_models(tmp_path):
    saved(tmp_path, name="one")
    saved(tmp_path, "mlp", name="two")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.json").write_text("{")
    (tmp_path / "empty").mkdir()
    rows = store.list_models(tmp_path)
    assert sorted(r["name"] for r in rows) == ["one", "two"]
    assert {r["arch"] for r in rows} == {"linear", "mlp"} and all(r["classes"] == 2 for r in rows)
    assert store.list_models(tmp_path / "none") == []


def test_unique_dir_and_safe_name(tmp_path):
    assert store.safe_name("../../etc") == "etc"
    assert store.safe_name("..") == "model" and store.safe_name("a b/c") == "a-b-c"
    (tmp_path / "cnn").mkdir()
    assert store.unique_dir(tmp_path, "cnn") == tmp_path / "cnn-2"


def test_zip_round_trip(tmp_path):
    model, meta = build("mlp", n=3)
    folder = store.save(model, meta, tmp_path / "orig")
    z = store.export_zip(folder, tmp_path / "m.zip")
    models = tmp_path / "models"
    d1 = store.import_zip(z, models)
    d2 = store.import_zip(z, models)
    assert d1 != d2 and d1.parent == d2.parent == models
    x = batch(meta)
    for d in (d1, d2):
        loaded, m = store.load(d)
        assert torch.equal(loaded(x), model(x)) and m["vocab"] == meta["vocab"]
    assert store.export_zip(folder).is_file()


def make_zip(path: Path, members: dict) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def zip_members(folder: Path) -> dict:
    m = json.loads((folder / "model.json").read_text())
    return {"model.json": (folder / "model.json").read_bytes(), m["weights"]: (folder / m["weights"]).read_bytes()}


def outside_files(tmp_path: Path, models: Path) -> set:
    return {str(p) for p in tmp_path.rglob("*") if models not in p.parents and p != models}


def test_import_refuses_zip_without_model_json(tmp_path):
    folder = saved(tmp_path)
    members = zip_members(folder)
    del members["model.json"]
    with pytest.raises(ModelError, match="model.json is missing"):
        store.import_zip(make_zip(tmp_path / "x.zip", members), tmp_path / "models")
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all")
    with pytest.raises(ModelError, match="not a model zip"):
        store.import_zip(tmp_path / "junk.zip", tmp_path / "models")
    m = zip_members(folder)
    with pytest.raises(ModelError, match="lacks its weights"):
        store.import_zip(make_zip(tmp_path / "y.zip", {"model.json": m["model.json"]}), tmp_path / "models")
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_import_refuses_pickle_payload(tmp_path):
    import io
    marker = tmp_path / "pwned"
    folder = saved(tmp_path)
    b = io.BytesIO()
    torch.save(Payload(marker), b)
    put_weights(folder, b.getvalue())
    with pytest.raises(ModelError, match="cannot be loaded safely") as e:
        store.import_zip(make_zip(tmp_path / "evil.zip", zip_members(folder)), tmp_path / "models")
    assert "\n" not in str(e.value)
    assert not marker.exists()
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_import_never_writes_outside_models(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    folder = saved(work)
    members = zip_members(folder)
    members["../evil"] = b"x"
    members["../../evil2"] = b"x"
    members["/tmp/logoapp-evil-abs"] = b"x"
    members["sub/../../evil3"] = b"x"
    m = json.loads(members["model.json"])
    m["name"] = "../../escaped"
    members["model.json"] = json.dumps(m).encode()
    models = work / "models"
    z = make_zip(work / "z.zip", members)
    before = outside_files(tmp_path, models)
    dest = store.import_zip(z, models)
    assert dest.parent == models and ".." not in dest.name
    assert sorted(p.name for p in dest.iterdir()) == sorted(["model.json", m["weights"]])
    assert outside_files(tmp_path, models) == before
    assert not Path("/tmp/logoapp-evil-abs").exists()
    assert not any(p.name.startswith("evil") for p in tmp_path.parent.iterdir())


def test_import_refuses_weights_name_traversal(tmp_path):
    folder = saved(tmp_path)
    members = zip_members(folder)
    m = json.loads(members["model.json"])
    members["../x.pt"] = members.pop(m["weights"])
    m["weights"] = "../x.pt"
    members["model.json"] = json.dumps(m).encode()
    with pytest.raises(ModelError, match="invalid weights file"):
        store.import_zip(make_zip(tmp_path / "t.zip", members), tmp_path / "models")
    assert not (tmp_path / "x.pt").exists()


def test_import_refuses_huge_declared_size(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "MAX_MODEL_ZIP_BYTES", 100)
    folder = saved(tmp_path)
    with pytest.raises(ModelError, match="too large"):
        store.import_zip(store.export_zip(folder, tmp_path / "a.zip"), tmp_path / "models")


def test_export_of_broken_folder_refused(tmp_path):
    folder = saved(tmp_path)
    shutil.rmtree(folder)
    with pytest.raises(ModelError):
        store.export_zip(folder, tmp_path / "x.zip")
