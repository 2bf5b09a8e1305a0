"""The app in a real browser (Debian's Chromium through Playwright): every tab, predict, train, stop; README
screenshots."""
from __future__ import annotations

import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from app_server import ROOT, app_server

from logoapp import models

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("LOGOAPP_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
# screenshots go to a temp folder; LOGOAPP_SCREENSHOTS=assets refreshes the README's pictures
SHOTS = Path(os.environ.get("LOGOAPP_SCREENSHOTS") or Path(tempfile.gettempdir()) / "logoapp-screenshots")
TABS = {"data": "1 · Data", "ideal": "2 · Ideal images", "train": "3 · Train", "evaluate": "4 · Evaluate",
        "predict": "5 · Predict"}


def _need(what: str, ok: bool) -> None:
    """Missing browser pieces: a failure on CI (where they must be installed), a skip on a developer machine."""
    if ok:
        return
    msg = f"{what} is missing (apt-get install chromium; pip install playwright)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - reported by the fixture below
    sync_playwright = None


@contextmanager
def open_page(server, outside: list | None = None):
    """Chromium on the app's page, ready (its tabs drawn); pg.errors collects page errors, and `outside` (when
    given) every request for anything but the app itself."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1280, "height": 900})
            if outside is not None:
                pg.on("request", lambda r: outside.append(r.url)
                      if not r.url.startswith((server.url, "data:", "blob:")) else None)
            errors = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.goto(server.url)
            pg.wait_for_selector("#tabs", timeout=60_000)
            pg.errors, pg.server = errors, server
            yield pg
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    _need("the playwright Python package", sync_playwright is not None)
    _need(CHROMIUM, Path(CHROMIUM).is_file())
    outside = []
    with app_server(models=tmp_path_factory.mktemp("models")) as server, open_page(server, outside) as pg:
        pg.outside = outside
        yield pg


def tab(pg, name: str) -> None:
    pg.get_by_role("tab", name=TABS[name]).click()
    pg.wait_for_timeout(400)


def idle(pg, timeout: float = 60) -> None:
    """Wait until no Gradio status tracker shows a pending job."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (not pg.locator("[data-testid=status-tracker].pending, .wrap.pending").count()
                and not pg.get_by_text(re.compile(r"^processing \|")).count()):  # an output still being computed
            return
        pg.wait_for_timeout(200)


def shot(pg, name: str) -> None:
    idle(pg)
    pg.mouse.move(1, 1)              # no hover highlight on the last button clicked
    pg.wait_for_timeout(600)
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"screenshot-{name}.png"), full_page=True)


def set_number(pg, selector: str, value) -> None:
    box = pg.locator(f"{selector} input[data-testid=number-input], {selector} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")
    box.blur()
    pg.wait_for_timeout(300)


def fill_width(pg) -> float:
    style = pg.locator("#train-progress .la-fill").get_attribute("style") or ""
    m = re.search(r"width:\s*([\d.]+)%", style)
    return float(m.group(1)) if m else 0.0


def plot_src(pg, elem: str) -> str:
    img = pg.locator(f"#{elem} img")
    return img.first.get_attribute("src") or "" if img.count() else ""


def test_every_tab_shows_its_content(page):
    tab(page, "data")
    expect(page.locator("#data-summary")).to_contain_text("3,000 images")
    expect(page.locator("#data-gallery img").first).to_be_visible()
    page.locator("#data-gallery button.thumbnail-item").nth(3).click()   # a thumbnail -> pixel table
    expect(page.locator("#pixel-table")).to_contain_text("x=")
    shot(page, "data")
    tab(page, "ideal")
    expect(page.locator("#ideal-plot img")).to_be_visible()
    expect(page.get_by_text("Nearest-ideal baseline (L1)")).to_be_visible()
    shot(page, "ideal")
    tab(page, "evaluate")
    expect(page.locator("#confusion img")).to_be_visible()
    expect(page.locator("#top-losses img").first).to_be_visible()
    tab(page, "predict")
    expect(page.locator("#predict-image")).to_be_visible()
    assert not page.outside, f"the page fetched from the internet: {page.outside[:5]}"


def test_upload_a_crest_and_read_the_prediction(page):
    tab(page, "predict")
    page.set_input_files("#predict-image input[type=file]", str(ROOT / "assets" / "millbrook-city.png"))
    top = page.locator("#predict-label [data-testid=label-output-value]")
    expect(top).to_have_text("millbrook-city", timeout=30_000)
    expect(page.locator("#predict-heatmap img")).to_be_visible(timeout=30_000)  # where the model looked
    expect(page.locator("#predict-class input")).to_have_value("millbrook-city")
    shot(page, "predict")


