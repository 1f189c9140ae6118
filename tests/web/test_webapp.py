"""The review station through its HTTP API (FastAPI's test client)."""

import json
import sqlite3

import numpy as np
import pytest
from fastapi.testclient import TestClient

from marrowdiff.counting.count import CountConfig
from marrowdiff.counting.detect import DetectConfig
from marrowdiff.data.datasets import open_dataset
from marrowdiff.inference.predict import load_classifier
from marrowdiff.synthetic.cells import synthetic_cell
from marrowdiff.synthetic.fields import FieldConfig, make_field
from marrowdiff.web.accounts import AccountError, Accounts
from marrowdiff.web.app import LOOPBACK, create_app, serving_hosts
from marrowdiff.web.station import Limits, ReviewStation
from marrowdiff.web.store import SignedError

from ..conftest import TINY_CLASSES, encode
from .servers import serving

ANA = {"X-User": "ana", "X-Requested-With": "marrowdiff"}  # who, and "from the page"


def local(app_or_station, **kwargs) -> TestClient:
    """A client of the station as this machine reaches it (the Host header 127.0.0.1)."""
    app = app_or_station
    if isinstance(app_or_station, ReviewStation):
        app = create_app(app_or_station, **kwargs)
    return TestClient(app, base_url="http://127.0.0.1")


