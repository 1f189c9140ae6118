"""Blind double review through the API: verdicts nobody else can read before they are opened,
the consensus, adjudication (also "between two stages"), sign-off, the export and agreement."""

import csv
import json

import numpy as np
import pytest

from marrowdiff.data.datasets import open_dataset
from marrowdiff.labels import LabelSpace
from marrowdiff.synthetic.cells import synthetic_cell
from marrowdiff.web.store import Store, StoreError

from ..conftest import STAGE_CLASSES, encode
from .conftest import PEOPLE
from .test_webapp import PAGE

STAGE_CODES = ("myeloblast", "promyelocyte", "myelocyte")


def blind_case(client, cells=4, name="double", **options) -> tuple[int, list[int]]:
    made = client.post("/api/cases", headers=PAGE, json={"name": name, **options})
    assert made.status_code == 201, made.text
    case = made.json()["id"]
    rng = np.random.default_rng(3)
    radii = list(STAGE_CLASSES.values())
    files = [
        ("files", (f"c{k}.png", encode(synthetic_cell(rng, 48, radius=radii[k % 3])), "image/png"))
        for k in range(cells)
    ]
    assert client.post(f"/api/cases/{case}/images", headers=PAGE, files=files).status_code == 200
    ids = [c["id"] for c in client.get(f"/api/cases/{case}").json()["cells"]]
    return case, ids


def say(client, cell, label=None, status="corrected"):
    body = {"status": status} | ({"label": label} if label else {})
    return client.post(f"/api/cells/{cell}", headers=PAGE, json=body)


