"""The Check-data fix loop in a real browser: audit a copy of the built-in set with planted mistakes, relabel a
suspect, see the file move, undo it, see it back; README screenshot of the view."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from app_server import app_server
from test_browser import CHROMIUM, _need, idle, open_page, shot, sync_playwright

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CLUBS = ("ashford-athletic", "redbridge-rovers", "kingsport-united")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The built-in set (all ten clubs, 30 each) with three images moved to another club's folder and a resized
    JPEG copy of a fourth: the suspects and copies the view should show."""
    from logoapp.synth import generate
    root = generate(tmp_path_factory.mktemp("check") / "crests", per_class=30, size=96, seed=3)
    moved = []
    for k, club in enumerate(CLUBS):
        src = root / club / f"{club}_{k:04d}.png"
        dst = root / CLUBS[(k + 1) % 3] / f"moved_{k}.png"
        shutil.move(src, dst)
        moved.append(dst)
    Image.open(root / CLUBS[0] / f"{CLUBS[0]}_0010.png").convert("RGB").resize((72, 72)).save(
        root / CLUBS[0] / "copy.jpg", quality=85)
    return root, moved


def test_relabel_and_undo_in_the_browser(planted, tmp_path):
    from playwright.sync_api import expect
    _need("the playwright Python package", sync_playwright is not None)
    _need(CHROMIUM, Path(CHROMIUM).is_file())
    root, moved = planted
    with app_server("--data", str(root), models=tmp_path / "models") as server, open_page(server) as pg:
        pg.get_by_role("tab", name="Check data").click()
        pg.locator("#check-btn").click()
        expect(pg.locator("#check-summary")).to_contain_text("images checked", timeout=180_000)
        expect(pg.locator("#check-gallery img").first).to_be_visible(timeout=30_000)
        captions = pg.locator("#check-gallery .caption-label").all_inner_texts()
        first = next(k for k, c in enumerate(captions) if "→" in c)
        pg.locator("#check-gallery button.thumbnail-item").nth(first).click()
        expect(pg.locator("#check-item")).to_contain_text("class")
        item = pg.locator("#check-item").inner_text()
        rel = item.split(" · ")[0].strip()
        shot(pg, "check")
        src = root / rel
        assert src.is_file(), (rel, item)
        pg.locator("#relabel-btn").click()  # to the suggested class, preselected
        expect(pg.locator("#check-log")).to_contain_text("1 change(s) logged", timeout=60_000)
        idle(pg)
        assert not src.exists()
        assert len(list(root.glob(f"*/{src.name}"))) == 1  # moved into another class folder, not deleted
        pg.locator("#undo-btn").click()
        expect(pg.locator("#check-log")).to_contain_text("No changes logged", timeout=60_000)
        idle(pg)
        assert src.is_file() and not (root / ".logoapp-changes.jsonl").exists()
