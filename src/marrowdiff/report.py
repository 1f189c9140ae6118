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
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from marrowdiff.classes import Vocabulary, VocabularyError
from marrowdiff.fileio import write_json, write_text
from marrowdiff.images import jpeg_data_uri

REPORT_FORMAT = "marrowdiff.report/1"
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
    case: str | None = None
    signed_by: str | None = None
    reviewed_by: list[str] | None = None  # everyone who reviewed a cell of the case
    detection: dict | None = None  # detector precision and recall by the reviewers' verdicts

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
    proba: np.ndarray | None = None
    thumbnail: np.ndarray | None = field(default=None, repr=False)  # small RGB crop


@dataclass
class FieldImage:
    name: str
    height: int
    width: int
    preview: np.ndarray  # the field downscaled for the report
    scale: float  # preview px per field px
    warning: str = ""  # what detection noticed about this field (detect.size_warning)


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


def summarise(
    cells: list[Cell], vocabulary: Vocabulary, config: ReportConfig, fields: list[str] = ()
) -> dict:
    """The numbers of the report, from the cells and the names of the fields examined (pure).
    A cell of a class the vocabulary does not count (a platelet) is named, not counted."""
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
    if n < config.target:
        warnings.append(
            f"only {n} cells counted, below the target of {config.target}: "
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
            f"{flagged['unsure']} cell(s) the model is unsure of are not counted: review them"
        )
    return {
        "format": REPORT_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "vocabulary": vocabulary.name,
        "n_fields": len({c.field for c in cells} | set(fields)),  # a field without cells too
        "n_cells_found": len(cells),
        "n_counted": n,
        "target": config.target,
        "target_reached": n >= config.target,
        "flagged": flagged,
        "not_counted": dict(named),
        "classes": classes,
        "lineages": [{"lineage": k, "count": v, "percent": share(v)} for k, v in lineages.items()],
        "me_ratio": {
            "value": round(m / e, 3) if e else None,
            "myeloid": m,
            "erythroid": e,
            "definition": (
                f"M:E = counted myeloid cells ({', '.join(myeloid) or 'none'}) / counted "
                f"erythroid cells ({', '.join(erythroid) or 'none'}); flagged cells excluded"
            ),
        },
        "warnings": warnings,
    }


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
    summary = summarise(cells, vocabulary, config, [f.name for f in fields])
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
    r = radius * image.scale
    for c in cells:
        x, y = c.x * image.scale, c.y * image.scale
        colour = "#777777" if c.flag else PALETTE[vocabulary.index(c.label) % len(PALETTE)]
        draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=2)
        text = _abbrev(vocabulary, c.label) + ("?" if c.flag == "unsure" else "")
        text = "border" if c.flag == "border" else text
        draw.text((x - r, y - r - 11), text, fill=colour)
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
        f"<p>{summary['n_counted']} cells counted (target {summary['target']}) in "
        f"{summary['n_fields']} field(s); {summary['n_cells_found']} cells found. "
        f"Model: {esc(about.model)}. Created {esc(summary['created'])}.</p>",
    ]
    if about.signed_by is not None:  # from the review station
        parts.append(
            f"<p>Every cell reviewed by a person ({esc(', '.join(about.reviewed_by or []))}); "
            f"signed by {esc(about.signed_by)}."
            f"{_detection_sentence(about.detection)}</p>"
        )
    parts += [f"<div class='warn'>{esc(w)}</div>" for w in summary["warnings"]]
    parts.append("<h2>Differential</h2>")
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


def _table(rows: list[dict], columns: list[str]) -> str:
    """An HTML table of `rows`; numbers right-aligned, percentages to one decimal."""
    heads = {"name": "class", "percent": "%"}
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
        tip = f"{c.field} ({c.x:.0f}, {c.y:.0f}) p={c.probability:.2f}"
        label = f"{_abbrev(vocabulary, c.label)} {c.probability:.2f}" + (
            f" {c.flag}" if c.flag else ""
        )
        items.append(
            f"<div class='cell{' flagged' if c.flag else ''}' title='{html.escape(tip)}'>"
            f"<img alt='' src='{jpeg_data_uri(c.thumbnail)}'><br>{html.escape(label)}</div>"
        )
    return "<div class='gallery'>" + "".join(items) + "</div>"
