"""The review station's work, without the web: upload and count, review, differential, sign-off.

`ReviewStation` joins the records (`web.store.Store`), the model (`predict.Classifier`) and the
files under the data folder:

    DATA_DIR/marrowdiff.sqlite3            cases, images, cells, the append-only log
    DATA_DIR/images/<case>/<uuid>.png      uploads, under names the server chose
    DATA_DIR/slides/<case>/<uuid>/         a registered slide's count (as `marrowdiff count`);
                                           the slide itself stays where it is (`--slides`)
    DATA_DIR/cases/<case>/report/          written at sign-off (as `marrowdiff count`)
    DATA_DIR/cases/<case>/export/          reviewed cells as a labelled data set:
                                           manifest.csv (path,label,group) + crops/
"""

from __future__ import annotations

import csv
import json
import threading
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from marrowdiff.classes import BETWEEN, Vocabulary
from marrowdiff.counting.count import (
    CountConfig,
    classify_images,
    count_field,
    field_preview,
    thumbnail,
)
from marrowdiff.counting.detect import MIN_STAIN, crop, stain_at
from marrowdiff.counting.report import About, Cell, FieldImage, ReportConfig, summarise
from marrowdiff.counting.report_files import write_report
from marrowdiff.counting.scale import heading
from marrowdiff.domain import DomainCheck
from marrowdiff.errors import UserError
from marrowdiff.fileio import save_image, write_json, write_text
from marrowdiff.images import ImageReadError, decode_rgb, encode_jpeg
from marrowdiff.inference.predict import Classifier
from marrowdiff.slides.count import SlideCountConfig
from marrowdiff.slides.job import count_slide
from marrowdiff.validation.agreement import reviewers as reviewer_agreement
from marrowdiff.web.slides import SlideViews, resolve_slide
from marrowdiff.web.store import ForbiddenError, NewCell, SignedError, Store, StoreError

# What a reviewed cell counts as in the differential (pending cells keep the model's flag).
REVIEW_FLAGS = {
    "confirmed": "",
    "corrected": "",
    "not_a_cell": "not a cell",
    "unidentified": "unidentified",
}


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 40 * 2**20  # one upload
    max_files: int = 50  # per request
    max_pixels: int = 50_000_000  # a decoded image
    field_side: float = 2.5  # an image this many patch sides long (or more) is a field
    same_cell: float = 0.3  # an added cell this close to another (cell diameters) is that cell


class UploadError(UserError, ValueError):
    """An upload the station will not take; the message says why (for a 4xx)."""


