"""A blind double review in headless Chromium: a signer opens a case that hides the model, two
reviewers classify its cells with the keyboard without seeing each other's verdicts, an
adjudicator decides the cell they disagree on as "between two stages", and the signer signs
and downloads the export."""

import csv
import io
import json
import zipfile

import numpy as np
import pytest

from marrowdiff.synthetic.cells import synthetic_cell
from marrowdiff.web.accounts import Accounts

from ..conftest import STAGE_CLASSES, write_image
from .conftest import PEOPLE
from .servers import serving
from .test_browser import chromium, station_app, sync_api
from .test_webapp import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def log_in(browser, url, name):
    page = browser.new_context().new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.fill("#login-name", name)
    page.fill("#login-password", PASSWORD)
    page.click("#login button")
    page.wait_for_selector("#cases-view:not([hidden])")
    return page, errors


def give(page, keys: str, shown: int):
    """Press one class key per cell, in the order the page offers them; wait for the server."""
    page.wait_for_selector(".cell.selected")
    for key in keys:
        page.keyboard.press(key)
    page.wait_for_function(
        f"document.querySelector('#blind-state').textContent.includes('given {shown} of')"
        " || document.querySelector('#blind-state').textContent.includes('opened')"
    )


def test_a_blind_review_adjudicated_and_exported_in_the_browser(stage_run, tmp_path):
    accounts = Accounts(tmp_path / "review")
    for name, role in PEOPLE.items():
        accounts.add(name, role, PASSWORD)
    rng = np.random.default_rng(4)
    files = [
        str(write_image(tmp_path / f"cell{k}.png", synthetic_cell(rng, 48, radius=r)))
        for k, r in enumerate(STAGE_CLASSES.values())
    ]
    app = station_app(stage_run, tmp_path, accounts)
    with serving(app) as url, sync_api.sync_playwright() as p:
        browser = chromium(p)
        sam, sam_errors = log_in(browser, url, "sam")
        sam.fill("#case-name", "double-1")
        sam.select_option("#case-reviewers", "2")
        sam.check("#case-hide-model")
        sam.click("#new-case button")
        sam.wait_for_selector("#case-view:not([hidden])")
        sam.set_input_files("#files", files)
        sam.click("#upload")
        sam.wait_for_selector(".cell")
        assert sam.locator(".cell").count() == 3
        assert "Blind review" in sam.inner_text("#blind-state")
        assert "hidden" in sam.inner_text("#me")  # no differential: it would show the model

        ana, ana_errors = log_in(browser, url, "ana")
        ana.goto(f"{url}/#case/1")
        give(ana, "123", 3)  # myeloblast, promyelocyte, myelocyte
        assert ana.locator(".cell .verdicts").count() == 0
        assert all("?" in t or "yours" in t for t in ana.locator(".cell").all_inner_texts())

        ben, ben_errors = log_in(browser, url, "ben")
        ben.goto(f"{url}/#case/1")
        ben.wait_for_selector(".cell.selected")
        assert ben.locator(".cell .verdicts").count() == 0  # Ana's verdicts stay hidden
        give(ben, "122", 3)  # ... disagrees on the third: promyelocyte
        ben.wait_for_selector(".cell .verdicts")
        assert "1 cell(s) the reviewers disagree on" in ben.inner_text("#blind-state")

        cleo, cleo_errors = log_in(browser, url, "cleo")
        cleo.goto(f"{url}/#case/1")
        cleo.wait_for_selector(".cell.selected")
        selected = cleo.inner_text(".cell.selected")
        assert "ana: MYC" in selected and "ben: PMY" in selected
        cleo.screenshot(path=str(tmp_path / "adjudication.png"))
        cleo.keyboard.press("b")  # between the two stages the reviewers named
        cleo.wait_for_function("document.querySelector('#status').textContent.includes('between')")
        assert "between Promyelocyte and Myelocyte" in cleo.inner_text("#status")

        sam.reload()
        sam.wait_for_selector(".cell")
        sam.click("#sign")
        sam.wait_for_selector("#signed a")
        exported = sam.request.get(f"{url}/api/cases/1/export.zip")
        assert exported.ok
        body = exported.body()
        sam.click("#back")  # the cases page: the agreement over every opened case
        sam.wait_for_function(
            "document.querySelector('#agreement-all').textContent.includes('kappa')"
        )
        assert "over 1 case(s), 3 cells" in sam.inner_text("#agreement-all")
        assert "blind x2, opened" in sam.inner_text("#cases")
        browser.close()
    archive = zipfile.ZipFile(io.BytesIO(body))
    rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [r["label"] for r in rows] == ["myeloblast", "promyelocyte", "promyelocyte|myelocyte"]
    assert json.loads(rows[2]["reviewers"]) == {"ana": "myelocyte", "ben": "promyelocyte"}
    assert json.loads(archive.read("case.json"))["adjudicated_by"] == ["cleo"]
    assert sam_errors == ana_errors == ben_errors == cleo_errors == []
