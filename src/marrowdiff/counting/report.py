"""The differential-count report's numbers: counts and percentages per class, lineage totals,
the M:E ratio, the count against its target, flagged cells apart, and the estimate of every
cell that heads the report.

`summarise` is pure (cells in, numbers out); `report_files.write_report` writes it as JSON, CSV
and one offline HTML page (`report_html`).
Flagged cells (unsure of the model, cut by the field border, or marked by a reviewer) are never
in the counts: they are listed apart, so a person decides about them."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

import numpy as np

from marrowdiff import __version__
from marrowdiff.classes import Vocabulary, VocabularyError
from marrowdiff.domain import DomainCheck
from marrowdiff.estimate import expected_counts

REPORT_FORMAT = "marrowdiff.counting.report/1"


FLAGS = {
    "": "counted",
    "unsure": "the model is unsure (below its calibrated threshold)",
    "border": "cut by the field border",
}


@dataclass(frozen=True)
class ReportConfig:
    target: int = 500  # cells a differential should count (300 or 500 by laboratory policy)
    myeloid: tuple[str, ...] = ()  # class codes counted as myeloid (empty: lineage "myeloid")
    erythroid: tuple[str, ...] = ()  # class codes counted as erythroid (empty: "erythroid")
    alerts: tuple[str, ...] = ()  # laboratory flags, "CODE>PERCENT" or "CODE<PERCENT"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class About:
    """How a report was made (report.json's "about"): the model, how cells were found, and,
    from the review station, the case and who signed it."""

    model: str
    cell_radius: float  # px in the field: the circle drawn around each cell
    tta: bool | None = None
    calibration: dict | None = None
    detect: dict | None = None
    case: str | None = None  # specimen or accession id
    patient: str | None = None  # optional; the station and `count` never need one
    stain: str | None = None
    operator: str | None = None  # who made the count (or created the case)
    version: str = __version__  # marrowdiff's
    model_sha256: str | None = None  # the model's weights (or graph): which model, exactly
    signed_by: str | None = None
    reviewed_by: list[str] | None = None  # everyone who reviewed a cell of the case
    review: dict | None = None  # what review changed (`review_summary`)
    detection: dict | None = None  # detector precision and recall by the reviewers' verdicts
    stain_normalisation: str | None = None  # of each cell's input window (`--normalise-stain`)
    scale: dict | None = None  # the scale cells were read at (`cellsize.Scale`)
    colour: dict | None = None  # their colours against the training cells' (`stain.ColourShift`)

    CASE_FIELDS: ClassVar[tuple[str, ...]] = ("case", "patient", "stain", "operator")

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Cell:
    field: str  # the field (image) it was found in, or the patch file
    x: float  # centre, px
    y: float
    label: str  # class code
    probability: float
    flag: str = ""  # "" (counted), "unsure", "border", or a reviewer's mark
    proba: np.ndarray | None = None  # calibrated, in the model's class order
    thumbnail: np.ndarray | None = field(default=None, repr=False)  # small RGB crop
    verified: bool = False  # a person confirmed or corrected `label`
    distance: float = float("nan")  # from the model's training cells (domain.py); NaN: unknown


@dataclass
class FieldImage:
    name: str
    height: int
    width: int
    preview: np.ndarray  # the field downscaled for the report
    scale: float  # preview px per field px
    warning: str = ""  # what detection noticed about this field (detect.size_warning)


@dataclass(frozen=True)
class Alert:
    """A flag a laboratory sets on a class's share, e.g. "myeloblast>5": raised when the
    estimate's share is above (or below, with "<") the percentage."""

    code: str
    above: bool
    percent: float

    @classmethod
    def parse(cls, text: str, vocabulary: Vocabulary) -> Alert:
        match = re.fullmatch(r"\s*([\w-]+)\s*([<>])\s*(\d+(?:\.\d*)?)\s*%?\s*", text)
        if not match:
            raise VocabularyError(
                f"--alert {text!r}: write CLASS>PERCENT or CLASS<PERCENT, e.g. myeloblast>5"
            )
        code, sign, percent = match.groups()
        codes = vocabulary.codes
        by_abbrev = {vocabulary[c].abbrev.lower(): c for c in codes if vocabulary[c].abbrev}
        code = code if code in vocabulary.codes else by_abbrev.get(code.lower(), code)
        if code not in vocabulary.codes or not vocabulary.counted(code):
            raise VocabularyError(
                f"--alert {text!r}: {code!r} is not a counted class of vocabulary "
                f"{vocabulary.name!r} ({', '.join(vocabulary.fine_codes)})"
            )
        return cls(code, sign == ">", float(percent))

    def raised(self, percent: float) -> bool:
        return percent > self.percent if self.above else percent < self.percent

    def describe(self, vocabulary: Vocabulary) -> str:
        return f"{vocabulary[self.code].name} {'>' if self.above else '<'} {self.percent:g}%"


def check_config(vocabulary: Vocabulary, config: ReportConfig) -> list[Alert]:
    """A report configuration checked against the model's vocabulary before any work (a wrong
    --myeloid or --alert is a VocabularyError naming it); returns the parsed alerts."""
    lineage_sets(vocabulary, config)
    return [Alert.parse(text, vocabulary) for text in config.alerts]


def lineage_sets(vocabulary: Vocabulary, config: ReportConfig) -> tuple[list[str], list[str]]:
    def pick(given: tuple[str, ...], lineage: str) -> list[str]:
        if given:
            unknown = set(given) - set(vocabulary.codes)
            if unknown:
                raise VocabularyError(
                    f"--{lineage} names {sorted(unknown)}, not classes of vocabulary "
                    f"{vocabulary.name!r} ({', '.join(vocabulary.codes)})"
                )
            return list(given)
        return [
            c
            for c in vocabulary.fine_codes
            if vocabulary[c].lineage == lineage and vocabulary.counted(c)
        ]

    return pick(config.myeloid, "myeloid"), pick(config.erythroid, "erythroid")


# A differential with more unsure cells than this share is said to be untrustworthy, first.
MOSTLY_UNSURE = 0.5
# Flags of cells that are in the estimate: sure ones, and those the model is unsure of.
ESTIMATED_FLAGS = ("", "unsure")


def estimate(cells: list[Cell], vocabulary: Vocabulary, scale: float = 1.0) -> dict:
    """The differential of every cell that is not cut by the border or rejected, each by its
    class (a person's, or the model's top class: unsure cells included), with 95% intervals
    (`estimate.expected_counts` of one-hot rows). `scale` (the model's
    `Calibration.interval_scale`) widens the intervals in proportion to the share of cells not
    verified: a verified count's interval is the sampling one. The count of every cell was
    chosen over the expected count from probabilities on validation fields
    (docs/BENCHMARKS.md, "Which estimate heads the report")."""
    codes = [c for c in vocabulary.fine_codes if vocabulary.counted(c)]
    index = {c: i for i, c in enumerate(codes)}
    estimated = [c for c in cells if c.flag in ESTIMATED_FLAGS]
    rows = np.zeros((len(estimated), len(codes)))
    for row, c in zip(rows, estimated, strict=True):
        if c.label in index:  # an object set aside (a platelet, a red cell) counts as no cell
            row[index[c.label]] = 1.0
    unverified = np.mean([not c.verified for c in estimated]) if estimated else 0.0
    widened = float(np.sqrt(1 + (scale**2 - 1) * unverified))
    result = expected_counts(rows, widened)
    return {"codes": codes, "n_verified": sum(c.verified for c in estimated)} | result


def summarise(
    cells: list[Cell],
    vocabulary: Vocabulary,
    config: ReportConfig,
    fields: list[str] = (),
    interval_scale: float = 1.0,
    domain: DomainCheck | None = None,
    heading: list[str] = (),
    classes: list[str] | None = None,
) -> dict:
    """The numbers of the report, from the cells and the names of the fields examined (pure).
    An object of a class the vocabulary does not count (a platelet, a red cell, debris) is set
    aside: named by its reason (`not_counted`), never counted. `classes`: the model's, to say
    when it has no outcome for objects that are not cells (`noncell_warning`).
    `estimate` (the headline) counts every cell but those cut by the border or rejected, by its
    class, with 95% intervals (`interval_scale`: the model's); `classes` counts the sure cells
    only. `domain`: the domain check of the cells (`domain.check_cells`), recorded; `heading`:
    the warnings that come before all others (`scale.heading`: the domain check's, the scale
    check's)."""
    unknown = {c.label for c in cells} - set(vocabulary.codes)
    if unknown:
        raise VocabularyError(
            f"cells of {sorted(unknown)}, not classes of vocabulary {vocabulary.name!r}"
        )
    counted = [c for c in cells if not c.flag and vocabulary.counted(c.label)]
    named = Counter(c.label for c in set_aside(cells, vocabulary))
    flagged = {f: sum(c.flag == f for c in cells) for f in sorted({c.flag for c in cells}) if f}
    guess = estimate(cells, vocabulary, interval_scale)
    noncells = "" if classes is None else noncell_warning(vocabulary, classes)
    return (
        {
            "format": REPORT_FORMAT,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "vocabulary": vocabulary.name,
            "n_fields": len({c.field for c in cells} | set(fields)),  # a field without cells too
            "n_cells_found": len(cells),
            "n_counted": len(counted),
            "target": config.target,
            "target_reached": guess["n"] >= config.target,
            "flagged": flagged,
            "not_counted": dict(named),
        }
        | sure_counts(counted, vocabulary, config)
        | {
            "estimate": estimate_summary(guess, vocabulary, config),
            "alerts": raised_alerts(guess, vocabulary, config),
            "warnings": [
                *heading,
                *_warnings(guess["n"], named, flagged, vocabulary, config),
                *filter(None, [noncells]),
            ],
            "domain": None if domain is None else domain.to_dict(),
        }
    )


def set_aside(cells: list[Cell], vocabulary: Vocabulary) -> list[Cell]:
    """The objects set aside as not nucleated cells: of a class the vocabulary does not count
    (a platelet, a red cell or overlap, debris), and not cut by the border or rejected."""
    return [c for c in cells if c.flag in ESTIMATED_FLAGS and not vocabulary.counted(c.label)]


def noncell_warning(vocabulary: Vocabulary, classes: list[str]) -> str:
    """A warning ("" if none) when a model cannot set aside the objects a detector finds that
    are not nucleated cells, because it has none (or not all) of the vocabulary's outcomes
    for them: every such object is then counted as one of its cell classes."""
    outcomes = [c for c in vocabulary.fine_codes if not vocabulary.counted(c)]
    missing = [c for c in outcomes if c not in classes]
    if outcomes and not missing:
        return ""
    where = 'docs/counting.md, "Objects that are not cells"'
    if len(missing) == len(outcomes):  # none (or a vocabulary that names none)
        return (
            "this model has no outcome for objects that are not nucleated cells (red cells, "
            "platelets, debris): any such object found is counted as one of its cell classes. "
            "Review every cell, or count with a model trained with mined non-cells "
            f"(`marrowdiff mine`; {where})"
        )
    return (
        f"this model has no outcome for {_names(vocabulary, missing)}: any such object found "
        f"is counted as one of its cell classes; review the cells ({where})"
    )


def sure_counts(counted: list[Cell], vocabulary: Vocabulary, config: ReportConfig) -> dict:
    """The count of sure cells: per class, per lineage, and their M:E ratio."""
    n = len(counted)
    tally = Counter(c.label for c in counted)

    def share(k: int) -> float | None:
        return round(100 * k / n, 2) if n else None

    codes = [c for c in vocabulary.fine_codes if vocabulary.counted(c)]
    classes = [
        _described(vocabulary, code) | {"count": tally[code], "percent": share(tally[code])}
        for code in codes
    ]
    lineages = Counter()
    for row in classes:
        lineages[row["lineage"]] += row["count"]
    myeloid, erythroid = lineage_sets(vocabulary, config)
    m, e = sum(tally[c] for c in myeloid), sum(tally[c] for c in erythroid)
    definition = (
        f"M:E = counted myeloid cells ({_names(vocabulary, myeloid)}) / counted "
        f"erythroid cells ({_names(vocabulary, erythroid)}); flagged cells excluded"
    )
    return {
        "classes": classes,
        "lineages": [{"lineage": k, "count": v, "percent": share(v)} for k, v in lineages.items()],
        "me_ratio": {
            "value": round(m / e, 3) if e else None,
            "myeloid": m,
            "erythroid": e,
            "definition": definition,
        },
    }


def estimate_summary(guess: dict, vocabulary: Vocabulary, config: ReportConfig) -> dict:
    """The headline: every cell's class (`estimate`), with 95% intervals and the M:E ratio."""
    expected = dict(zip(guess["codes"], guess["expected"], strict=True))
    myeloid, erythroid = lineage_sets(vocabulary, config)
    m_hat = sum(expected.get(c, 0.0) for c in myeloid)
    e_hat = sum(expected.get(c, 0.0) for c in erythroid)
    classes = [
        _described(vocabulary, code)
        | {
            "expected": _number(guess["expected"][i], 1),
            "percent": _number(guess["percent"][i]),
            "low": _number(guess["low"][i], 1),
            "high": _number(guess["high"][i], 1),
        }
        for i, code in enumerate(guess["codes"])
    ]
    return {
        "method": (
            "every cell not cut by the border or rejected, by its class (a person's, or the "
            "model's top class: unsure cells included); 95% interval from the sampling of n "
            "cells, widened by the model's validation error for cells not verified"
        ),
        "n_cells": _number(guess["n"], 1),
        "n_verified": guess["n_verified"],
        "classes": classes,
        "me_ratio": round(m_hat / e_hat, 3) if e_hat > 0 else None,
    }


def raised_alerts(guess: dict, vocabulary: Vocabulary, config: ReportConfig) -> list[str]:
    """The laboratory's alerts whose class share, in the estimate, crosses its limit."""
    estimated = dict(zip(guess["codes"], guess["percent"], strict=True))
    return [
        f"{alert.describe(vocabulary)}: estimated {estimated[alert.code]:.1f}%"
        for alert in check_config(vocabulary, config)
        if np.isfinite(estimated[alert.code]) and alert.raised(estimated[alert.code])
    ]


def _warnings(
    n: float, named: Counter, flagged: dict, vocabulary: Vocabulary, config: ReportConfig
) -> list[str]:
    warnings = []
    if n and flagged.get("unsure", 0) > MOSTLY_UNSURE * n:  # first: it heads the report
        warnings.append(
            f"the model is unsure of most cells ({flagged['unsure']} of {n:.0f}, "
            f"{flagged['unsure'] / n:.0%}): these images may differ from the ones it learned "
            "from (stain, scale, camera), and its estimate is not to be trusted unreviewed. "
            "Review every cell, or train with your own verified cells (docs/training.md, "
            '"Your own cells")'
        )
    aside = sum(named.values())
    if not n:  # an empty differential says why, first
        warnings.append(
            f"no nucleated cell was counted: all {aside} object(s) found were set aside as not "
            "nucleated cells (listed below)"
            if aside
            else "no nucleated cell was counted: none was found (an empty field, or a field "
            "at another scale: docs/counting.md)"
        )
    elif n < config.target:  # the cells of the differential, the headline
        warnings.append(
            f"only {n:.0f} cells in the differential, below the target of {config.target}: "
            "the percentages are less precise than a full differential's"
        )
    if named:
        warnings.append(
            f"{aside} object(s) set aside as not nucleated cells, never counted: "
            + ", ".join(f"{k} {vocabulary[code].name.lower()}" for code, k in named.most_common())
        )
    if flagged.get("unsure"):
        warnings.append(
            f"{flagged['unsure']} cell(s) the model is unsure of are in the estimate by their "
            "top class but not in the count of sure cells: review them"
        )
    return warnings


def _described(vocabulary: Vocabulary, code: str) -> dict:
    """A class as the report names it."""
    c = vocabulary[code]
    return {"code": code, "name": c.name, "abbrev": c.abbrev, "lineage": c.lineage}


def _number(v: float, digits: int = 2) -> float | None:
    return None if not np.isfinite(v) else round(float(v), digits)


def _names(vocabulary: Vocabulary, codes: list[str]) -> str:
    """Class names for people: "myeloblast, promyelocyte" (not codes)."""
    return ", ".join(vocabulary[c].name.lower() for c in codes) or "none"