def synthetic_field(seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    patches = [
        synthetic_cell(rng, 144, radius=3 * r) for r in TINY_CLASSES.values() for _ in range(3)
    ]
    field, _ = make_field(
        patches, ["x"] * len(patches), FieldConfig(540, 660, 6, red_cells=40), seed
    )
    return encode(field)


def empty_spot(view: dict, field: dict) -> tuple[float, float]:
    """(x, y): the point of a field farthest from every cell on it, where a missed cell would be
    added."""
    ys, xs = np.mgrid[50 : field["height"] - 50 : 10, 50 : field["width"] - 50 : 10]
    centres = np.array([[c["y"], c["x"]] for c in view["cells"] if c["image_id"] == field["id"]])
    gap = np.hypot(ys[..., None] - centres[:, 0], xs[..., None] - centres[:, 1]).min(-1)
    k = np.unravel_index(gap.argmax(), gap.shape)
    return float(xs[k]), float(ys[k])


def station(tiny_run, data_dir, **limits):
    count = CountConfig(detect=DetectConfig(cell_diameter=90))
    return ReviewStation(
        data_dir, load_classifier([tiny_run]), count, limits=Limits(**limits), model_name="tiny"
    )


@pytest.fixture
def client(tiny_run, tmp_path):
    return local(station(tiny_run, tmp_path / "review"))


def new_case(client, name="smear-1"):
    response = client.post("/api/cases", json={"name": name}, headers=ANA)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def upload(client, case, *files):
    return client.post(
        f"/api/cases/{case}/images",
        headers=ANA,
        files=[("files", (name, data, "image/png")) for name, data in files],
    )


def test_a_case_from_upload_to_sign_off(client, tmp_path):
    case = new_case(client)
    response = upload(
        client,
        case,
        ("field.png", synthetic_field()),
        ("cell.png", encode(synthetic_cell(np.random.default_rng(1), 48, radius=12))),
    )
    assert response.status_code == 200, response.text
    kinds = {r["kind"]: r["cells"] for r in response.json()["results"]}
    assert kinds["field"] >= 4 and kinds["patch"] == 1
    view = client.get(f"/api/cases/{case}").json()
    cells = view["cells"]
    assert len(cells) == kinds["field"] + 1
    # each cell keeps its distance from the training cells, and the case is checked by them
    assert all(c["distance"] is not None for c in cells)
    assert view["differential"]["domain"]["cells"] == len(cells)

    # Signing needs every cell reviewed.
    assert client.post(f"/api/cases/{case}/sign", headers=ANA).status_code == 400
    other = next(c for c in ("pronormoblast", "myeloblast") if c != cells[0]["model_class"])
    reviewed = client.post(
        f"/api/cells/{cells[0]['id']}", headers=ANA, json={"status": "corrected", "label": other}
    ).json()
    assert reviewed["cell"]["status"] == "corrected" and reviewed["cell"]["label"] == other
    client.post(f"/api/cells/{cells[1]['id']}", headers=ANA, json={"status": "not_a_cell"})
    for cell in cells[2:]:
        client.post(f"/api/cells/{cell['id']}", headers=ANA, json={"status": "confirmed"})
    signed = client.post(f"/api/cases/{case}/sign", headers=ANA)
    assert signed.status_code == 200, signed.text

    report = client.get(f"/api/cases/{case}/report/report.json").json()
    assert report["n_counted"] == len(cells) - 1  # the "not a cell" is not counted
    assert report["domain"]["checked"] and report["domain"]["cells"] == len(cells)
    assert report["flagged"] == {"not a cell": 1}
    detection = report["about"]["detection"]  # cells[1] is on the field: a false detection
    assert detection["not_a_cell"] == 1 and detection["found"] == kinds["field"]
    assert detection["precision"] == round(1 - 1 / kinds["field"], 4)
    assert "M:E" in client.get(f"/api/cases/{case}/report/report.html").text
    export = tmp_path / "review" / "cases" / str(case) / "export"
    dataset = open_dataset(export / "manifest.csv")  # what `marrowdiff train` reads
    assert len(dataset.records) == len(cells) - 1
    assert {r.group for r in dataset.records} == {"case:smear-1"}
    assert sum(r.label == other for r in dataset.records) >= 1
    assert client.get(f"/api/cases/{case}/export.zip").content[:2] == b"PK"

    # A signed case is frozen.
    frozen = client.post(
        f"/api/cells/{cells[2]['id']}", headers=ANA, json={"status": "unidentified"}
    )
    assert frozen.status_code == 409
    assert upload(client, case, ("late.png", synthetic_field(1))).status_code == 409
    stored = list((tmp_path / "review" / "images" / str(case)).iterdir())
    assert len(stored) == len(view["images"])  # the refused upload left no file behind
    assert client.post(f"/api/cases/{case}/sign", headers=ANA).status_code == 409

    actions = [entry["action"] for entry in client.get(f"/api/cases/{case}/log").json()]
    assert actions[:2] == ["create case", "upload"] and actions[-1] == "sign"
    assert actions.count("review") == len(cells)


def test_nothing_is_lost_across_a_restart_and_the_log_is_append_only(tiny_run, tmp_path):
    data = tmp_path / "review"
    first = local(station(tiny_run, data))
    case = new_case(first)
    upload(first, case, ("f.png", synthetic_field()))
    cell = first.get(f"/api/cases/{case}").json()["cells"][0]
    first.post(f"/api/cells/{cell['id']}", headers=ANA, json={"status": "unidentified"})
    second = local(station(tiny_run, data))  # a new server on the same folder
    again = second.get(f"/api/cases/{case}").json()["cells"][0]
    assert again["status"] == "unidentified" and again["reviewed_by"] == "ana"
    db = sqlite3.connect(data / "marrowdiff.sqlite3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE log SET user = 'mallory'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM log")


def test_bad_requests_get_a_4xx_with_a_reason(tiny_run, tmp_path):
    client = local(station(tiny_run, tmp_path / "r", max_file_bytes=200_000))
    page = {"X-Requested-With": "marrowdiff"}
    assert client.post("/api/cases", json={"name": "a"}, headers=page).status_code == 400  # who?
    assert client.post("/api/cases", json={"name": ""}, headers=ANA).status_code == 422
    case = new_case(client)
    assert client.post("/api/cases", json={"name": "smear-1"}, headers=ANA).status_code == 400
    not_image = upload(client, case, ("evil.png", b"<?php system($_GET['x']); ?>"))
    assert not_image.status_code == 415 and "evil.png" in not_image.json()["detail"]
    big = upload(client, case, ("big.png", b"\0" * 300_000))
    assert big.status_code == 413
    none = client.post(f"/api/cases/{case}/images", headers=ANA, data={"x": "1"})
    assert none.status_code == 400
    garbled = client.post(
        f"/api/cases/{case}/images",
        headers=ANA | {"Content-Type": "multipart/form-data; boundary=zz"},
        content=b"--zz\r\nnonsense",
    )
    assert 400 <= garbled.status_code < 500
    assert client.get("/api/cases/999").status_code == 404
    assert (
        client.post("/api/cells/999", headers=ANA, json={"status": "confirmed"}).status_code == 404
    )
    assert client.post("/api/cells/1", headers=ANA, json={"status": "deleted"}).status_code == 422
    sneaky = client.get(f"/api/cases/{case}/report/..%2F..%2Fmarrowdiff.sqlite3")
    assert sneaky.status_code == 404 and b"SQLite" not in sneaky.content


def test_uploads_are_stored_under_server_chosen_names(tiny_run, tmp_path):
    client = local(station(tiny_run, tmp_path / "r"))
    case = new_case(client)
    response = upload(
        client, case, ("../../../escape.png", encode(synthetic_cell(np.random.default_rng(2), 48)))
    )
    assert response.status_code == 200
    assert response.json()["results"][0]["name"] == "escape.png"
    assert not list(tmp_path.rglob("escape.png"))
    stored = list((tmp_path / "r" / "images").rglob("*.png"))
    assert len(stored) == 1 and len(stored[0].stem) == 32  # a uuid


def miss_one(data_dir, view: dict, field: dict) -> tuple[float, float]:
    """(x, y) of a cell on the field that the detector is made to have missed (its row goes):
    the one farthest from the others, so that a click on it lands on no other cell's circle."""
    mine = [c for c in view["cells"] if c["image_id"] == field["id"]]
    xy = np.array([[c["x"], c["y"]] for c in mine])
    gaps = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1)) + np.eye(len(xy)) * 1e9
    lonely = max((c for c in mine if not c["model_flag"]), key=lambda c: gaps[mine.index(c)].min())
    with sqlite3.connect(data_dir / "marrowdiff.sqlite3") as db:
        db.execute("DELETE FROM cells WHERE id = ?", (lonely["id"],))
    return lonely["x"], lonely["y"]