class ReviewStation:
    def __init__(
        self,
        data_dir: str | Path,
        classifier: Classifier,
        count: CountConfig | None = None,
        report: ReportConfig | None = None,
        limits: Limits | None = None,
        model_name: str = "",
        slides: Path | None = None,
        slide_config: SlideCountConfig | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.store = Store(self.data_dir / "marrowdiff.sqlite3")
        self.classifier = classifier
        self.count = count or CountConfig()
        self.report = report or ReportConfig()
        self.limits = limits or Limits()
        self.model_name = model_name
        self._images: OrderedDict[int, np.ndarray] = OrderedDict()  # a few decoded uploads
        self._lock = threading.Lock()
        self.slides_root = None if slides is None else Path(slides)
        self.slide_config = slide_config or SlideCountConfig()  # tiles, map (`count SLIDE`)
        size = classifier.global_.size
        self.slides = SlideViews(self.slides_root, size.mpp if size is not None else None)

    # upload ------------------------------------------------------------------------------------

    def upload(self, case_id: int, user: str, filename: str, data: bytes) -> dict:
        """Decode, store and count one uploaded image; returns what was found."""
        self._takes_cells(case_id)  # before any work
        if len(data) > self.limits.max_file_bytes:
            raise UploadError(
                f"{filename}: {len(data) / 2**20:.1f} MB is over the "
                f"{self.limits.max_file_bytes / 2**20:.0f} MB limit"
            )
        try:
            image = decode_rgb(data, max_pixels=self.limits.max_pixels)
        except ImageReadError as error:
            raise UploadError(f"{filename}: not an image this station can read ({error})") from None
        h, w = image.shape[:2]
        is_field = max(h, w) >= self.limits.field_side * self.count.detect.patch_size
        warning = ""
        if is_field:
            cells, preview = count_field(self.classifier, filename, image, self.count)
            warning = preview.warning
        else:
            cells = classify_images(self.classifier, [(filename, image)], self.count.tta, False)
        stored = f"{uuid.uuid4().hex}.png"
        save_image(self._image_path(case_id, stored), Image.fromarray(image))
        image_id, cell_ids = self.store.add_image(
            case_id,
            user,
            "field" if is_field else "patch",
            _display_name(filename),
            stored,
            (w, h),
            [_new_cell(c) for c in cells],
            warning,
        )
        return {
            "image": image_id,
            "name": _display_name(filename),
            "kind": "field" if is_field else "patch",
            "cells": len(cell_ids),
            "warning": warning,
        }

    def _takes_cells(self, case_id: int) -> None:
        """Refuse new cells before any work: in a signed case, or one whose blind review is
        over (the records refuse them too, in the transaction that would add them)."""
        case = self.store.case(case_id)  # an unknown case: NotFoundError
        if case["signed_at"]:
            raise SignedError(f"case {case_id} is signed: it takes no more images or cells")
        if case["reviewers"] > 1 and case["unblinded_at"]:
            raise StoreError(
                f"case {case_id}'s blind review is over: it takes no more images or cells; "
                "start a new case for them"
            )

    def register_slide(self, case_id: int, user: str, path: str, cells: int | None = None) -> dict:
        """Count a slide from the slide folder into the case (its best countable tiles until
        `cells`, default the report's target, are in the differential, as `count` does); the
        slide is read where it lies, never copied."""
        self._takes_cells(case_id)  # before any work
        found = resolve_slide(self.slides_root, path)
        out = self.data_dir / "slides" / str(case_id) / uuid.uuid4().hex
        config = replace(self.slide_config, count=self.count, cells=cells or self.report.target)
        try:
            summary = count_slide(self.classifier, found, config, self.report, out,
                                  self.model_name, log=lambda message: None)  # fmt: skip
        except UserError as error:  # not a slide, no scale, no countable area...
            raise UploadError(f"{path}: {error}") from None
        with open(out / "cells.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        classes = self.classifier.classes
        new = [
            NewCell(
                float(r["x"]), float(r["y"]), r["class"], float(r["probability"]), r["flag"],
                [float(r[f"p_{k}"]) for k in classes],
                distance=float(r["distance"]) if r["distance"] else None,
            )
            for r in rows
        ]  # fmt: skip
        slide = summary["slide"]
        stored = str(found.relative_to(self.slides_root.resolve()))
        image_id, cell_ids = self.store.add_image(
            case_id, user, "slide", found.name, stored, (slide["width"], slide["height"]), new
        )
        return {"image": image_id, "name": found.name, "kind": "slide", "cells": len(cell_ids),
                "report": str(out / "report.html")}  # fmt: skip

    def dzi(self, image_id: int) -> str:
        return self.slides.dzi(self._slide_row(image_id)["stored_name"])

    def dz_tile(self, image_id: int, level: int, col: int, row: int) -> bytes:
        return self.slides.tile(self._slide_row(image_id)["stored_name"], level, col, row)

    def _slide_row(self, image_id: int) -> dict:
        row = self.store.image(image_id)
        if row["kind"] != "slide":
            raise StoreError(f"image {image_id} is a {row['kind']}, not a slide")
        return row

    def add_cell(self, case_id: int, image_id: int, user: str, x: float, y: float) -> dict:
        """A nucleated cell the detector missed, at field pixel (x, y): cropped and classified
        as `count` would, and added unreviewed. Refused outside the field or where nothing is
        stained like a cell (`detect.stain_at`: bare plasma, a red cell) here, and by the
        records (`Store.add_cell`, in one transaction) on a patch, on another case's image, in
        a signed case, or on top of a cell already there."""
        self._takes_cells(case_id)  # before any work
        row = self.store.image(image_id)
        if row["kind"] == "slide":
            raise StoreError(
                "adding a missed cell is done on fields for now; on a slide, count the area "
                "again or review it in QuPath (docs/review.md)"
            )
        w, h = row["width"], row["height"]
        if not (0 <= x < w and 0 <= y < h):
            raise StoreError(f"({x:.0f}, {y:.0f}) is outside the {w} x {h} field")
        field = self._load(row["case_id"], image_id, row["stored_name"])
        stain = stain_at(field, y, x, self.count.detect)
        if stain < MIN_STAIN:
            raise StoreError(
                f"no stained cell at ({x:.0f}, {y:.0f}) ({100 * stain:.0f}% of its centre "
                "stained): click on the middle of a nucleated cell"
            )
        patch = crop(field, y, x, self.count.detect.patch_size)
        (cell,) = classify_images(self.classifier, [("", patch)], self.count.tta, False)
        cell = replace(cell, x=x, y=y)  # where it is in the field, not in its patch
        gap = self.limits.same_cell * self.count.detect.cell_diameter
        return self.store.add_cell(case_id, image_id, user, _new_cell(cell, "reviewer"), gap)

    def field_jpeg(self, image_id: int) -> bytes:
        """A field as the report previews it (at most 1,000 px wide), for the field view."""
        return encode_jpeg(self._field(self.store.image(image_id)).preview, quality=85)

    def _field(self, row: dict) -> FieldImage:
        """An uploaded field (an `images` row) as the report shows it, with what detection
        noticed about it."""
        image = self._load(row["case_id"], row["id"], row["stored_name"])
        return field_preview(row["original_name"], image, row["warning"])

    def _image_path(self, case_id: int, stored: str) -> Path:
        return self.data_dir / "images" / str(case_id) / stored

    def _load(self, case_id: int, image_id: int, stored: str) -> np.ndarray:
        """A stored upload, decoded; the last few are kept (a review walks one field's cells)."""
        with self._lock:
            if image_id in self._images:
                self._images.move_to_end(image_id)
                return self._images[image_id]
        image = np.asarray(Image.open(self._image_path(case_id, stored)).convert("RGB"))
        with self._lock:
            self._images[image_id] = image
            while len(self._images) > 8:
                self._images.popitem(last=False)
        return image

    def _crop(self, cell: dict) -> np.ndarray:
        """A cell row (`Store.cells`) -> its patch: the upload itself, or a crop of its field."""
        if cell["image_kind"] == "slide":
            patch = self.count.detect.patch_size
            return self.slides.crop(cell["image_file"], cell["x"], cell["y"], patch)
        image = self._load(cell["case_id"], cell["image_id"], cell["image_file"])
        if cell["image_kind"] == "patch":
            return image
        return crop(image, cell["y"], cell["x"], self.count.detect.patch_size)

    def cell_jpeg(self, cell_id: int, side: int = 96) -> bytes:
        return encode_jpeg(self._crop(self.store.cell(cell_id)), side, quality=88)

    # the differential --------------------------------------------------------------------------

    def _report_cells(self, rows: list[dict], thumbnails: bool = False) -> list[Cell]:
        """Cell rows as the report counts them: a reviewed cell by its review, a pending one by
        the model's flag."""
        out = []
        classes = self.classifier.classes
        for c in rows:
            c = c | {"label": counted_as(c, classes)}
            flag = c["model_flag"] if c["status"] == "pending" else REVIEW_FLAGS[c["status"]]
            verified = c["status"] in ("confirmed", "corrected")
            if verified and c["model_flag"] == "border":
                flag = "border"  # one rule with `count`: a cell the border cuts is not counted
            proba = np.array(c["proba"])
            # the model's probability of the cell's class now (a corrected cell's new class)
            p = float(proba[classes.index(c["label"])]) if c["label"] in classes else 0.0
            out.append(
                Cell(
                    c["image_name"],
                    c["x"],
                    c["y"],
                    c["label"],
                    p,
                    flag,
                    proba,
                    thumbnail(self._crop(c)) if thumbnails else None,
                    verified=verified,
                    distance=np.nan if c["distance"] is None else c["distance"],
                )
            )
        return out

    def differential(self, case_id: int, rows: list[dict] | None = None) -> dict:
        rows = self.store.cells(case_id) if rows is None else rows
        cells = self._report_cells(rows)
        scale = self.classifier.calibration(self.count.tta).interval_scale
        domain = self._domain(cells)
        vocabulary = self.classifier.vocabulary
        classes = self.classifier.classes
        return summarise(
            cells, vocabulary, self.report, (), scale, domain, heading(domain), classes
        )

    def _domain(self, cells: list[Cell]) -> DomainCheck:
        """The domain check of a case's cells (those the detector and the model found)."""
        return self.classifier.check(np.array([c.distance for c in cells]))

    def view(self, case_id: int, user: str | None = None) -> dict:
        """Everything the review page shows of a case, as `user` may see it (`shown_cells`)."""
        case = self.store.case(case_id)
        rows = self.store.cells(case_id)
        verdicts = self.store.verdicts(case_id) if case["reviewers"] > 1 else []
        return {
            "case": case,
            "blind": self._blind_progress(case, rows, user, verdicts),
            "images": [
                row | {"scale": self.slides.scale(row["stored_name"])}
                if row["kind"] == "slide"
                else row
                for row in self.store.images(case_id)
            ],  # a slide's level-0 px per px of the model's scale: its cells' size on it
            "cells": self.shown_cells(case, rows, user, verdicts),
            "differential": None if hides_model(case) else self.differential(case_id, rows),
        }

    # blind double review -----------------------------------------------------------------------

    def shown_cells(
        self, case: dict, rows: list[dict], user: str | None, verdicts: list[dict] | None = None
    ) -> list[dict]:
        """A case's cells as `user` may see them. While a blind review runs, each cell shows
        only this user's own verdict (`my_verdict`) and, if the case hides the model, nothing
        of the model's class or probabilities; once the verdicts are opened, every reviewer's
        (`verdicts`: {reviewer: verdict}). `verdicts`: the case's (`Store.verdicts`), if read."""
        if case["reviewers"] < 2:
            return rows
        verdicts = self.store.verdicts(case["id"]) if verdicts is None else verdicts
        if not is_blind(case):
            said = by_cell(verdicts)
            return [row | {"verdicts": said.get(row["id"], {})} for row in rows]
        mine = {v["cell_id"]: v["verdict"] for v in verdicts if v["user"] == user}
        hidden = dict.fromkeys(MODEL_KEYS) if case["hide_model"] else {}
        return [row | hidden | {"my_verdict": mine.get(row["id"])} for row in rows]

    def shown_cell(self, cell: dict, user: str | None) -> dict:
        """One cell as `user` may see it (after a review, or an added cell)."""
        (shown,) = self.shown_cells(self.store.case(cell["case_id"]), [cell], user)
        return shown

    def shown_differential(self, case_id: int) -> dict | None:
        """The case's differential, or None while a blind review hides the model's classes."""
        return None if hides_model(self.store.case(case_id)) else self.differential(case_id)

    def _blind_progress(
        self, case: dict, rows: list[dict], user: str | None, verdicts: list[dict]
    ) -> dict | None:
        """A blind case's state: verdicts each cell needs, whether the model is hidden, and
        how far the review is (this user's verdicts, cells with all theirs), never whose."""
        if case["reviewers"] < 2:
            return None
        per_cell = Counter(v["cell_id"] for v in verdicts)
        return {
            "reviewers": case["reviewers"],
            "hide_model": bool(case["hide_model"]),
            "open": not is_blind(case),
            "cells": len(rows),
            "mine": sum(v["user"] == user for v in verdicts),
            "complete": sum(per_cell[r["id"]] >= case["reviewers"] for r in rows),
            "disputed": sum(r["status"] == "pending" for r in rows) if not is_blind(case) else None,
        }

    def _reviewed_by(self, case: dict, rows: list[dict], said: dict) -> list[str]:
        """Everyone whose verdicts the case's classes rest on (reviewers and adjudicators)."""
        if case["reviewers"] < 2:
            return sorted({c["reviewed_by"] for c in rows if c["reviewed_by"]})
        people = {name for verdicts in said.values() for name in verdicts}
        return sorted(people | {c["reviewed_by"] for c in rows if _adjudicated(c, said)})

    def _double_review(self, case: dict, rows: list[dict], said: dict) -> dict:
        """For the report: how a blind double review went (nothing for a single review)."""
        if case["reviewers"] < 2:
            return {}
        agreement = reviewer_agreement(said, self.classifier.vocabulary)
        decided = [c for c in rows if _adjudicated(c, said)]
        return {"blind": {
            "reviewers_per_cell": case["reviewers"],
            "model_hidden": bool(case["hide_model"]),
            "reviewers": agreement["reviewers"],
            "all_agree_percent": agreement["all_agree_percent"],
            "kappa": agreement["pooled"]["kappa"],
            "fleiss_kappa": agreement["fleiss_kappa"],
            "adjudicated": len(decided),
            "between": sum(BETWEEN in c["label"] for c in decided),
            "adjudicators": sorted({c["reviewed_by"] for c in decided}),
        }}  # fmt: skip

    def _verdicts_by_cell(self, case_id: int) -> dict[int, dict[str, str]]:
        return by_cell(self.store.verdicts(case_id))

    def log(self, case_id: int, user: str | None) -> list[dict]:
        """The case's log as `user` may read it: while a blind review runs, another
        reviewer's verdict is shown as given, never what it was."""
        case = self.store.case(case_id)
        entries = self.store.log(case_id)
        if not is_blind(case):
            return entries
        return [
            e | {"detail": {"verdict": "withheld until the verdicts are opened"}}
            if e["action"] == "verdict" and e["user"] != user
            else e
            for e in entries
        ]

    def verdicts(self, case_id: int, user: str | None, reviewer: str | None = None) -> list[dict]:
        """A case's verdicts as `user` may read them: while it is blind, their own only (asking
        for another reviewer's is refused); once opened, everyone's, or `reviewer`'s."""
        case = self.store.case(case_id)
        if case["reviewers"] < 2:
            raise StoreError(f"case {case['name']!r} is reviewed once per cell: it has no verdicts")
        if is_blind(case):
            if reviewer is not None and reviewer != user:
                raise ForbiddenError(
                    f"{reviewer}'s verdicts are hidden until every cell of case "
                    f"{case['name']!r} has its {case['reviewers']} verdicts"
                )
            return self.store.verdicts(case_id, user or "")
        return self.store.verdicts(case_id, reviewer)

    def agreement(self, case_ids: list[int]) -> dict:
        """How the reviewers agree over cases whose blind review is over (refused for a case
        still blind, or one reviewed once)."""
        verdicts: dict[tuple[int, int], dict[str, str]] = {}
        names = []
        for case_id in case_ids:
            case = self.store.case(case_id)
            if case["reviewers"] < 2:
                raise StoreError(f"case {case['name']!r} was reviewed once per cell: no agreement")
            if is_blind(case):
                raise StoreError(
                    f"case {case['name']!r} is still blind: its agreement is known when every "
                    "cell has its verdicts"
                )
            names.append(case["name"])
            for cell_id, said in self._verdicts_by_cell(case_id).items():
                verdicts[(case_id, cell_id)] = said
        return {"cases": names} | reviewer_agreement(verdicts, self.classifier.vocabulary)

    # sign-off ----------------------------------------------------------------------------------

    def sign(self, case_id: int, user: str) -> dict:
        """Freeze the case (refused while any cell is unreviewed, or if it is signed already),
        then write the report and the export from the frozen cells, so that a review arriving
        during sign-off is either in the report or refused. If they cannot be written, the
        case is reopened (logged) and the error raised."""
        signed = self.store.sign(case_id, user)
        try:
            rows = self.store.cells(case_id)  # frozen: no review can change them now
            said = self._verdicts_by_cell(case_id)  # {cell: {reviewer: verdict}}
            folder = self.data_dir / "cases" / str(case_id)
            cells = self._report_cells(rows, thumbnails=True)
            images = self.store.images(case_id)
            fields = [self._field(row) for row in images if row["kind"] == "field"]
            about = About(
                model=self.model_name,
                cell_radius=self.count.detect.cell_radius,
                calibration=self.classifier.calibration(self.count.tta).to_dict(),
                model_sha256=self.classifier.checksum or None,
                case=signed["name"],
                patient=signed["patient"] or None,
                stain=signed["stain"] or None,
                operator=signed["created_by"],
                signed_by=user,
                reviewed_by=self._reviewed_by(signed, rows, said),
                review=review_summary(rows) | self._double_review(signed, rows, said),
                detection=self.store.detection_tally(case_id),  # by the reviewer's verdicts
            )
            vocabulary, classes = self.classifier.vocabulary, self.classifier.classes
            domain = self._domain(cells)
            write_report(
                folder / "report",
                cells,
                fields,
                vocabulary,
                classes,
                self.report,
                about,
                domain,
                heading(domain),
            )
            self._export(rows, signed, folder / "export", said)
        except BaseException as error:
            self.store.reopen(case_id, user, f"{type(error).__name__}: {error}")
            raise
        return {"case": signed, "report": str(folder / "report"), "export": str(folder / "export")}

    def _export(self, rows: list[dict], case: dict, out: Path, said: dict) -> None:
        """Reviewed cells with their final labels: a CSV manifest `marrowdiff train` reads
        (`path,label,group`, the case as the group, so that splits keep a case together),
        with each reviewer's verdict beside the consensus (`reviewers`, JSON) in a blind
        double review, and `case.json`: who reviewed and signed the case, with which model
        and vocabulary (what `marrowdiff validate` checks). An object marked not a cell is
        exported as an outcome that is not counted (`label`) so that a laboratory's own
        verdicts teach the next model what to set aside; a cell between two stages as "A|B"."""
        lines = ["path,label,group,model_class,status,reviewers"]
        vocabulary = self.classifier.vocabulary
        for c in rows:
            label = exported_label(c, vocabulary)
            if label is None:
                continue
            name = f"crops/cell{c['id']}.png"
            save_image(out / name, Image.fromarray(self._crop(c)))
            group = _csv(f"case:{case['name']}")
            verdicts = _csv(json.dumps(said.get(c["id"], {}), ensure_ascii=False))
            lines.append(f"{name},{label},{group},{c['model_class']},{c['status']},{verdicts}")
        write_text(out / "manifest.csv", "\n".join(lines) + "\n")
        write_json(out / "case.json", {
            "case": case["name"],
            "signed_at": case["signed_at"],
            "signed_by": case["signed_by"],
            "reviewers_per_cell": case["reviewers"],
            "model_hidden": bool(case["hide_model"]),
            "reviewers": sorted({n for v in said.values() for n in v} or
                                {c["reviewed_by"] for c in rows if c["reviewed_by"]}),
            "adjudicated_by": sorted({c["reviewed_by"] for c in rows if _adjudicated(c, said)}),
            "vocabulary": vocabulary.name,
            "classes": list(self.classifier.classes),
            "model": self.model_name,
            "model_sha256": self.classifier.checksum or None,
            "cells": len(lines) - 1,
        })  # fmt: skip


# The outcome an object marked "not a cell" is exported as, when the model did not already
# call it one of the outcomes that are not counted (`marrow14`: debris or artefact).
NOT_A_CELL = "not a cell"


def exported_label(row: dict, vocabulary: Vocabulary) -> str | None:
    """The label a reviewed cell is exported with, or None when it is not exported (pending,
    unidentified, or marked not a cell in a vocabulary without an outcome for it): its
    verified class; marked not a cell, the model's class if that is an outcome the vocabulary
    does not count (a red cell), else the vocabulary's "not a cell" outcome."""
    if row["status"] in ("confirmed", "corrected"):
        return row["label"]
    if row["status"] != "not_a_cell":
        return None
    model = row["model_class"]
    if model in vocabulary.codes and not vocabulary.counted(model):
        return model
    return vocabulary.resolve(NOT_A_CELL)


# What a case that hides the model shows of it while its blind review runs: nothing.
MODEL_KEYS = ("model_class", "probability", "proba", "model_flag", "label", "distance")


def is_blind(case: dict) -> bool:
    """A blind double review whose verdicts are not opened yet."""
    return case["reviewers"] > 1 and case["unblinded_at"] is None


def hides_model(case: dict) -> bool:
    return is_blind(case) and bool(case["hide_model"])


def by_cell(verdicts: list[dict]) -> dict[int, dict[str, str]]:
    """`Store.verdicts` rows as {cell: {reviewer: verdict}}."""
    said: dict[int, dict[str, str]] = {}
    for v in verdicts:
        said.setdefault(v["cell_id"], {})[v["user"]] = v["verdict"]
    return said


def _adjudicated(cell: dict, said: dict[int, dict[str, str]]) -> bool:
    """Whether a cell's reviewers disagreed (so an adjudicator decided it)."""
    return len(set(said.get(cell["id"], {}).values())) > 1


def counted_as(row: dict, classes: list[str]) -> str:
    """The class a cell counts as in the differential: its label, or for a cell between two
    stages ("A|B", an adjudicator's decision) the one of the two the model finds likelier."""
    label = row["label"]
    if BETWEEN not in label:
        return label
    members = [m for m in label.split(BETWEEN) if m in classes]
    if not members:
        return label
    return max(members, key=lambda m: row["proba"][classes.index(m)])


def review_summary(rows: list[dict]) -> dict:
    """What review changed in a case's cells (`Store.cells` rows): how many were re-classified
    and from which pre-classified class to which verified one, added, rejected, unidentified."""
    changes = Counter((c["model_class"], c["label"]) for c in rows if c["status"] == "corrected")
    return {
        "reviewed": sum(c["status"] != "pending" for c in rows),
        "reclassified": sum(changes.values()),
        "added": sum(c["origin"] == "reviewer" and c["status"] != "not_a_cell" for c in rows),
        "rejected": sum(c["status"] == "not_a_cell" for c in rows),
        "unidentified": sum(c["status"] == "unidentified" for c in rows),
        "changes": [{"from": a, "to": b, "cells": n} for (a, b), n in sorted(changes.items())],
    }


def _new_cell(c: Cell, origin: str = "detector") -> NewCell:
    """A classified cell as the records keep it."""
    proba = [float(p) for p in c.proba]
    distance = float(c.distance) if np.isfinite(c.distance) else None
    return NewCell(c.x, c.y, c.label, c.probability, c.flag, proba, origin, distance)


def _display_name(filename: str) -> str:
    """The uploaded file's own name, for people only (never used as a path)."""
    name = (filename or "upload").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in name if ch.isprintable())[:200] or "upload"


def _csv(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(ch in text for ch in ',"\n') else text
