"""The differential-count report: counts and percentages per class, lineage totals, the M:E
ratio, the count against its target, flagged cells apart; as JSON, CSV and one offline HTML page.

`summarise` is pure (cells in, numbers out); `write_report` renders and writes atomically.
Flagged cells (unsure of the model, cut by the field border, or marked by a reviewer) are never
in the counts: they are listed apart, so a person decides about them.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from marrowdiff import __version__
from marrowdiff.classes import Vocabulary, VocabularyError
from marrowdiff.estimate import expected_counts
from marrowdiff.fileio import atomic_open, write_json, write_text
from marrowdiff.images import jpeg_data_uri

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
        if c.label in index:  # a platelet counts as no cell
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
) -> dict:
    """The numbers of the report, from the cells and the names of the fields examined (pure).
    A cell of a class the vocabulary does not count (a platelet) is named, not counted.
    `estimate` (the headline) counts every cell but those cut by the border or rejected, by its
    class, with 95% intervals (`interval_scale`: the model's); `classes` counts the sure cells
    only."""
    unknown = {c.label for c in cells} - set(vocabulary.codes)
    if unknown:
        raise ValueError(
            f"cells of {sorted(unknown)}, not classes of vocabulary {vocabulary.name!r}"
        )
    counted = [c for c in cells if not c.flag and vocabulary.counted(c.label)]
    named = Counter(c.label for c in cells if not c.flag and not vocabulary.counted(c.label))
    n = len(counted)
    tally = Counter(c.label for c in counted)

    def share(k: int) -> float | None:
        return round(100 * k / n, 2) if n else None

    classes = [
        {
            "code": code,
            "name": vocabulary[code].name,
            "abbrev": vocabulary[code].abbrev,
            "lineage": vocabulary[code].lineage,
            "count": tally[code],
            "percent": share(tally[code]),
        }
        for code in vocabulary.fine_codes
        if vocabulary.counted(code)
    ]
    lineages = Counter()
    for row in classes:
        lineages[row["lineage"]] += row["count"]
    myeloid, erythroid = lineage_sets(vocabulary, config)
    m = sum(tally[c] for c in myeloid)
    e = sum(tally[c] for c in erythroid)
    warnings = []
    guess = estimate(cells, vocabulary, interval_scale)
    if guess["n"] < config.target:  # the cells of the differential, the headline
        warnings.append(
            f"only {guess['n']:.0f} cells in the differential, below the target of "
            f"{config.target}: "
            "the percentages are less precise than a full differential's"
        )
    flagged = {
        flag: sum(c.flag == flag for c in cells) for flag in sorted({c.flag for c in cells}) if flag
    }
    if named:
        warnings.append(
            "not counted, as not nucleated marrow cells: "
            + ", ".join(f"{k} {vocabulary[code].name.lower()}(s)" for code, k in named.items())
        )
    if flagged.get("unsure"):
        warnings.append(
            f"{flagged['unsure']} cell(s) the model is unsure of are in the estimate by their "
            "top class but not in the count of sure cells: review them"
        )
    estimated = dict(zip(guess["codes"], guess["percent"], strict=True))
    raised = [
        f"{alert.describe(vocabulary)}: estimated {estimated[alert.code]:.1f}%"
        for alert in check_config(vocabulary, config)
        if np.isfinite(estimated[alert.code]) and alert.raised(estimated[alert.code])
    ]
    expected = dict(zip(guess["codes"], guess["expected"], strict=True))
    m_hat = sum(expected.get(c, 0.0) for c in myeloid)
    e_hat = sum(expected.get(c, 0.0) for c in erythroid)

    def number(v: float, digits: int = 2) -> float | None:
        return None if not np.isfinite(v) else round(float(v), digits)

    return {
        "format": REPORT_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "vocabulary": vocabulary.name,
        "n_fields": len({c.field for c in cells} | set(fields)),  # a field without cells too
        "n_cells_found": len(cells),
        "n_counted": n,
        "target": config.target,
        "target_reached": guess["n"] >= config.target,
        "flagged": flagged,
        "not_counted": dict(named),
        "classes": classes,
        "lineages": [{"lineage": k, "count": v, "percent": share(v)} for k, v in lineages.items()],
        "me_ratio": {
            "value": round(m / e, 3) if e else None,
            "myeloid": m,
            "erythroid": e,
            "definition": (
                f"M:E = counted myeloid cells ({_names(vocabulary, myeloid)}) / counted "
                f"erythroid cells ({_names(vocabulary, erythroid)}); flagged cells excluded"
            ),
        },
        "estimate": {
            "method": (
                "every cell not cut by the border or rejected, by its class (a person's, or the "
                "model's top class: unsure cells included); 95% interval from the sampling of n "
                "cells, widened by the model's validation error for cells not verified"
            ),
            "n_cells": number(guess["n"], 1),
            "n_verified": guess["n_verified"],
            "classes": [
                {
                    "code": code,
                    "name": vocabulary[code].name,
                    "abbrev": vocabulary[code].abbrev,
                    "lineage": vocabulary[code].lineage,
                    "expected": number(guess["expected"][i], 1),
                    "percent": number(guess["percent"][i]),
                    "low": number(guess["low"][i], 1),
                    "high": number(guess["high"][i], 1),
                }
                for i, code in enumerate(guess["codes"])
            ],
            "me_ratio": round(m_hat / e_hat, 3) if e_hat > 0 else None,
        },
        "alerts": raised,
        "warnings": warnings,
    }


def _names(vocabulary: Vocabulary, codes: list[str]) -> str:
    """Class names for people: "myeloblast, promyelocyte" (not codes)."""
    return ", ".join(vocabulary[c].name.lower() for c in codes) or "none"


def cell_rows(cells: list[Cell], classes: list[str]) -> list[dict]:
    rows = []
    for c in cells:
        row = {
            "field": c.field,
            "x": round(c.x, 1),
            "y": round(c.y, 1),
            "class": c.label,
            "probability": round(float(c.probability), 4),
            "flag": c.flag,
        }
        if c.proba is not None:
            row |= {f"p_{k}": round(float(p), 4) for k, p in zip(classes, c.proba, strict=True)}
        rows.append(row)
    return rows


def write_patch_csv(
    path: Path, names: list[str], proba: np.ndarray, unsure: np.ndarray, classes: list[str]
) -> None:
    """`classify`'s CSV (path, class, probability, flag, p_<class>...: the columns and rounding
    of `cell_rows` without x and y), written row by row, atomically."""
    with atomic_open(path, "w") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["path", "class", "probability", "flag", *(f"p_{k}" for k in classes)])
        for name, p, u in zip(names, proba, unsure, strict=True):
            k = int(p.argmax())
            writer.writerow(
                [name, classes[k], round(float(p[k]), 4), "unsure" if u else "",
                 *(round(float(v), 4) for v in p)]
            )  # fmt: skip


def write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    keys = list(dict.fromkeys(k for r in rows for k in r)) or ["field", "x", "y", "class"]
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def write_report(
    out: str | Path,
    cells: list[Cell],
    fields: list[FieldImage],
    vocabulary: Vocabulary,
    classes: list[str],
    config: ReportConfig,
    about: About,
) -> dict:
    """report.json, cells.csv and report.html in `out`; returns the summary."""
    out = Path(out)
    scale = (about.calibration or {}).get("interval_scale", 1.0)
    summary = summarise(cells, vocabulary, config, [f.name for f in fields], scale)
    summary["warnings"] += [f"{f.name}: {f.warning}" for f in fields if f.warning]
    summary |= {"about": about.to_dict(), "config": config.to_dict()}
    rows = cell_rows(cells, classes)
    write_json(out / "report.json", summary | {"cells": rows})
    write_csv(out / "cells.csv", rows)
    write_text(out / "report.html", render_html(summary, cells, fields, vocabulary, about))
    return summary


# ---------------------------------------------------------------------------------------------
# HTML


PALETTE = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
]


def field_overlay(
    image: FieldImage, cells: list[Cell], vocabulary: Vocabulary, radius: float
) -> Image.Image:
    """The field preview with each cell outlined and labelled (flagged cells dashed grey)."""
    canvas = Image.fromarray(image.preview)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=15)  # legible on a 1,000 px preview
    r = radius * image.scale
    for c in cells:
        x, y = c.x * image.scale, c.y * image.scale
        colour = "#777777" if c.flag else PALETTE[vocabulary.index(c.label) % len(PALETTE)]
        draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=2)
        text = _abbrev(vocabulary, c.label) + ("?" if c.flag == "unsure" else "")
        text = "border" if c.flag == "border" else text
        draw.text((x - r, y - r - 17), text, fill=colour, font=font, stroke_width=2,
                  stroke_fill="white")  # fmt: skip
    return canvas


def _abbrev(vocabulary: Vocabulary, code: str) -> str:
    return vocabulary[code].abbrev or code


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .7em;border-bottom:1px solid #ddd;
text-align:left}td.n{text-align:right}.warn{background:#fff3cd;border:1px solid #e0c060;
padding:.5em 1em;margin:.5em 0}.gallery{display:flex;flex-wrap:wrap;gap:4px}
.cell{width:84px;font-size:11px;text-align:center}.cell img{width:80px;height:80px}
.flagged img{outline:3px solid #e0a000}h2{margin-top:1.5em}.field img{max-width:100%}
.details th{font-weight:600;color:#555}.alert{background:#f8d7da;border:1px solid #c0392b;
padding:.5em 1em;margin:.5em 0;font-weight:600}.cell small{color:#555;word-break:break-all}
.cell img:focus{transform:scale(3);position:relative;z-index:2;box-shadow:0 0 0 1px #333;
outline:none}.cell img{cursor:zoom-in}
"""


