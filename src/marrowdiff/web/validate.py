"""`marrowdiff validate`: a model against the reviewed reference of a station's signed cases.

The reference is what sign-off exported (`ReviewStation._export`): each case's manifest.csv
(the consensus of every exported cell and each reviewer's verdict) and case.json (who, with
which vocabulary and classes). The model classifies the same crops; `validation.compare`
measures it and `validation.report` writes the report. Every case is checked before any cell is
classified, and nothing is written unless all of it can be.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from marrowdiff.counting.count import classify_images
from marrowdiff.errors import UserError
from marrowdiff.images import ImageReadError, decode_rgb
from marrowdiff.inference.predict import Classifier
from marrowdiff.validation.compare import ReferenceCase, ReferenceCell, compare
from marrowdiff.validation.report import write_validation
from marrowdiff.web.store import Store

DATABASE = "marrowdiff.sqlite3"


class ValidationError(UserError, ValueError):
    """Cases that cannot be a reference for this model; the message names the case or class."""


def reference_cases(data_dir: Path, names: list[str] | None = None) -> list[ReferenceCase]:
    """The signed cases of a station's data folder (those named, or all of them)."""
    if not (data_dir / DATABASE).is_file():
        raise ValidationError(
            f"{data_dir} is not a review station's data folder (no {DATABASE}); give the folder "
            "`marrowdiff serve --data-dir` uses"
        )
    store = Store(data_dir / DATABASE)
    try:
        cases = {c["name"]: c for c in store.cases()}
    finally:
        store.close()
    if names:
        unknown = [n for n in names if n not in cases]
        if unknown:
            raise ValidationError(f"no case named {', '.join(map(repr, unknown))} in {data_dir}")
        unsigned = [n for n in names if not cases[n]["signed_at"]]
        if unsigned:
            raise ValidationError(
                f"case {', '.join(map(repr, unsigned))} is not signed: a reference is made of "
                "signed cases only; finish and sign its review first"
            )
        chosen = [cases[n] for n in names]
    else:
        chosen = sorted((c for c in cases.values() if c["signed_at"]), key=lambda c: c["id"])
        if not chosen:
            raise ValidationError(f"{data_dir} has no signed case: review and sign cases first")
    return [_read_case(data_dir / "cases" / str(c["id"]) / "export", c["name"]) for c in chosen]


def _read_case(folder: Path, name: str) -> ReferenceCase:
    manifest, about = folder / "manifest.csv", folder / "case.json"
    if not manifest.is_file() or not about.is_file():
        raise ValidationError(
            f"case {name!r}: its export ({folder}) has no manifest.csv and case.json; it was "
            "signed by a version before validation: review it again in a new case"
        )
    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        cells = tuple(
            ReferenceCell(str(folder / r["path"]), r["label"], json.loads(r["reviewers"] or "{}"))
            for r in rows
        )
        meta = json.loads(about.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, ValueError, KeyError, TypeError, csv.Error) as error:
        raise ValidationError(
            f"case {name!r}: its export in {folder} is damaged ({type(error).__name__}: "
            f"{error}); sign-off writes it whole, so restore it from a backup"
        ) from None
    if not cells:
        raise ValidationError(f"case {name!r} exported no cells: nothing to compare")
    return ReferenceCase(name, meta, cells)


def _crop(path: str, case: str) -> np.ndarray:
    """An exported cell's crop, or a sentence naming it."""
    try:
        return decode_rgb(Path(path).read_bytes())
    except (OSError, ImageReadError) as error:
        raise ValidationError(
            f"case {case!r}: cannot read {path} ({error}); sign-off writes every crop, so "
            "restore the export from a backup"
        ) from None


def check(cases: list[ReferenceCase], classifier: Classifier) -> None:
    """Refuse a reference this model cannot be compared with, naming the case or class."""
    vocabulary = classifier.vocabulary
    model = set(classifier.classes)
    for case in cases:
        if case.about.get("vocabulary") != vocabulary.name:
            raise ValidationError(
                f"case {case.name!r} was reviewed in vocabulary {case.about.get('vocabulary')!r}"
                f"; the model speaks {vocabulary.name!r}: compare a model of the same vocabulary"
            )
        theirs = set(case.about.get("classes", ()))
        if theirs != model:
            missing, extra = sorted(theirs - model), sorted(model - theirs)
            if missing:
                what = f"class {missing[0]!r} of case {case.name!r} is not one of the model's"
            else:
                what = f"the model's class {extra[0]!r} was not among case {case.name!r}'s"
            raise ValidationError(
                f"{what}: a model is compared with a reference of the same classes"
            )


# CLSI EP09 (measurement procedure comparison) asks for at least 40 patient samples.
MIN_CASES = 40


def warnings(cases: list[ReferenceCase], single: list[str]) -> list[str]:
    """What the report must say before its numbers."""
    out = []
    if len(cases) < MIN_CASES:
        out.append(
            f"{len(cases)} case(s): the limits of agreement and the regression need many more "
            f"to be precise (CLSI EP09 asks for at least {MIN_CASES} samples); read them as "
            "a first look"
        )
    if single and len(single) < len(cases):
        out.append(
            f"{len(single)} case(s) reviewed by one person ({', '.join(single)}): the "
            "reviewers' own agreement comes from the double-reviewed cases only"
        )
    return out


def validate(
    classifier: Classifier,
    cases: list[ReferenceCase],
    out: Path,
    model_name: str,
    tta: bool = False,
    demonstration: bool = False,
    log=print,
) -> dict:
    """Classify every reference cell with the model, compare, and write the report."""
    check(cases, classifier)
    predicted = {}
    for case in cases:
        images = [(c.path, _crop(c.path, case.name)) for c in case.cells]
        found = classify_images(classifier, images, tta, False)
        predicted[case.name] = [cell.label for cell in found]
        log(f"{case.name}: {len(found)} cells classified")
    vocabulary = classifier.vocabulary
    result = compare(cases, predicted, vocabulary, list(classifier.classes))
    reviewers = sorted({n for c in cases for n in c.about.get("reviewers", ())})
    single = [c.name for c in cases if c.about.get("reviewers_per_cell", 1) < 2]
    result["warnings"] = warnings(cases, single)
    result["about"] = {
        "model": model_name,
        "model_sha256": classifier.checksum or None,
        "vocabulary": vocabulary.name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cases": [c.name for c in cases],
        "reviewers": reviewers,
        "signed_by": sorted({c.about.get("signed_by") or "" for c in cases} - {""}),
        "demonstration": demonstration,
    }
    write_validation(out, result, vocabulary)
    return result
