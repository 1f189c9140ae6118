"""Slides in the review station: registered by path under `serve --slides DIR` only, counted,
shown in deep zoom, reviewed and signed like fields; an older data folder takes slides."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from marrowdiff.inference.predict import load_classifier
from marrowdiff.slides.count import SlideCountConfig
from marrowdiff.web.station import ReviewStation
from marrowdiff.web.store import Store
from tests.web.test_webapp import ANA, local, new_case


@pytest.fixture(scope="module")
def slide_folder(small_slide, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lab-slides")
    shutil.copy(small_slide, folder / "case-17.tiff")
    (folder / "outside-link.tiff").symlink_to(small_slide)  # a link out of the folder
    return folder


def station(mpp_run, data_dir, slides=None):
    return ReviewStation(data_dir, load_classifier([mpp_run]), model_name="tiny", slides=slides,
                         slide_config=SlideCountConfig(tile=768))  # fmt: skip


def register(client, case, path):
    return client.post(f"/api/cases/{case}/slides", json={"path": path}, headers=ANA)


@pytest.mark.slow  # counts a slide, reviews and signs it: about 3 s
def test_a_slide_is_registered_counted_viewed_reviewed_and_signed(mpp_run, slide_folder, tmp_path):
    client = local(station(mpp_run, tmp_path / "review", slide_folder))
    assert client.get("/api/info").json()["slides"] is True
    case = new_case(client)
    response = register(client, case, "case-17.tiff")
    assert response.status_code == 201, response.text
    result = response.json()["result"]
    assert result["kind"] == "slide" and result["cells"] >= 50  # its best tiles, 500 asked
    view = client.get(f"/api/cases/{case}").json()
    (image,) = view["images"]
    assert (image["kind"], image["stored_name"], image["width"]) == ("slide", "case-17.tiff", 3072)
    dzi = client.get(f"/api/images/{image['id']}/slide.dzi")
    assert dzi.status_code == 200 and 'TileSize="254"' in dzi.text and 'Width="3072"' in dzi.text
    top = client.get(f"/api/images/{image['id']}/slide_files/12/1_1.jpeg")  # 3072 px: level 12
    assert top.status_code == 200 and top.content[:2] == b"\xff\xd8"
    assert client.get(f"/api/images/{image['id']}/slide_files/12/99_0.jpeg").status_code == 404
    assert client.get(f"/api/images/{image['id']}/slide_files/3/../x").status_code == 404
    cells = [c for c in view["cells"] if c["image_id"] == image["id"]]
    crop = client.get(f"/api/cells/{cells[0]['id']}/image.jpg")
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    for cell in cells:
        reviewed = client.post(f"/api/cells/{cell['id']}", json={"status": "confirmed"},
                               headers=ANA)  # fmt: skip
        assert reviewed.status_code == 200, reviewed.text
    signed = client.post(f"/api/cases/{case}/sign", headers=ANA)
    assert signed.status_code == 200, signed.text
    report = client.get(f"/api/cases/{case}/report/report.json").json()
    assert report["n_cells_found"] == len(cells) and report["estimate"]["n_verified"] > 0


def test_slide_paths_outside_the_folder_or_without_one_are_refused(mpp_run, slide_folder,
                                                                   tmp_path):  # fmt: skip
    client = local(station(mpp_run, tmp_path / "a", slide_folder))
    case = new_case(client)
    for path, status in [("../x.tiff", 403), ("/etc/passwd", 403), ("outside-link.tiff", 403),
                         ("missing.tiff", 404)]:  # fmt: skip
        response = register(client, case, path)
        assert response.status_code == status, (path, response.text)
    assert "outside the slide folder" in register(client, case, "../x.tiff").json()["detail"]
    plain = local(station(mpp_run, tmp_path / "b"))
    response = register(plain, new_case(plain), "case-17.tiff")
    assert response.status_code == 400 and "--slides" in response.json()["detail"]


def test_a_data_folder_made_before_slides_takes_them_keeping_its_rows(tmp_path):
    path = tmp_path / "marrowdiff.sqlite3"
    Store(path).close()
    db = sqlite3.connect(path)  # the images table as an earlier version made it
    db.executescript(
        "PRAGMA foreign_keys=OFF; DROP TABLE images; CREATE TABLE images (id INTEGER PRIMARY KEY,"
        " case_id INTEGER NOT NULL REFERENCES cases(id), kind TEXT NOT NULL CHECK (kind IN "
        "('field', 'patch')), original_name TEXT NOT NULL, stored_name TEXT NOT NULL, width "
        "INTEGER NOT NULL, height INTEGER NOT NULL, created_at TEXT NOT NULL, warning TEXT NOT "
        "NULL DEFAULT '');"
    )
    db.execute("INSERT INTO cases (id, name, created_at, created_by) VALUES (1, 'a', 'now', 'x')")
    db.execute("INSERT INTO images VALUES (7, 1, 'field', 'f.png', 's.png', 10, 10, 'now', '')")
    db.commit()
    db.close()
    store = Store(path)
    assert store.image(7)["original_name"] == "f.png"
    image_id, _ = store.add_image(1, "x", "slide", "s.svs", "s.svs", (100, 100), [])
    assert store.image(image_id)["kind"] == "slide"