def render_html(
    summary: dict,
    cells: list[Cell],
    fields: list[FieldImage],
    vocabulary: Vocabulary,
    about: About,
) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>marrowdiff differential count</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Differential count</h1>",
        _details(summary, about),
        f"<p>{summary['n_cells_found']} cells found in {summary['n_fields']} field(s); "
        f"{summary['n_counted']} of them sure or verified.</p>",
    ]
    if about.signed_by is not None:  # from the review station
        parts.append(
            f"<p>Every cell reviewed by a person ({esc(', '.join(about.reviewed_by or []))}); "
            f"signed by {esc(about.signed_by)}."
            f"{_detection_sentence(about.detection)}</p>"
        )
        parts.append(_review_section(about.review, vocabulary))
    else:
        parts.append(
            "<div class='warn'><b>Pre-classified by the model, not verified by a person.</b> "
            "For research use; a differential is released only after review "
            "(<code>marrowdiff serve</code>).</div>"
        )
    parts += [f"<div class='alert'>Alert: {esc(a)}</div>" for a in summary["alerts"]]
    parts += [f"<div class='warn'>{esc(w)}</div>" for w in summary["warnings"]]
    guess = summary["estimate"]
    parts.append(
        f"<h2>Differential: estimate of {guess['n_cells']} cells (target {summary['target']})</h2>"
    )
    rows = [r | {"interval": _interval(r)} for r in guess["classes"]]
    parts.append(_table(rows, ["name", "abbrev", "lineage", "expected", "percent", "interval"]))
    me_hat = guess["me_ratio"]
    parts.append(
        f"<p>Estimated M:E ratio {'undefined' if me_hat is None else f'{me_hat:.2f}'}. "
        f"{esc(guess['method'][0].upper() + guess['method'][1:])}.</p>"
    )
    parts.append(f"<h2>Sure cells: count of {summary['n_counted']}</h2>")
    parts.append(
        "<p>Only the cells the model is sure of (or a person verified), each by its class. "
        "The easy cells are not a random sample, so these shares are skewed; the estimate "
        "above is the differential.</p>"
    )
    parts.append(_table(summary["classes"], ["name", "abbrev", "lineage", "count", "percent"]))
    parts.append("<h2>Lineages</h2>")
    parts.append(_table(summary["lineages"], ["lineage", "count", "percent"]))
    me = summary["me_ratio"]
    value = (
        "undefined (no erythroid cells counted)" if me["value"] is None else f"{me['value']:.2f}"
    )
    parts.append(
        f"</table><p><b>M:E ratio {value}</b> ({me['myeloid']} : {me['erythroid']}). "
        f"{esc(me['definition'])}.</p>"
    )
    flagged = [c for c in cells if c.flag]
    parts.append(f"<h2>Flagged cells, not counted ({len(flagged)})</h2>")
    parts.append(_gallery(sorted(flagged, key=lambda c: c.probability), vocabulary))
    parts.append("<h2>Cells by class</h2>")
    for code in vocabulary.codes:
        members = [c for c in cells if c.label == code and not c.flag]
        if members:
            parts.append(f"<h3>{esc(vocabulary[code].name)} ({len(members)})</h3>")
            parts.append(_gallery(members, vocabulary))
    if fields:
        parts.append("<h2>Fields</h2>")
        for image in fields:
            mine = [c for c in cells if c.field == image.name]
            overlay = jpeg_data_uri(field_overlay(image, mine, vocabulary, about.cell_radius))
            parts.append(
                f"<div class='field'><h3>{esc(image.name)} ({len(mine)} cells)</h3>"
                f"<img alt='{esc(image.name)}' src='{overlay}'></div>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


def _details(summary: dict, about: About) -> str:
    """The case's particulars, as a laboratory report heads them."""
    rows = [(name.capitalize(), getattr(about, name)) for name in About.CASE_FIELDS]
    rows += [
        ("Date", summary["created"]),
        (
            "Model",
            f"{about.model} (marrowdiff {about.version}"
            + (f"; sha256 {about.model_sha256}" if about.model_sha256 else "")
            + ")",
        ),
    ]
    cells = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows if v
    )
    return f"<table class='details'>{cells}</table>"


