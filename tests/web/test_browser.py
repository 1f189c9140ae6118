"""End to end in headless Chromium: create a case, upload a field, add a cell the detector
missed by clicking on the field, reclassify a cell with the keyboard, review the rest, sign off
and read the exported report."""

import json
import os
import shutil
import urllib.request

import pytest

from marrowdiff.counting.count import CountConfig
from marrowdiff.counting.detect import DetectConfig
from marrowdiff.inference.predict import load_classifier
from marrowdiff.web.accounts import Accounts
from marrowdiff.web.app import create_app
from marrowdiff.web.station import ReviewStation

from .servers import serving
from .test_webapp import empty_spot, miss_one, synthetic_field

CHROMIUM = os.environ.get("MARROWDIFF_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (or set MARROWDIFF_CHROMIUM)",
    ),
]


def station_app(tiny_run, tmp_path, accounts=None):
    station = ReviewStation(
        tmp_path / "review",
        load_classifier([tiny_run]),
        CountConfig(detect=DetectConfig(cell_diameter=90)),
        model_name="tiny",
    )
    return create_app(station, accounts)


@pytest.fixture
def server(tiny_run, tmp_path):
    with serving(station_app(tiny_run, tmp_path)) as url:
        yield url


def chromium(p):
    return p.chromium.launch(
        executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
    )


def test_review_a_case_in_the_browser(server, tmp_path):
    field = tmp_path / "field.png"
    field.write_bytes(synthetic_field())
    errors = []  # uncaught errors on the page: none, even when a request is refused
    with sync_api.sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server)
        page.fill("#user", "ana")
        page.fill("#case-name", "smear-7")
        page.click("#new-case button")
        page.wait_for_selector("#case-view:not([hidden])")
        page.set_input_files("#files", str(field))
        page.click("#upload")
        page.wait_for_selector(".cell")
        found = page.locator(".cell").count()
        assert found >= 4

        # The field view: every cell circled; a click where there is none adds a missed cell.
        page.click("#tab-fields")
        page.wait_for_selector("#field-svg circle")
        assert page.locator("#field-svg circle").count() == found
        view = json.load(urllib.request.urlopen(f"{server}/api/cases/1"))
        x, y = empty_spot(view, view["images"][0])
        page.keyboard.press("a")  # add missed cells: on
        assert page.is_checked("#add-mode")
        box = page.locator("#field-svg").bounding_box()
        scale = box["width"] / view["images"][0]["width"]
        page.mouse.click(box["x"] + x * scale, box["y"] + y * scale)  # bare plasma: refused
        page.wait_for_function("document.querySelector('#status').className === 'error'")
        assert "no stained cell at" in page.inner_text("#status")
        assert page.locator("#field-svg circle").count() == found
        # A cell the detector missed: one found is taken out, and the page reloaded.
        x, y = miss_one(tmp_path / "review", view, view["images"][0])
        page.reload()
        page.wait_for_selector("#case-view:not([hidden])")
        page.click("#tab-fields")
        page.wait_for_function(
            f"document.querySelectorAll('#field-svg circle').length === {found - 1}"
        )
        page.check("#add-mode")  # (a reload may keep the box as it was)
        box = page.locator("#field-svg").bounding_box()
        page.mouse.click(box["x"] + x * scale, box["y"] + y * scale)
        page.wait_for_function(f"document.querySelectorAll('#field-svg circle').length === {found}")
        assert "no stained cell" not in page.inner_text("#status")  # the refusal's is gone
        added = page.locator("#field-svg circle.selected")
        assert abs(float(added.get_attribute("cx")) - x) < 2 / scale
        page.screenshot(path=str(tmp_path / "field-view.png"), full_page=True)
        page.keyboard.press("f")  # back to the cells, the added one still selected
        page.wait_for_selector("#gallery:not([hidden]) .cell.selected")
        n = found  # one taken out, one added
        assert page.locator(".cell").count() == n

        # Reclassify the selected cell with the keyboard: the key of a class it is not.
        first = page.locator(".cell.selected")
        cell_id, label = first.get_attribute("data-id"), first.get_attribute("data-label")
        key, code = "1", "pronormoblast"
        if label == code:
            key, code = "2", "myeloblast"
        page.keyboard.press(key)
        corrected = page.locator(f'.cell[data-id="{cell_id}"]')
        corrected.wait_for()
        page.wait_for_function(
            f"document.querySelector('.cell[data-id=\"{cell_id}\"]').dataset.status === 'corrected'"
        )
        assert corrected.get_attribute("data-label") == code

        # Confirm the rest, one Enter each as fast as a reviewer types: each key goes to the next
        # unreviewed cell, whether or not the server has answered the last one yet.
        for _ in range(n - 1):
            page.keyboard.press("Enter")
        page.wait_for_function(
            "document.querySelectorAll('.cell[data-status=\"pending\"]').length === 0"
        )
        assert page.locator('.cell[data-status="pending"]').count() == 0
        page.click("#sign")
        page.wait_for_selector("#signed a")
        assert page.locator("#classbar button:not([disabled])").count() == 0  # nothing to change
        page.screenshot(path=str(tmp_path / "review-station.png"), full_page=True)
        page.click("#back")  # the cases page: how detection did on the signed cases
        page.wait_for_function(
            "document.querySelector('#detection').textContent.includes('recall')"
        )
        assert "1 missed cell(s) added" in page.inner_text("#detection")
        page.fill("#case-name", "empty-1")  # a case with no cells: its sign-off is refused
        page.click("#new-case button")
        page.wait_for_selector("#case-view:not([hidden])")
        page.click("#sign")
        page.wait_for_function("document.querySelector('#status').className === 'error'")
        assert "has no cells" in page.inner_text("#status")
        assert page.request.get(f"{server}/favicon.ico").ok
        browser.close()
    assert errors == []

    case_id = 1
    report = json.load(urllib.request.urlopen(f"{server}/api/cases/{case_id}/report/report.json"))
    assert report["n_counted"] == n and report["about"]["signed_by"] == "ana"
    assert report["about"]["detection"]["added"] == 1
    assert sum(1 for c in report["cells"] if c["class"] == code) >= 1
    assert report["estimate"]["n_verified"] == n and report["alerts"] == []
    assert report["about"]["review"]["reclassified"] == 1
    # The corrected cell's probability is the model's of its new class, not of the old one.
    reviewed = json.load(urllib.request.urlopen(f"{server}/api/cases/{case_id}"))["cells"]
    fixed = next(c for c in reviewed if str(c["id"]) == cell_id)
    where = (round(fixed["x"], 1), round(fixed["y"], 1))
    row = next(r for r in report["cells"] if (r["x"], r["y"]) == where)
    assert row["class"] == code
    assert row["probability"] == round(fixed["proba"][int(key) - 1], 4)
    log = json.load(urllib.request.urlopen(f"{server}/api/cases/{case_id}/log"))
    reviews = [e for e in log if e["action"] == "review"]
    assert reviews[0]["detail"]["after"]["status"] == "corrected"
    assert len({e["cell_id"] for e in reviews}) == len(reviews) == n  # each cell once
    assert (tmp_path / "review-station.png").stat().st_size > 10_000


