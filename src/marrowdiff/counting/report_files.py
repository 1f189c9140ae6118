"""The report's files, written atomically: report.json, cells.csv and report.html in a
report folder, and `classify`'s CSV; the one module that names them."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from marrowdiff.classes import Vocabulary
from marrowdiff.counting.report import About, Cell, FieldImage, ReportConfig, summarise
from marrowdiff.counting.report_html import render_html
from marrowdiff.domain import DomainCheck
from marrowdiff.fileio import atomic_open, write_json, write_text


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
            "distance": _distance(c.distance),
        }
        if c.proba is not None:
            row |= {f"p_{k}": round(float(p), 4) for k, p in zip(classes, c.proba, strict=True)}
        rows.append(row)
    return rows


def _distance(d: float) -> float | str:
    """A cell's distance from the training cells as a CSV cell: "" when not known."""
    return round(float(d), 4) if np.isfinite(d) else ""


def write_patch_csv(path: Path, found, classes: list[str], top: np.ndarray) -> None:
    """`classify`'s CSV (path, class, probability, flag, distance, p_<class>...: the columns and
    rounding of `cell_rows` without x and y) of `count.Classified` patches, written row by
    row, atomically; `top`: each patch's class index (`Classifier.top`)."""
    head = ["path", "class", "probability", "flag", "distance", *(f"p_{k}" for k in classes)]
    with atomic_open(path, "w") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(head)
        for name, p, k, u, d in zip(
            found.names, found.proba, top, found.unsure, found.distance, strict=True
        ):
            writer.writerow(
                [name, classes[k], round(float(p[k]), 4), "unsure" if u else "", _distance(d),
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
    domain: DomainCheck | None = None,
    heading: list[str] = (),
) -> dict:
    """report.json, cells.csv and report.html in `out`; returns the summary. `domain`: the
    domain check of the cells (`Classifier.check`); `heading`: the warnings the report heads
    with (`scale.heading`)."""
    out = Path(out)
    scale = (about.calibration or {}).get("interval_scale", 1.0)
    names = [f.name for f in fields]
    summary = summarise(cells, vocabulary, config, names, scale, domain, heading, classes)
    summary["warnings"] += [f"{f.name}: {f.warning}" for f in fields if f.warning]
    summary |= {"about": about.to_dict(), "config": config.to_dict()}
    rows = cell_rows(cells, classes)
    write_json(out / "report.json", summary | {"cells": rows})
    write_csv(out / "cells.csv", rows)
    write_text(out / "report.html", render_html(summary, cells, fields, vocabulary, about))
    return summary