def _review_section(review: dict | None, vocabulary: Vocabulary) -> str:
    """What the review changed: re-classified cells (pre-classified -> verified), added,
    rejected and unidentified ones."""
    if not review:
        return ""
    esc = html.escape
    out = [
        "<h2>Review</h2>",
        f"<p>{review['reclassified']} of {review['reviewed']} cells re-classified, "
        f"{review['added']} missed cell(s) added, {review['rejected']} rejected as not a cell, "
        f"{review['unidentified']} unidentified.</p>",
    ]
    if review["changes"]:
        out.append("<table><tr><th>pre-classified</th><th>verified</th><th>cells</th></tr>")
        for change in review["changes"]:
            out.append(
                f"<tr><td>{esc(vocabulary[change['from']].name)}</td>"
                f"<td>{esc(vocabulary[change['to']].name)}</td>"
                f"<td class='n'>{change['cells']}</td></tr>"
            )
        out.append("</table>")
    return "".join(out)


def _detection_sentence(d: dict | None) -> str:
    """How detection did on the fields by the reviewer's verdicts (`Store.detection_tally`)."""
    if not d or not d.get("found") and not d.get("added"):
        return ""

    def rate(v):
        return "n/a" if v is None else f"{v:.3f}"

    return (
        f" On the fields, by the reviewer's verdicts: {d['found']} cells found, "
        f"{d['not_a_cell']} of them not cells, and {d['added']} missed cell(s) added at review "
        f"(detection precision {rate(d['precision'])}, recall {rate(d['recall'])})."
    )


