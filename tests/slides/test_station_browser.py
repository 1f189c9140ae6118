"""The slide view in headless Chromium: register a slide by its path, see every counted cell
marked in deep zoom (OpenSeadragon), click one to select it, review with the keyboard."""

from __future__ import annotations

import json
import shutil
import urllib.request

import pytest

from marrowdiff.inference.predict import load_classifier
from marrowdiff.slides.count import SlideCountConfig
from marrowdiff.web.app import create_app
from marrowdiff.web.station import ReviewStation
from tests.web.servers import serving
from tests.web.test_browser import chromium
from tests.web.test_browser import pytestmark as browser

pytestmark = [*browser, pytest.mark.slow]  # skips without Chromium; about 8 s

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def test_review_a_slide_in_deep_zoom(mpp_run, small_slide, tmp_path):
    folder = tmp_path / "lab-slides"
    folder.mkdir()
    shutil.copy(small_slide, folder / "case-17.tiff")
    station = ReviewStation(tmp_path / "review", load_classifier([mpp_run]), model_name="tiny",
                            slides=folder, slide_config=SlideCountConfig(tile=768))  # fmt: skip
    errors = []
    with serving(create_app(station)) as url, sync_api.sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.fill("#user", "ana")
        page.fill("#case-name", "marrow-17")
        page.click("#new-case button")
        page.wait_for_selector("#case-view:not([hidden])")
        page.fill("#slide-path", "case-17.tiff")
        page.click("#add-slide")
        page.wait_for_selector("#slides:not([hidden]) .slide-mark", timeout=60_000)
        view = json.load(urllib.request.urlopen(f"{url}/api/cases/1"))
        n = len(view["cells"])
        assert n >= 50 and page.locator(".slide-mark").count() == n
        # A click on a cell's mark selects it, and the keyboard reviews it as on fields
        mark = page.locator(".slide-mark").nth(7)
        cell_id = mark.get_attribute("data-id")
        mark.click()
        page.wait_for_selector(f'.slide-mark.selected[data-id="{cell_id}"]')
        page.keyboard.press("Enter")
        page.wait_for_function(
            f"document.querySelector('.slide-mark[data-id=\"{cell_id}\"]')"
            ".classList.contains('confirmed')"
        )
        assert page.locator(".slide-mark.selected").get_attribute("data-id") != cell_id  # moved on
        page.screenshot(path=str(tmp_path / "slide-view.png"))
        browser.close()
        after = json.load(urllib.request.urlopen(f"{url}/api/cases/1"))
    assert {c["id"]: c["status"] for c in after["cells"]}[int(cell_id)] == "confirmed"
    assert not errors