def test_a_missed_cell_is_added_on_its_field_and_reviewed_like_any_other(client, tmp_path):
    case = new_case(client)
    cell_png = encode(synthetic_cell(np.random.default_rng(1), 48, radius=12))
    upload(client, case, ("field.png", synthetic_field()), ("cell.png", cell_png))
    view = client.get(f"/api/cases/{case}").json()
    field = next(i for i in view["images"] if i["kind"] == "field")
    patch = next(i for i in view["images"] if i["kind"] == "patch")
    preview = client.get(f"/api/images/{field['id']}/field.jpg")
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/jpeg"
    assert client.get("/api/images/999/field.jpg").status_code == 404

    at = f"/api/cases/{case}/images/{field['id']}/cells"
    bare = client.post(at, headers=ANA, json=dict(zip("xy", empty_spot(view, field), strict=True)))
    assert bare.status_code == 400 and "no stained cell at" in bare.text  # plasma, not a cell
    corner = client.post(at, headers=ANA, json={"x": 1, "y": 1})
    assert corner.status_code == 400 and "no stained cell at" in corner.text
    x, y = miss_one(tmp_path / "review", view, field)
    view = client.get(f"/api/cases/{case}").json()
    cells = view["cells"]
    found = view["differential"]["n_cells_found"]
    added = client.post(at, headers=ANA, json={"x": x, "y": y})
    assert added.status_code == 201, added.text
    cell = added.json()["cell"]
    assert (cell["x"], cell["y"], cell["origin"], cell["status"]) == (x, y, "reviewer", "pending")
    classes = [c["code"] for c in client.get("/api/info").json()["classes"]]
    assert cell["model_class"] in classes and len(cell["proba"]) == len(classes)
    assert added.json()["differential"]["n_cells_found"] == found + 1
    assert all(c["origin"] == "detector" for c in cells)

    # Refused, with a reason: on top of a cell, outside the field, on a patch, nobody, elsewhere.
    again = client.post(at, headers=ANA, json={"x": x + 5, "y": y})
    assert again.status_code == 400 and f"cell {cell['id']} is already there" in again.text
    outside = client.post(at, headers=ANA, json={"x": -1, "y": y})
    assert outside.status_code == 400 and "outside" in outside.text
    on_patch = client.post(
        f"/api/cases/{case}/images/{patch['id']}/cells", headers=ANA, json={"x": 10, "y": 10}
    )
    assert on_patch.status_code == 400 and "patch" in on_patch.text
    nameless = {"X-Requested-With": "marrowdiff"}
    assert client.post(at, headers=nameless, json={"x": x, "y": y}).status_code == 400
    other = new_case(client, "smear-2")
    elsewhere = f"/api/cases/{other}/images/{field['id']}/cells"
    assert client.post(elsewhere, headers=ANA, json={"x": x, "y": y}).status_code == 404
    assert (
        client.post(
            f"/api/cases/{case}/images/999/cells", headers=ANA, json={"x": x, "y": y}
        ).status_code
        == 404
    )

    for c in client.get(f"/api/cases/{case}").json()["cells"]:
        client.post(f"/api/cells/{c['id']}", headers=ANA, json={"status": "confirmed"})
    assert client.post(f"/api/cases/{case}/sign", headers=ANA).status_code == 200
    report = client.get(f"/api/cases/{case}/report/report.json").json()
    assert report["n_counted"] == len(cells) + 1
    detection = report["about"]["detection"]  # by the reviewer's verdicts: all confirmed
    assert (detection["found"], detection["not_a_cell"], detection["added"]) == (found - 1, 0, 1)
    assert detection["precision"] == 1 and detection["recall"] == round((found - 1) / found, 4)
    assert client.get("/api/detection").json() == detection  # the only signed case
    page = client.get(f"/api/cases/{case}/report/report.html").text
    assert "signed by ana" in page and "1 missed cell(s) added at review" in page
    assert client.post(at, headers=ANA, json={"x": x, "y": y + 200}).status_code == 409
    log = client.get(f"/api/cases/{case}/log").json()
    assert [e["cell_id"] for e in log if e["action"] == "add cell"] == [cell["id"]]


