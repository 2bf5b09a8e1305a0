"""In a real browser (Chromium through Playwright, real clicks): a failed Load keeps the previous data; Evaluate
offers only models that fit the data; the test split; the resize methods; batch predictions as CSV. Screenshots go
to $LOGOAPP_SCREENSHOTS or a temp folder (logoapp-screenshots)."""
from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app_server import app_server
from test_browser import CHROMIUM, SHOTS, idle, open_page, set_number, shot, tab

pytestmark = [pytest.mark.browser, pytest.mark.slow]

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - the fixture fails with the reason
    sync_playwright = None

OTHER = "pets-pixel"  # a saved model of other classes (cats, dogs): Evaluate must not offer it


def wide_image(k: int, i: int) -> Image.Image:
    """Class k: a 48x24 RGB image, a coloured bar on black, jittered by i (wide, so squish, crop and pad differ)."""
    a = np.zeros((24, 48, 3), np.uint8)
    colour = [(220, 40, 40), (40, 80, 220)][k]
    x = 4 + i % 5
    a[4:20, x:x + 36] = colour
    if k:
        a[10:14, :] = 255
    return Image.fromarray(a)


def presplit(root: Path) -> Path:
    """train/valid/test folders of two classes of wide images."""
    for split, n in (("train", 16), ("valid", 6), ("test", 5)):
        for k, cls in enumerate(("bars", "crossed")):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                wide_image(k, i + 100 * len(split)).save(d / f"{cls}_{split}_{i}.png")
    return root


def other_model(models: Path) -> None:
    """A saved pixel model of two other classes."""
    import torch

    from logoapp import store
    from logoapp.ideal import PixelSimilarity
    meta = {"arch": "pixel", "distance": "l1", "vocab": ["cats", "dogs"], "size": 16, "data_size": 16,
            "channels": 4, "n_params": 2 * 4 * 16 * 16}
    store.save(PixelSimilarity(torch.zeros(2, 4, 16, 16), "l1"), meta, models / OTHER)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if sync_playwright is None or not Path(CHROMIUM).is_file():  # fails, never skips: these checks must run
        pytest.fail(f"the browser tests need the playwright package and {CHROMIUM}")
    root = tmp_path_factory.mktemp("fixes")
    models = root / "models"
    models.mkdir()
    other_model(models)
    data = presplit(root / "photos")
    empty = root / "no-images.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("stuff/readme.txt", "no pictures in here")
    return {"root": root, "models": models, "data": data, "empty": empty}


@pytest.fixture(scope="module")
def page(setup):
    with app_server(models=setup["models"]) as server, open_page(server) as pg:
        yield pg


def fix_shot(pg, name: str) -> Path:
    shot(pg, f"fix-{name}")
    return SHOTS / f"screenshot-fix-{name}.png"


def close_toasts(pg) -> None:
    for _ in range(10):
        if not pg.locator(".toast-close").count():
            break
        pg.locator(".toast-close").first.click()
        pg.wait_for_timeout(300)


def error_badges(pg) -> int:
    """Components showing Gradio's red 'Error' status (what a failed event leaves on its outputs)."""
    return pg.locator("[data-testid=status-tracker].error, .wrap.error").count()


def test_a_failed_load_keeps_the_previous_data_and_says_so(page, setup):
    tab(page, "data")
    page.get_by_label("zip upload").check()
    expect(page.locator("#data-zip")).to_be_visible()
    fix_shot(page, "zip-box")
    page.set_input_files("#data-zip input[type=file]", str(setup["empty"]))
    expect(page.locator("#load-msg")).to_contain_text("press Load dataset", timeout=20_000)
    page.locator("#load-btn").click()
    msg = page.locator("#load-msg")
    expect(msg).to_contain_text("is still loaded", timeout=30_000)
    text = msg.inner_text()
    assert "<class>/<images>" in text, text          # escaped: the angle brackets stay visible
    assert "embedded crests" in text and "/tmp" not in text and "logoapp-zip" not in text, text
    idle(page)
    expect(page.locator("#data-summary")).to_contain_text("3,000 images")
    assert error_badges(page) == 0
    expect(page.locator("#data-gallery img").first).to_be_visible()
    fix_shot(page, "load-refused")
    close_toasts(page)


def test_evaluate_offers_only_models_that_fit_the_data(page):
    tab(page, "evaluate")
    expect(page.locator("#tab-evaluate")).to_contain_text(f"Not offered, made for other data: {OTHER}")
    page.locator("#eval-model input").click()
    options = page.locator("ul[role=listbox] li")
    expect(options.first).to_be_visible()
    names = options.all_inner_texts()
    assert names and not any(OTHER in n for n in names), names
    page.keyboard.press("Escape")
    heading = page.locator("#tab-evaluate h3").first.inner_text()
    box = page.locator("#eval-model input")   # typed in anyway (the picker takes custom values for API callers)
    box.fill(OTHER)
    box.press("Enter")
    expect(page.locator(".toast-body").first).to_contain_text("Cannot evaluate", timeout=20_000)
    idle(page)
    expect(box).not_to_have_value(OTHER, timeout=10_000)   # back on the model shown
    assert page.locator("#tab-evaluate h3").first.inner_text().startswith(heading)  # the model shown before
    assert error_badges(page) == 0
    fix_shot(page, "evaluate-fitting")
    close_toasts(page)