def test_a_station_with_accounts_asks_who_you_are_and_only_a_signer_signs(tiny_run, tmp_path):
    accounts = Accounts(tmp_path / "review")
    accounts.add("Łukasz", "reviewer", "correct horse battery")
    errors = []
    with serving(station_app(tiny_run, tmp_path, accounts)) as url, sync_api.sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.wait_for_selector("#login-view:not([hidden])")
        assert page.is_hidden("#cases-view") and page.is_hidden("#typed-user")
        page.fill("#login-name", "Łukasz")
        page.fill("#login-password", "wrong password!")
        page.click("#login button")
        page.wait_for_function("document.querySelector('#status').textContent.length > 0")
        assert "wrong user name or password" in page.inner_text("#status")
        page.fill("#login-password", "correct horse battery")
        page.click("#login button")
        page.wait_for_selector("#cases-view:not([hidden])")
        assert page.inner_text("#account-name") == "Łukasz (reviewer)"
        page.fill("#case-name", "smear-8")
        page.click("#new-case button")
        page.wait_for_selector("#case-view:not([hidden])")
        assert page.is_disabled("#sign")  # a reviewer does not sign
        # Two fields: `]` and the arrow button move to the next field, whichever cell is
        # selected (the selection used to pull the view back to its own field).
        for k in (1, 2):
            (tmp_path / f"field{k}.png").write_bytes(synthetic_field(k))
        page.set_input_files("#files", [str(tmp_path / f"field{k}.png") for k in (1, 2)])
        page.click("#upload")
        page.wait_for_selector(".cell")
        page.click("#tab-fields")
        page.wait_for_selector("#field-svg circle")
        assert page.inner_text("#field-name").startswith("field 1 of 2")
        page.keyboard.press("]")
        page.wait_for_function(
            "document.querySelector('#field-name').textContent.startsWith('field 2 of 2')"
        )
        page.click("#prev-field")
        page.wait_for_function(
            "document.querySelector('#field-name').textContent.startsWith('field 1 of 2')"
        )
        page.click("#next-field")
        page.wait_for_function(
            "document.querySelector('#field-name').textContent.startsWith('field 2 of 2')"
        )
        page.reload()  # the session cookie outlives a reload
        page.wait_for_selector("#case-view:not([hidden])")
        page.click("#logout")
        page.wait_for_selector("#login-view:not([hidden])")
        browser.close()
    log = accounts_log(tmp_path / "review")
    assert [(e["user"], e["action"]) for e in log] == [("Łukasz", "create case")] + [
        ("Łukasz", "upload")
    ] * 2
    assert errors == []


def accounts_log(data_dir):
    from marrowdiff.web.store import Store

    return Store(data_dir / "marrowdiff.sqlite3").log(1)