def test_a_blind_double_review_from_verdicts_to_signed_export(lab, tmp_path):
    review_station, people = lab
    ana, ben, cleo, sam = (people[n] for n in PEOPLE)
    case, cells = blind_case(sam, reviewers=2, hide_model=True)

    # Blind: the model's class is hidden, and nobody sees another's verdict.
    view = ana.get(f"/api/cases/{case}").json()
    assert view["differential"] is None and view["blind"]["hide_model"]
    assert all(c["model_class"] is None and c["proba"] is None for c in view["cells"])
    assert say(ana, cells[0], status="confirmed").status_code == 400  # nothing to confirm
    ana_says = ["myeloblast", "promyelocyte", "myelocyte", "myelocyte"]
    ben_says = ["myeloblast", "promyelocyte", "promyelocyte", "not_a_cell"]
    for cell, label in zip(cells, ana_says, strict=True):
        response = say(ana, cell, label)
        assert response.status_code == 200 and response.json()["cell"]["my_verdict"] == label
    for cell, verdict in zip(cells[:3], ben_says[:3], strict=True):
        assert say(ben, cell, verdict).status_code == 200
    # Ben reads the case, its log and its agreement: none shows Ana's verdicts.
    seen = ben.get(f"/api/cases/{case}").json()
    assert [c["my_verdict"] for c in seen["cells"]] == [*ben_says[:3], None]
    assert all("verdicts" not in c for c in seen["cells"])
    assert seen["blind"] | {"mine": 3, "complete": 3, "open": False} == seen["blind"]
    log = ben.get(f"/api/cases/{case}/log").json()
    theirs = [e for e in log if e["action"] == "verdict" and e["user"] == "ana"]
    assert len(theirs) == 4 and all("myel" not in json.dumps(e["detail"]) for e in theirs)
    assert ben.get(f"/api/cases/{case}/agreement").status_code == 400
    asked = ben.get(f"/api/cases/{case}/verdicts", params={"reviewer": "ana"})
    assert asked.status_code == 403 and "hidden until every cell" in asked.text
    own = ben.get(f"/api/cases/{case}/verdicts").json()
    assert {v["user"] for v in own} == {"ben"} and len(own) == 3
    # Nothing can be adjudicated or signed while the review is blind.
    early = {"status": "corrected", "label": "myelocyte"}
    assert (
        cleo.post(f"/api/cells/{cells[2]}/adjudicate", headers=PAGE, json=early).status_code == 400
    )
    assert "still blind" in sam.post(f"/api/cases/{case}/sign", headers=PAGE).text

    # The last verdict opens them: agreed cells take the consensus, two wait for adjudication.
    assert say(ben, cells[3], status="not_a_cell").status_code == 200
    opened = ana.get(f"/api/cases/{case}").json()
    assert opened["blind"]["open"] and opened["blind"]["disputed"] == 2
    by_id = {c["id"]: c for c in opened["cells"]}
    assert by_id[cells[0]]["label"] == "myeloblast" and by_id[cells[0]]["status"] != "pending"
    assert by_id[cells[2]]["verdicts"] == {"ana": "myelocyte", "ben": "promyelocyte"}
    assert say(ana, cells[2], "myelocyte").status_code == 400  # verdicts are sealed
    opened_verdicts = ben.get(f"/api/cases/{case}/verdicts", params={"reviewer": "ana"}).json()
    assert [v["verdict"] for v in opened_verdicts] == ana_says

    # Only an adjudicator who gave no verdict decides; "between" needs neighbouring stages.
    decide = {"status": "corrected", "between": ["myelocyte", "promyelocyte"]}
    path = f"/api/cells/{cells[2]}/adjudicate"
    assert ana.post(path, headers=PAGE, json=decide).status_code == 403  # a reviewer
    assert cleo.post(path, headers=PAGE, json=decide | {"between": ["myeloblast", "myelocyte"]}
                     ).status_code == 422  # fmt: skip
    decided = cleo.post(path, headers=PAGE, json=decide)
    assert decided.status_code == 200, decided.text
    assert decided.json()["cell"]["label"] == "promyelocyte|myelocyte"
    assert "await an adjudicator" in sam.post(f"/api/cases/{case}/sign", headers=PAGE).text
    last = sam.post(f"/api/cells/{cells[3]}/adjudicate", headers=PAGE,
                    json={"status": "not_a_cell"})  # fmt: skip
    assert last.status_code == 200 and last.json()["cell"]["status"] == "not_a_cell"
    assert cleo.post(path, headers=PAGE, json=decide).status_code == 400  # decided already

    agreement = ana.get(f"/api/cases/{case}/agreement").json()
    assert agreement["reviewers"] == ["ana", "ben"] and agreement["cells"] == 4
    assert agreement["pooled"]["percent"] == 50.0 and agreement["all_agree_percent"] == 50.0
    assert agreement["pooled"]["adjacent_percent"] == 75.0  # myelocyte vs promyelocyte
    signed = sam.post(f"/api/cases/{case}/sign", headers=PAGE)
    assert signed.status_code == 200, signed.text

    # The export: consensus, each reviewer's verdict, "between" as a set-valued label.
    export = tmp_path / "review" / "cases" / str(case) / "export"
    with open(export / "manifest.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    labels = [r["label"] for r in rows]
    assert labels[:3] == ["myeloblast", "promyelocyte", "promyelocyte|myelocyte"]
    assert json.loads(rows[2]["reviewers"]) == {"ana": "myelocyte", "ben": "promyelocyte"}
    assert {r["group"] for r in rows} == {"case:double"}
    about = json.loads((export / "case.json").read_text())
    assert about["reviewers"] == ["ana", "ben"] and about["adjudicated_by"] == ["cleo", "sam"]
    assert about["reviewers_per_cell"] == 2 and about["model_hidden"]
    report = json.loads((tmp_path / "review/cases" / str(case) / "report/report.json").read_text())
    blind = report["about"]["review"]["blind"]
    assert blind["adjudicated"] == 2 and blind["between"] == 1
    assert report["about"]["reviewed_by"] == ["ana", "ben", "cleo", "sam"]
    # The between cell counts once, as one of its two stages.
    assert report["n_counted"] == 3

    # `marrowdiff train` takes the export as it is: "between" is a coarse label of two stages,
    # the case is the group (one case cannot be split; a laboratory trains on many).
    dataset = open_dataset(export / "manifest.csv", "choi2017")
    assert {r.label for r in dataset.records} >= {"promyelocyte|myelocyte"}
    assert len({r.group for r in dataset.records}) == 1
    space = LabelSpace.of(dataset.vocabulary, STAGE_CODES, ["promyelocyte|myelocyte"])
    assert space.sets[-1].tolist() == [False, True, True]


def test_a_case_reviewed_once_cannot_be_adjudicated(lab):
    _, people = lab
    case, cells = blind_case(people["sam"])
    assert say(people["ana"], cells[0], "myeloblast").status_code == 200
    refused = people["cleo"].post(f"/api/cells/{cells[0]}/adjudicate", headers=PAGE,
                                  json={"status": "corrected", "label": "myelocyte"})  # fmt: skip
    assert refused.status_code == 400 and "one reviewer per cell" in refused.text
    assert people["ana"].get(f"/api/cases/{case}/agreement").status_code == 400


def test_a_reviewer_may_not_adjudicate_and_a_case_asks_sensible_things(lab, tmp_path):
    _, people = lab
    case, cells = blind_case(people["sam"], cells=1, reviewers=2)
    say(people["ana"], cells[0], "myeloblast")
    say(people["ben"], cells[0], "myelocyte")
    refused = people["ben"].post(f"/api/cells/{cells[0]}/adjudicate", headers=PAGE,
                                 json={"status": "corrected", "label": "myelocyte"})  # fmt: skip
    assert refused.status_code == 403 and "only an adjudicator" in refused.text
    # a signer who reviewed the cell does not decide it either
    store = Store(tmp_path / "review" / "marrowdiff.sqlite3")
    with pytest.raises(StoreError, match="ana reviewed cell"):
        store.adjudicate(cells[0], "ana", "corrected", "myelocyte")
    with pytest.raises(StoreError, match="1 to 5 reviewers"):
        store.create_case("x", "sam", reviewers=9)
    with pytest.raises(StoreError, match="part of a blind review"):
        store.create_case("y", "sam", hide_model=True)
    # Opened, the case takes no more images (they would have no verdicts).
    files = [("files", ("late.png", encode(synthetic_cell(np.random.default_rng(0), 48)),
                        "image/png"))]  # fmt: skip
    late = people["sam"].post(f"/api/cases/{case}/images", headers=PAGE, files=files)
    assert late.status_code in (400, 415) and "blind review is over" in late.text


def test_verdicts_cannot_be_rewritten_even_by_sql(lab, tmp_path):
    _, people = lab
    case, cells = blind_case(people["sam"], cells=1, reviewers=2)
    say(people["ana"], cells[0], "myeloblast")
    say(people["ben"], cells[0], "myeloblast")
    store = Store(tmp_path / "review" / "marrowdiff.sqlite3")
    with pytest.raises(Exception, match="sealed"):
        store.db.execute("UPDATE verdicts SET verdict = 'myelocyte'")
    with pytest.raises(Exception, match="never deleted"):
        store.db.execute("DELETE FROM verdicts")