def _interval(row: dict) -> str:
    if row["low"] is None:
        return ""
    return f"{row['low']:.1f} - {row['high']:.1f}"


def _table(rows: list[dict], columns: list[str]) -> str:
    """An HTML table of `rows`; numbers right-aligned, percentages to one decimal."""
    heads = {"name": "class", "percent": "%", "interval": "95% interval (%)"}
    out = ["<table><tr>" + "".join(f"<th>{heads.get(c, c)}</th>" for c in columns) + "</tr>"]
    for row in rows:
        cells = []
        for c in columns:
            value = row[c]
            if c == "percent":
                cells.append(f"<td class='n'>{'' if value is None else f'{value:.1f}'}</td>")
            elif isinstance(value, int | float):
                cells.append(f"<td class='n'>{value}</td>")
            else:
                cells.append(f"<td>{html.escape(str(value))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"


def _gallery(cells: list[Cell], vocabulary: Vocabulary) -> str:
    items = []
    for c in cells:
        if c.thumbnail is None:
            continue
        where = f"{c.field} ({c.x:.0f}, {c.y:.0f})"
        tip = f"{vocabulary[c.label].name}, p={c.probability:.2f}; {where}"
        label = f"{_abbrev(vocabulary, c.label)} {c.probability:.2f}" + (
            f" {c.flag}" if c.flag else ""
        )
        place = f"<br><small>{html.escape(where)}</small>" if c.flag else ""
        items.append(
            f"<div class='cell{' flagged' if c.flag else ''}' title='{html.escape(tip)}'>"
            f"<img alt='' tabindex='0' src='{jpeg_data_uri(c.thumbnail)}'><br>"
            f"{html.escape(label)}{place}</div>"
        )
    return "<div class='gallery'>" + "".join(items) + "</div>"