def test_pad_resize_and_the_test_split(page, setup):
    tab(page, "data")
    page.get_by_label("folder on the server").check()
    page.get_by_label("Folder (one sub-folder per class, or train/ and valid/)").fill(str(setup["data"]))
    page.get_by_text("Loading options").click()
    page.locator("#opt-resize").get_by_text("pad:").click()
    page.locator("#load-btn").click()
    expect(page.locator("#data-summary")).to_contain_text("made square by pad", timeout=60_000)
    expect(page.locator("#data-summary")).to_contain_text("/ 10 test")
    expect(page.locator("#load-msg")).to_contain_text("Loaded")
    fix_shot(page, "data-pad")

    tab(page, "evaluate")
    split = page.locator("#eval-split")
    expect(split).to_be_visible()
    expect(page.locator("#tab-evaluate")).to_contain_text("validation images right")
    split.get_by_text("test", exact=True).click()
    expect(page.locator("#tab-evaluate")).to_contain_text("of 10 test images right", timeout=30_000)
    expect(page.locator("#eval-board")).to_contain_text("test accuracy %")
    fix_shot(page, "evaluate-test")

    tab(page, "train")   # a model trained on this data keeps its resize method, and Predict uses it
    page.locator("#arch").get_by_text("linear", exact=True).click()
    set_number(page, "#epochs", 1)
    page.locator("#train-btn").click()
    expect(page.locator("#train-result")).to_contain_text("finished", timeout=120_000)
    saved = [json.loads(p.read_text()) for p in setup["models"].glob("linear-*/model.json")]
    assert saved and saved[0]["resize"] == "pad" and saved[0]["background"] == [0, 0, 0], saved
    tab(page, "predict")
    wide_image(1, 7).save(setup["root"] / "crossed.png")
    page.set_input_files("#predict-image input[type=file]", str(setup["root"] / "crossed.png"))
    expect(page.locator("#predict-note")).to_contain_text("padded to", timeout=30_000)
    fix_shot(page, "predict-pad")
    bad = setup["root"] / "refused.png"
    bad.write_text("shopping list\n" * 20)
    page.set_input_files("#predict-image input[type=file]", str(bad))   # a refused image: no note of the last one
    expect(page.locator(".toast-body").first).to_contain_text("Cannot use this image", timeout=30_000)
    idle(page)
    expect(page.locator("#predict-note")).not_to_contain_text("as in training", timeout=10_000)
    close_toasts(page)


def csv_rows(pg) -> list[dict]:
    """The rows of the CSV the Predict tab offers for download, fetched through its link."""
    link = pg.locator("#predict-csv a").first
    expect(link).to_be_visible(timeout=30_000)
    return list(csv.DictReader(io.StringIO(pg.request.get(link.get_attribute("href")).text())))


def test_batch_predictions_download_as_csv_and_a_new_upload_replaces_them(page, setup):
    tab(page, "predict")
    page.get_by_text("Many images at once").click()
    files = []
    for k in range(2):
        files.append(setup["root"] / f"batch{k}.png")
        wide_image(k, 3).save(files[-1])
    bad = setup["root"] / "notes.png"
    bad.write_text("not a picture\n" * 10)
    page.set_input_files("#predict-files input[type=file]", [str(f) for f in files + [bad]])
    table = page.locator("#predict-many")
    expect(table).to_contain_text("notes.png", timeout=30_000)
    expect(table).to_contain_text("not an image")
    expect(table).to_contain_text("batch1.png")
    got = csv_rows(page)
    assert [r["file"] for r in got] == ["batch0.png", "batch1.png", "notes.png"], got
    assert got[2]["error"].startswith("not an image") and got[2]["next best"] == "" and got[0]["error"] == ""
    assert got[0]["predicted"] in ("bars", "crossed") and got[2]["predicted"] == ""
    fix_shot(page, "batch")
    page.set_input_files("#predict-files input[type=file]", [str(files[1])])   # a new upload replaces them
    expect(table).not_to_contain_text("notes.png", timeout=30_000)
    expect(table).to_contain_text("batch1.png")
    assert [r["file"] for r in csv_rows(page)] == ["batch1.png"]
    fix_shot(page, "batch-replaced")
    assert not page.errors, page.errors
    log = page.server.output()   # users' mistakes (the refused load, pick and image): one line each, no traceback
    assert "load refused:" in log and "refused: Cannot use this image" in log, log[-3000:]
    assert "gradio.exceptions.Error" not in log and "raise gr.Error" not in log, log[-3000:]