def test_a_data_folder_from_before_added_cells_is_brought_up_to_date(tmp_path):
    from marrowdiff.web.store import SCHEMA, Store

    old = SCHEMA.replace(
        """,
    origin TEXT NOT NULL DEFAULT 'detector'  -- 'detector', or 'reviewer' (a missed cell added)
        CHECK (origin IN ('detector', 'reviewer'))""",
        "",
    ).replace(
        """,
    warning TEXT NOT NULL DEFAULT ''   -- what detection noticed (detect.size_warning)""",
        "",
    )
    assert "origin TEXT" not in old and "warning TEXT" not in old
    path = tmp_path / "marrowdiff.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(old)
    db.execute("INSERT INTO cases (name, created_at, created_by) VALUES ('a', 'now', 'ana')")
    db.execute(
        "INSERT INTO images (case_id, kind, original_name, stored_name, width, height, created_at)"
        " VALUES (1, 'field', 'f.png', 'x.png', 100, 100, 'now')"
    )
    db.execute(
        "INSERT INTO cells (case_id, image_id, x, y, model_class, probability, model_flag, proba,"
        " label) VALUES (1, 1, 5, 5, 'myeloblast', 0.9, '', '[0.9, 0.1]', 'myeloblast')"
    )
    db.commit()
    db.close()
    store = Store(path)
    assert store.cells(1)[0]["origin"] == "detector" and store.images(1)[0]["warning"] == ""