def test_a_file_that_is_not_an_image_gets_a_clear_message(page, tmp_path):
    tab(page, "predict")
    fake = tmp_path / "notes.png"
    fake.write_text("shopping list: eggs, milk\n" * 20)
    clear = page.locator("#predict-image button[aria-label=Clear]")
    if clear.count():
        clear.first.click()
    page.set_input_files("#predict-image input[type=file]", str(fake))
    toast = page.locator(".toast-body").first
    expect(toast).to_contain_text("Cannot use this image: not an image: a text file", timeout=30_000)
    idle(page)
    for _ in range(10):  # close every toast, so none covers a later screenshot
        if not page.locator(".toast-close").count():
            break
        page.locator(".toast-close").first.click()
        page.wait_for_timeout(300)
    expect(page.locator(".toast-body")).to_have_count(0)


@pytest.mark.timeout(420)
def test_each_rung_trains_with_its_defaults_and_the_leaderboard_reads_as_the_ladder(page):
    """Picking a rung restores its defaults; training moves the progress bar and redraws the plots; each run lines
    up on the leaderboard under the pixel baseline, with the note on what each step adds (the accuracies
    themselves are the benchmarks' business)."""
    tab(page, "train")
    result = page.locator("#train-result")
    for arch in ("linear", "mlp", "cnn"):
        page.locator("#arch").get_by_text(arch, exact=True).click()
        n = models.get(arch).epochs
        epochs = page.locator("#epochs input[data-testid=number-input], #epochs input[type=number]").first
        expect(epochs).to_have_value(str(n))
        before = plot_src(page, "loss-plot")
        page.locator("#train-btn").click()
        expect(result).not_to_contain_text("finished", timeout=30_000)  # cleared when the run starts
        widths, srcs = set(), set()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and "finished" not in result.inner_text():
            widths.add(fill_width(page))
            srcs.add(plot_src(page, "loss-plot"))
            page.wait_for_timeout(150)
        expect(result).to_contain_text(re.compile(rf"{arch}\S* finished"))
        assert len(widths) >= 3, f"{arch}: the progress bar should move, saw widths {sorted(widths)}"
        assert len(srcs - {before}) >= 1, f"{arch}: the loss plot should be redrawn while training"
        expect(page.locator("#epoch-table")).to_contain_text("valid_loss")
        cells = [c.strip() for c in page.locator("#epoch-table").inner_text().splitlines() if c.strip()]
        k = cells.index("time") + 1                                  # the header's last column, then 5 per row
        assert cells[k::5] == [str(e) for e in range(1, n + 1)], (arch, cells)   # one row per epoch
        expect(page.locator("#train-btn")).to_be_enabled(timeout=10_000)
    board = page.locator("#leaderboard")
    for name in ("pixel baseline (L1)", "linear", "mlp", "cnn"):
        expect(board).to_contain_text(name)
    expect(page.locator("#ladder-note")).to_contain_text("What each step adds")
    idle(page)
    shot(page, "train")


def test_evaluate_shows_the_trained_model(page):
    tab(page, "evaluate")
    expect(page.locator("#eval-model input")).to_have_value(re.compile("cnn"), timeout=20_000)
    expect(page.locator("#confusion img")).to_be_visible()
    expect(page.locator("#eval-model input")).to_have_value(re.compile(r"^cnn-embedded-crests · cnn · \d"))
    expect(page.locator("#reliability img")).to_be_visible()
    expect(page.locator("#top-heatmap img")).to_have_count(0)
    idle(page)
    page.locator("#top-losses button.thumbnail-item").first.click()   # a top loss -> its Grad-CAM heatmap
    expect(page.locator("#top-heatmap img")).to_be_visible(timeout=30_000)
    expect(page.locator("#top-heatmap-caption")).to_contain_text(re.compile(r"predicted .*Grad-CAM: where"))
    close = page.locator("#top-losses button[aria-label='Close']")
    if close.count():  # back from the gallery's preview to the thumbnails
        close.first.click()
    shot(page, "evaluate")


def test_stop_ends_a_longer_run_early(page):
    tab(page, "train")
    set_number(page, "#epochs", 8)
    set_number(page, "#size", 32)
    page.locator("#train-btn").click()
    stop = page.locator("#stop-btn")
    expect(stop).to_be_enabled(timeout=30_000)
    deadline = time.monotonic() + 60
    while fill_width(page) <= 0 and time.monotonic() < deadline:   # wait for the first batches
        page.wait_for_timeout(100)
    stop.click()
    expect(page.locator("#train-result")).to_contain_text("stopped early", timeout=60_000)
    assert fill_width(page) < 60
    expect(page.locator("#train-btn")).to_be_enabled(timeout=10_000)
    assert not page.errors, page.errors
