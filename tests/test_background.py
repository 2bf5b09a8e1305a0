"""Transparent inputs are flattened on the background the training images sit on (learned, stored in model.json),
and images are made square by squish, crop or pad, in every path."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from logoapp import store, synth
from logoapp.data import DataError, open_dataset
from logoapp.images import (WHITE, background_of, decode, fit_square, method_of, to_channels,
                            typical_background)
from logoapp.predict import Predictor

N_CLUBS, PER_CLASS, SIZE = 6, 40, 48


def flat(img: Image.Image, colour) -> Image.Image:
    """An RGBA image flattened on a colour, as RGB."""
    bg = Image.new("RGBA", img.size, tuple(colour) + (255,))
    bg.alpha_composite(img.convert("RGBA"))
    return bg.convert("RGB")


def crests_on(root, colour, fmt="png"):
    """Generated crests flattened on one colour (RGB files, no alpha), one folder per club."""
    for k, name in enumerate(synth.class_names(N_CLUBS)):
        (root / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            flat(synth.crest(k, 3, i, SIZE), colour).save(root / name / f"{i}.{fmt}")
    return root


@pytest.mark.parametrize("colour", [(0, 0, 0), (20, 90, 200), (250, 250, 250)])
def test_the_background_is_learned_from_the_training_images_borders(tmp_path, colour):
    ds = open_dataset(crests_on(tmp_path / "d", colour), cache=False)
    assert ds.channels == 3
    meta = store.input_meta(ds)
    assert np.abs(np.array(meta["background"]) - colour).max() <= 3 and meta["resize"] == "squish"


def test_no_typical_border_colour_means_white():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)  # photos: every border differs
    assert typical_background(noise) == WHITE
    clear = np.zeros((5, 16, 16, 4), np.uint8)  # transparent borders: nothing to learn
    assert typical_background(clear) == WHITE
    assert typical_background(np.zeros((0, 8, 8, 3), np.uint8)) == WHITE


def test_models_saved_before_keep_white_and_squish():
    assert background_of({"vocab": ["a", "b"]}) == WHITE and method_of({}) == "squish"
    assert background_of({"background": [0, 0, 0]}) == (0, 0, 0)
    assert background_of({"background": [True, 0, 0]}) == WHITE  # not a colour: the old behaviour
    a = np.zeros((2, 2, 4), np.uint8)
    a[..., 3] = 0
    assert (to_channels(a, 3) == 255).all() and (to_channels(a, 3, background=(0, 10, 20)) == [0, 10, 20]).all()


@pytest.fixture(scope="module")
def on_black(tmp_path_factory):
    """A cnn trained on crests flattened on black (RGB JPEGs), saved as the app and CLI save it."""
    from logoapp.train import TrainConfig, fit
    root = tmp_path_factory.mktemp("black")
    ds = open_dataset(crests_on(root / "data", (0, 0, 0), "jpg"), cache=False)
    fit(ds, TrainConfig("cnn", epochs=4, bs=32, seed=0), out=root / "model")
    return root


def test_a_model_of_crests_on_black_reads_transparent_originals_on_black(on_black, tmp_path):
    meta = json.loads((on_black / "model" / "model.json").read_text())
    assert meta["background"][0] <= 8 and max(meta["background"]) <= 8 and meta["resize"] == "squish"
    p = Predictor.load(on_black / "model")
    names = synth.class_names(N_CLUBS)
    right_new = right_black = right_old = 0
    old = Predictor(p.model, {k: v for k, v in p.meta.items() if k not in ("background", "resize", "unknown")})
    for k, name in enumerate(names):
        clean = synth.template(k, SIZE)            # the clean transparent original
        clean.save(tmp_path / f"{name}.png")
        black = flat(clean, meta["background"])     # the same flattened by hand on the model's background
        # the transparent original is read exactly as the one flattened on black
        assert np.array_equal(p.prepare(tmp_path / f"{name}.png"), p.prepare(black))
        assert p.predict(tmp_path / f"{name}.png") == p.predict(black)
        right_new += max(p.predict(clean).items(), key=lambda kv: kv[1])[0] == name
        right_black += max(p.predict(black).items(), key=lambda kv: kv[1])[0] == name
        right_old += max(old.predict(clean).items(), key=lambda kv: kv[1])[0] == name
    assert right_new == right_black >= N_CLUBS - 1, (right_new, right_black, right_old)
    # every prediction path: explain prepares the image the same way
    from logoapp.explain import prepare
    assert np.array_equal(prepare(tmp_path / f"{names[0]}.png", meta), p.prepare(tmp_path / f"{names[0]}.png"))


def test_cli_predict_uses_the_learned_background(on_black, tmp_path, capsys):
    from logoapp.cli import main
    clean = synth.template(0, SIZE)
    clean.save(tmp_path / "t.png")
    flat(clean, (0, 0, 0)).save(tmp_path / "b.png")
    main(["predict", str(on_black / "model"), str(tmp_path / "t.png"), str(tmp_path / "b.png"), "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["probs"] == pytest.approx(rows[1]["probs"], abs=1e-6)


def test_store_refuses_a_bad_background_or_resize(on_black, tmp_path):
    import shutil
    for key, value in (("background", [0, 0]), ("background", [0, 0, 300]), ("resize", "stretch")):
        d = tmp_path / f"{key}-{len(str(value))}"
        shutil.copytree(on_black / "model", d)
        m = json.loads((d / "model.json").read_text())
        m[key] = value
        (d / "model.json").write_text(json.dumps(m))
        with pytest.raises(store.ModelError, match=f"invalid {key}"):
            store.read_meta(d)


# ============================================================================================= resize methods

def wide(h=20, w=40, mode="RGB") -> np.ndarray:
    a = np.zeros((h, w, 3 if mode == "RGB" else 4), np.uint8)
    a[:, : w // 4] = 200    # a band on the left: kept by squish and pad, cut by crop
    a[:, w // 4:, 0] = 90
    if mode == "RGBA":
        a[..., 3] = 255
    return a


def test_fit_square_squish_crop_pad():
    a = wide()
    assert fit_square(a, "squish") is a
    c = fit_square(a, "crop")
    assert c.shape == (20, 20, 3) and (c[..., 1] == 0).all()   # the band on the left is cut off
    p = fit_square(a, "pad")
    assert p.shape == (40, 40, 3) and (p[:10] == 0).all() and (p[10:30] == a).all()
    t = fit_square(wide(mode="RGBA"), "pad")
    assert (t[:10, :, 3] == 0).all()                            # RGBA pads with transparent pixels
    with pytest.raises(ValueError, match="resize method"):
        fit_square(a, "stretch")


def test_decode_and_datasets_follow_the_resize_method(tmp_path):
    for k in range(2):
        (tmp_path / "d" / f"c{k}").mkdir(parents=True)
        for i in range(3):
            Image.fromarray(wide()).save(tmp_path / "d" / f"c{k}" / f"{i}.png")
    img = Image.fromarray(wide())
    crop, pad = decode(img, 16, 3, method="crop"), decode(img, 16, 3, method="pad")
    assert crop[..., 1].max() == 0 and pad[:3].max() == 0 and pad[8, :, 1].max() == 200
    ds = open_dataset(tmp_path / "d", size=16, resize="pad")
    assert ds.resize == "pad" and ds.summary()["resize"] == "pad"
    assert np.array_equal(ds.images[0], pad)
    again = open_dataset(tmp_path / "d", size=16)            # another method: another cache entry, not the padded one
    assert again.resize == "squish" and not np.array_equal(again.images[0], pad)
    with pytest.raises(DataError, match="resize method"):
        open_dataset(tmp_path / "d", resize="stretch")
    p = Predictor(torch_identity(), {"vocab": ds.vocab, "data_size": 16, "channels": 3, "resize": "pad"})
    assert np.array_equal(p.prepare(img), pad)


def torch_identity():
    import torch

    class Two(torch.nn.Module):
        def forward(self, x):
            return x.float().flatten(1)[:, :2]
    return Two()


def test_cli_resize_flag_and_eval_on_the_test_split(tmp_path, capsys):
    from conftest import make_image

    from logoapp.cli import main
    for split, n in (("train", 8), ("valid", 3), ("test", 4)):
        for k in range(2):
            (tmp_path / "d" / split / f"c{k}").mkdir(parents=True)
            for i in range(n):
                make_image(k, i + 50 * len(split), 24).crop((0, 4, 24, 16)).save(
                    tmp_path / "d" / split / f"c{k}" / f"{i}.png")
    rc = main(["train", str(tmp_path / "d"), "--model", "linear", "--epochs", "1", "--bs", "8", "--resize", "pad",
               "--out", str(tmp_path / "m")])
    assert rc in (0, None)
    assert json.loads((tmp_path / "m" / "model.json").read_text())["resize"] == "pad"
    capsys.readouterr()
    main(["eval", str(tmp_path / "m"), str(tmp_path / "d"), "--split", "test", "--json"])
    r = json.loads(capsys.readouterr().out)
    assert r["split"] == "test" and r["n"] == 8
    rc = main(["eval", str(tmp_path / "m"), str(tmp_path / "d" / "train"), "--split", "test"])
    err = capsys.readouterr().err
    assert rc != 0 and "has no test split" in err and "Traceback" not in err