def test_a_field_at_another_magnification_gets_a_warning(tiny_run, tmp_path):
    count = CountConfig(detect=DetectConfig(cell_diameter=180))
    app = create_app(ReviewStation(tmp_path / "r", load_classifier([tiny_run]), count))
    client = local(app)
    case = new_case(client)
    result = upload(client, case, ("field.png", synthetic_field())).json()
    assert "--cell-diameter" in result["results"][0]["warning"]
    # Kept with the field: the review page shows it, and so does the signed report.
    view = client.get(f"/api/cases/{case}").json()
    assert view["images"][0]["warning"] == result["results"][0]["warning"]
    for c in view["cells"]:
        client.post(f"/api/cells/{c['id']}", headers=ANA, json={"status": "confirmed"})
    assert client.post(f"/api/cases/{case}/sign", headers=ANA).status_code == 200
    warnings = client.get(f"/api/cases/{case}/report/report.json").json()["warnings"]
    assert any(w.startswith("field.png: the cells found") for w in warnings)


ID_ROUTES = [
    "/api/cases/{big}",
    "/api/images/{big}/field.jpg",
    "/api/cells/{big}/image.jpg",
    "/api/cases/{big}/log",
]


@pytest.mark.parametrize("path", ID_ROUTES)
def test_an_id_too_large_for_the_database_is_a_4xx_not_a_500(client, path):
    response = client.get(path.format(big=2**63))
    assert response.status_code == 422, response.text


def test_a_review_arriving_during_sign_off_is_in_the_report_or_refused(tiny_run, tmp_path):
    the_station = station(tiny_run, tmp_path / "r")
    client = local(the_station)
    case = new_case(client)
    assert upload(client, case, ("field.png", synthetic_field())).status_code == 200
    cells = client.get(f"/api/cases/{case}").json()["cells"]
    for cell in cells:
        client.post(f"/api/cells/{cell['id']}", headers=ANA, json={"status": "confirmed"})
    store, sign = the_station.store, the_station.store.sign

    def sign_while_a_second_reviewer_corrects(case_id, user):
        store.review(cells[0]["id"], "bo", "not_a_cell", None)  # just before the freeze
        signed = sign(case_id, user)
        with pytest.raises(SignedError):  # and just after it
            store.review(cells[1]["id"], "bo", "unidentified", None)
        return signed

    the_station.store.sign = sign_while_a_second_reviewer_corrects
    assert client.post(f"/api/cases/{case}/sign", headers=ANA).status_code == 200
    report = client.get(f"/api/cases/{case}/report/report.json").json()
    frozen = {c["id"]: c["status"] for c in client.get(f"/api/cases/{case}").json()["cells"]}
    assert frozen[cells[0]["id"]] == "not_a_cell" and frozen[cells[1]["id"]] == "confirmed"
    assert report["flagged"] == {"not a cell": 1} and report["n_counted"] == len(cells) - 1


def test_a_report_that_cannot_be_written_reopens_the_case(tiny_run, tmp_path, monkeypatch):
    the_station = station(tiny_run, tmp_path / "r")
    client = local(the_station)
    case = new_case(client)
    upload(client, case, ("cell.png", encode(synthetic_cell(np.random.default_rng(1), 48))))
    for cell in client.get(f"/api/cases/{case}").json()["cells"]:
        client.post(f"/api/cells/{cell['id']}", headers=ANA, json={"status": "confirmed"})

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("marrowdiff.web.station.write_report", disk_full)
    with pytest.raises(OSError):
        client.post(f"/api/cases/{case}/sign", headers=ANA)
    assert client.get(f"/api/cases/{case}").json()["case"]["signed_at"] is None
    actions = [entry["action"] for entry in client.get(f"/api/cases/{case}/log").json()]
    assert actions[-2:] == ["sign", "sign failed"]


def test_every_marrow14_class_has_its_own_review_key():
    from marrowdiff.classes import load_vocabulary
    from marrowdiff.web.app import REVIEW_KEYS

    assert len(load_vocabulary("marrow14").fine_codes) <= len(REVIEW_KEYS)
    assert len(set(REVIEW_KEYS)) == len(REVIEW_KEYS)
    assert not set(REVIEW_KEYS) & set("xufa[]")  # the station's other keys (app.js)


# ---- who may reach the station (docs/review.md, "Who may reach the station") -----------------

PAGE = {"X-Requested-With": "marrowdiff"}
PASSWORD = "correct horse battery"


