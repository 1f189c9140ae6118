"""`marrowdiff validate`: a model against a station's signed, blind-reviewed cases."""

import json

import pytest

from marrowdiff.cli import main
from marrowdiff.inference.predict import load_classifier
from marrowdiff.web.validate import ValidationError, reference_cases, validate

from .test_blind_review import PAGE, blind_case, say


@pytest.fixture
def signed(lab, tmp_path):
    """Two cases reviewed blind by Ana and Ben (they disagree once, Cleo decides) and signed,
    and one case left open."""
    _, people = lab
    for name, cells in (("first", 3), ("second", 4)):
        case, ids = blind_case(people["sam"], cells, reviewers=2, name=name)
        for k, cell in enumerate(ids):
            say(people["ana"], cell, ("myeloblast", "promyelocyte", "myelocyte")[k % 3])
            say(people["ben"], cell, ("myeloblast", "promyelocyte", "promyelocyte")[k % 3])
        for cell in ids[2::3]:
            people["cleo"].post(f"/api/cells/{cell}/adjudicate", headers=PAGE,
                                json={"status": "corrected", "label": "myelocyte"})  # fmt: skip
        assert people["sam"].post(f"/api/cases/{case}/sign", headers=PAGE).status_code == 200
    blind_case(people["sam"], 1, reviewers=2, name="open")
    return tmp_path / "review"


def test_validate_compares_the_model_with_the_reference(signed, stage_run, tmp_path):
    cases = reference_cases(signed)
    assert [c.name for c in cases] == ["first", "second"]
    assert cases[0].cells[2].reviewers == {"ana": "myelocyte", "ben": "promyelocyte"}
    out = tmp_path / "validation"
    result = validate(load_classifier([stage_run]), cases, out, "stage", demonstration=True)
    assert {p.name for p in out.iterdir()} == {"validation.html", "validation.json", "plots"}
    assert len(list((out / "plots").glob("*.png"))) == 3
    first = result["per_case"][0]
    assert first["reference_cells"] == 3
    assert [r["reference_percent"] for r in first["classes"]] == [33.33, 33.33, 33.33]
    # Rümke: 1 of 3 cells is 0.8-90.6% (exact binomial)
    assert first["classes"][0]["low"] == pytest.approx(0.84, abs=0.01)
    assert result["cells"]["cells"] == 7
    # the reviewers disagree on 2 of 7 cells: their kappa is known, so each class is judged
    assert result["reviewers"]["cells"] == 7 and result["reviewers"]["percent"] == 71.43
    assert set(result["within_variation"]) == {"myeloblast", "promyelocyte", "myelocyte"}
    about = json.loads((out / "validation.json").read_text())["about"]
    assert about["reviewers"] == ["ana", "ben"] and about["signed_by"] == ["sam"]
    assert about["model_sha256"] and about["cases"] == ["first", "second"]
    page = (out / "validation.html").read_text()
    assert "A demonstration, not a validation" in page and "Rümke" in page


def test_validate_refuses_what_cannot_be_a_reference(signed, stage_run, tiny_run, tmp_path):
    with pytest.raises(ValidationError, match="case 'open' is not signed"):
        reference_cases(signed, ["first", "open"])
    with pytest.raises(ValidationError, match="no case named 'nope'"):
        reference_cases(signed, ["nope"])
    with pytest.raises(ValidationError, match="not a review station's data folder"):
        reference_cases(tmp_path / "elsewhere")
    out = tmp_path / "never"
    cases = reference_cases(signed)
    with pytest.raises(ValidationError, match="class 'myelocyte' of case 'first' is not one"):
        validate(load_classifier([tiny_run]), cases, out, "tiny")
    about = signed / "cases" / "1" / "export" / "case.json"
    about.write_text(json.dumps(json.loads(about.read_text()) | {"vocabulary": "marrow14"}))
    with pytest.raises(ValidationError, match="case 'first' was reviewed in vocabulary 'marrow14'"):
        validate(load_classifier([stage_run]), reference_cases(signed), out, "stage")
    assert not out.exists()  # nothing written half
    # a damaged export: a sentence naming the case, not a traceback
    about.write_text("{not json")
    with pytest.raises(ValidationError, match="case 'first': its export .* is damaged"):
        reference_cases(signed)
    about.write_text(json.dumps({"vocabulary": "choi2017"}))
    crop = next((signed / "cases" / "2" / "export" / "crops").iterdir())
    crop.write_bytes(b"not a png")
    with pytest.raises(ValidationError, match=f"case 'second': cannot read .*{crop.name}"):
        validate(load_classifier([stage_run]), reference_cases(signed, ["second"]), out, "s")
    assert not out.exists()


def test_validate_from_the_command_line(signed, stage_run, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["validate", str(stage_run), "--data-dir", str(signed), "--out", str(out),
                 "--case", "second"]) == 0  # fmt: skip
    assert "1 case(s), 4 cells" in capsys.readouterr().out
    assert main(["validate", str(stage_run), "--data-dir", str(signed), "--out", str(out),
                 "--case", "open"]) == 2  # fmt: skip
    assert "not signed" in capsys.readouterr().err