@pytest.fixture
def with_accounts(tiny_run, tmp_path):
    """A station with accounts: Bea reviews, Sam signs."""
    accounts = Accounts(tmp_path / "review")
    accounts.add("Bea", "reviewer", PASSWORD)
    accounts.add("Sam", "signer", PASSWORD)
    return local(station(tiny_run, tmp_path / "review"), accounts=accounts)


def log_in(client, name):
    response = client.post("/api/login", headers=PAGE, json={"name": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response


def test_with_accounts_nothing_is_served_before_logging_in(with_accounts):
    client = with_accounts
    assert client.get("/").status_code == 200  # the page and its login form
    assert client.get("/api/me").json() == {"accounts": True, "detail": "log in first"}
    for path in ("/openapi.json", "/docs", "/redoc"):  # no schema of the API, to anyone
        assert client.get(path).status_code == 404, path
    for path in (
        "/api/info",
        "/api/cases",
        "/api/cases/1",
        "/api/cells/1/image.jpg",
        "/api/images/1/field.jpg",
        "/api/cases/1/log",
        "/api/detection",
    ):
        assert client.get(path).status_code == 401, path
    typed = client.post("/api/cases", headers=ANA | {"X-User": "Sam"}, json={"name": "c"})
    assert typed.status_code == 401  # a typed name is no login
    wrong = client.post("/api/login", headers=PAGE, json={"name": "Sam", "password": "guess"})
    assert wrong.status_code == 401 and "wrong user name or password" in wrong.text

    cookie = log_in(client, "Sam").headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert client.get("/api/me").json() == {"accounts": True, "name": "Sam", "role": "signer"}
    assert client.get("/api/cases").status_code == 200
    client.post("/api/logout", headers=PAGE)
    assert client.get("/api/cases").status_code == 401


def test_only_a_signer_signs_and_the_log_names_the_logged_in_user(with_accounts, tmp_path):
    client = with_accounts
    log_in(client, "Bea")
    forged = PAGE | {"X-User": "Sam"}  # Bea's session, claiming to be Sam: the session wins
    case = client.post("/api/cases", headers=forged, json={"name": "smear-9"}).json()["id"]
    client.post(
        f"/api/cases/{case}/images",
        headers=forged,
        files=[("files", ("field.png", synthetic_field(), "image/png"))],
    )
    for cell in client.get(f"/api/cases/{case}").json()["cells"]:
        client.post(f"/api/cells/{cell['id']}", headers=forged, json={"status": "confirmed"})
    refused = client.post(f"/api/cases/{case}/sign", headers=forged)
    assert refused.status_code == 403 and "only a signer signs; Bea is a reviewer" in refused.text

    log_in(client, "Sam")
    assert client.post(f"/api/cases/{case}/sign", headers=PAGE).status_code == 200
    log = client.get(f"/api/cases/{case}/log").json()
    assert {e["user"] for e in log if e["action"] != "sign"} == {"Bea"}
    assert [e["user"] for e in log if e["action"] == "sign"] == ["Sam"]
    about = client.get(f"/api/cases/{case}/report/report.json").json()["about"]
    assert about["signed_by"] == "Sam" and about["reviewed_by"] == ["Bea"]
    html = client.get(f"/api/cases/{case}/report/report.html").text
    assert "reviewed by a person (Bea); signed by Sam" in html


def test_a_foreign_host_or_a_change_from_another_site_is_refused(client):
    assert client.get("/api/cases", headers={"Host": "evil.example"}).status_code == 400
    no_mark = client.post("/api/cases", headers={"X-User": "ana"}, json={"name": "c"})
    assert no_mark.status_code == 403 and "X-Requested-With" in no_mark.text
    cross = client.post(
        "/api/cases", headers=ANA | {"Origin": "http://evil.example"}, json={"name": "c"}
    )
    assert cross.status_code == 403 and "another site" in cross.text
    here = ANA | {"Origin": "http://127.0.0.1"}
    same = client.post("/api/cases", headers=here, json={"name": "c"})
    assert same.status_code == 201
    assert client.get("/favicon.ico").status_code == 200


def test_a_user_name_outside_latin_1_is_kept_as_typed(client):
    for header, name in (
        ("%C5%81ukasz", "Łukasz"),  # what the page sends: percent-encoded UTF-8
        ("%E5%BC%A0%E4%BC%9F", "张伟"),
        ("Zoë".encode(), "Zoë"),  # raw UTF-8 bytes, as curl sends them
        ("Zoë".encode("latin-1"), "Zoë"),  # a Latin-1 byte
    ):
        case = {"name": f"by {header!r}"}
        response = client.post("/api/cases", headers=PAGE | {"X-User": header}, json=case)
        assert response.status_code == 201, response.text
        assert response.json()["created_by"] == name


def test_serving_beyond_this_machine_needs_accounts_and_host_names(tmp_path):

    with pytest.raises(AccountError, match="without accounts"):
        serving_hosts("192.168.1.5", [], accounts=False)
    with pytest.raises(AccountError, match="--allowed-host"):
        serving_hosts("0.0.0.0", [], accounts=True)
    assert serving_hosts("0.0.0.0", ["marrow.lab"], accounts=True) == (*LOOPBACK, "marrow.lab")
    assert serving_hosts("127.0.0.1", [], accounts=False) == LOOPBACK


def test_the_signed_report_follows_count_and_the_reviews(tiny_run, tmp_path):
    """A border cell stays out when confirmed (one rule with `count`), a corrected cell carries
    the model's probability of its new class, and a case with no cells cannot be signed."""
    client = local(station(tiny_run, tmp_path / "r"))
    empty = new_case(client, "empty")
    refused = client.post(f"/api/cases/{empty}/sign", headers=ANA)
    assert refused.status_code == 400 and "has no cells" in refused.text
    case = new_case(client)
    assert upload(client, case, ("field.png", synthetic_field())).status_code == 200
    cells = client.get(f"/api/cases/{case}").json()["cells"]
    border, corrected = cells[0], cells[1]
    with sqlite3.connect(tmp_path / "r" / "marrowdiff.sqlite3") as db:  # as detection marks one
        db.execute("UPDATE cells SET model_flag = 'border' WHERE id = ?", (border["id"],))
    classes = load_classifier([tiny_run]).classes
    other = next(c for c in classes if c != corrected["model_class"])
    client.post(
        f"/api/cells/{corrected['id']}", headers=ANA, json={"status": "corrected", "label": other}
    )
    for c in cells:
        if c["id"] != corrected["id"]:
            client.post(f"/api/cells/{c['id']}", headers=ANA, json={"status": "confirmed"})
    assert client.post(f"/api/cases/{case}/sign", headers=ANA).status_code == 200
    report = client.get(f"/api/cases/{case}/report/report.json").json()
    assert report["n_counted"] == len(cells) - 1 and report["flagged"] == {"border": 1}
    assert report["estimate"]["n_cells"] == len(cells) - 1
    assert report["estimate"]["n_verified"] == len(cells) - 1  # of the estimated cells
    rows = {(r["x"], r["y"]): r for r in report["cells"]}
    row = rows[(round(corrected["x"], 1), round(corrected["y"], 1))]
    assert row["class"] == other
    assert row["probability"] == round(corrected["proba"][classes.index(other)], 4)
    assert rows[(round(border["x"], 1), round(border["y"], 1))]["flag"] == "border"


def test_an_added_cell_marked_not_a_cell_was_a_slip_not_a_missed_cell(client, tmp_path):
    case = new_case(client)
    upload(client, case, ("field.png", synthetic_field()))
    view = client.get(f"/api/cases/{case}").json()
    field = view["images"][0]
    x, y = miss_one(tmp_path / "review", view, field)
    at = f"/api/cases/{case}/images/{field['id']}/cells"
    cell = client.post(at, headers=ANA, json={"x": x, "y": y}).json()["cell"]
    client.post(f"/api/cells/{cell['id']}", headers=ANA, json={"status": "not_a_cell"})
    for c in client.get(f"/api/cases/{case}").json()["cells"]:
        if c["id"] != cell["id"]:
            client.post(f"/api/cells/{c['id']}", headers=ANA, json={"status": "confirmed"})
    assert client.post(f"/api/cases/{case}/sign", headers=ANA).status_code == 200
    detection = client.get(f"/api/cases/{case}/report/report.json").json()["about"]["detection"]
    assert detection["added"] == 0 and detection["recall"] == 1.0


def test_forty_parallel_guesses_over_http_get_five_checks(tiny_run, tmp_path):
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from marrowdiff.web import accounts as accounts_module

    accounts = Accounts(tmp_path / "review")
    accounts.add("Sam", "signer", PASSWORD)
    app = create_app(station(tiny_run, tmp_path / "review"), accounts)

    def guess(url: str, k: int) -> int:
        body = json.dumps({"name": "Sam", "password": f"guess number {k}"}).encode()
        request = urllib.request.Request(
            url + "/api/login", body, PAGE | {"Content-Type": "application/json"}
        )
        try:
            return urllib.request.urlopen(request, timeout=60).status
        except urllib.error.HTTPError as error:
            return error.code

    with serving(app) as url, ThreadPoolExecutor(40) as pool:
        codes = list(pool.map(lambda k: guess(url, k), range(40)))
    assert codes.count(401) == accounts_module.PER_SOURCE  # checked, wrong
    assert codes.count(429) == 40 - accounts_module.PER_SOURCE  # refused before any check


LONE = '"\\ud800"'  # JSON for a lone surrogate: valid JSON, no valid text


def _raw(client, path: str, body: str, headers=ANA):
    return client.post(path, content=body, headers=headers | {"Content-Type": "application/json"})


def test_a_lone_surrogate_anywhere_in_json_is_a_422_sentence(tiny_run, tmp_path):
    accounts = Accounts(tmp_path / "review-a")
    accounts.add("Sam", "signer", PASSWORD)
    logins = local(station(tiny_run, tmp_path / "review-a"), accounts=accounts)
    for body in (f'{{"name": {LONE}, "password": "x"}}', f'{{"name": "Sam", "password": {LONE}}}'):
        response = _raw(logins, "/api/login", body, PAGE)
        assert response.status_code == 422 and "lone surrogate" in response.json()["detail"]

    client = local(station(tiny_run, tmp_path / "review"))
    for body in (f'{{"name": {LONE}}}', f'{{"name": "c", "patient": {LONE}}}'):
        response = _raw(client, "/api/cases", body)
        assert response.status_code == 422 and "lone surrogate" in response.json()["detail"]
    case = new_case(client)
    assert upload(client, case, ("field.png", synthetic_field())).status_code == 200
    view = client.get(f"/api/cases/{case}").json()
    image, cell = view["images"][0]["id"], view["cells"][0]["id"]
    for body in (f'{{"status": {LONE}}}', f'{{"status": "corrected", "label": {LONE}}}'):
        response = _raw(client, f"/api/cells/{cell}", body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith(("status:", "unknown class"))
    added = _raw(client, f"/api/cases/{case}/images/{image}/cells", f'{{"x": {LONE}, "y": 3}}')
    assert added.status_code == 422 and added.json()["detail"].startswith("x:")


def test_a_station_served_on_ipv6_loopback_answers_and_still_refuses_strangers(tiny_run, tmp_path):
    from marrowdiff.web.app import host_name

    hosts = serving_hosts("::1", [], accounts=False)
    app = create_app(station(tiny_run, tmp_path / "review"), allowed_hosts=hosts)
    client = TestClient(app, base_url="http://[::1]:8000")  # Host: [::1]:8000
    assert client.get("/api/cases", headers={"X-User": "ana"}).status_code == 200
    made = client.post(
        "/api/cases", headers=ANA | {"Origin": "http://[::1]:8000"}, json={"name": "c"}
    )
    assert made.status_code == 201
    assert client.get("/api/cases", headers={"Host": "[::2]:8000"}).status_code == 400
    assert client.get("/api/cases", headers={"Host": "[::1"}).status_code == 400
    assert host_name("[::1]:8000") == "::1" and host_name("Marrow.Lab:80") == "marrow.lab"
