"""A counted slide's report folder: report.html (the report of fields, with the slide's
details, its map with the counted tiles, and galleries of a sample of each class's cells),
report.json (the summary, the slide and its tiles), cells.csv (every cell, level-0 px and
microns) and cells.geojson (QuPath). The cells come from the count's journal, read as a
stream; the galleries' crops are read again from the slide, so none was held while counting.
The slide's label and macro images are left out unless asked for, and the report says so."""

from __future__ import annotations

import copy
import csv
import html
from array import array
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from marrowdiff.counting.count import THUMBNAIL
from marrowdiff.counting.report import About, Cell, ReportConfig, summarise
from marrowdiff.counting.report_html import PALETTE, render_html
from marrowdiff.counting.scale import heading
from marrowdiff.fileio import atomic_open, save_image, write_json, write_text
from marrowdiff.images import jpeg_data_uri
from marrowdiff.inference.predict import Classifier
from marrowdiff.slides.count import FLAG_CODES, SlideCountConfig
from marrowdiff.slides.geojson import cell_feature, hex_rgb, tile_feature, write_geojson
from marrowdiff.slides.journal import Journal
from marrowdiff.slides.plan import Plan
from marrowdiff.slides.reader import Slide, associated_image
from marrowdiff.slides.seams import seam_duplicates
from marrowdiff.slides.tissue import drawn


class Table:
    """The journal's cells as columns (a few bytes a cell): class and flag as indices into
    `classes` and FLAG_CODES."""

    def __init__(self, rows, classes: list[str]):
        index = {c: k for k, c in enumerate(classes)}
        flags = {f: k for k, f in enumerate(FLAG_CODES)}
        tile, label, flag = array("i"), array("h"), array("b")
        x, y, p, d = array("d"), array("d"), array("d"), array("d")
        for row in rows:
            tile.append(int(row["tile"]))
            label.append(index[row["class"]])
            flag.append(flags[row["flag"]])
            x.append(float(row["x"]))
            y.append(float(row["y"]))
            p.append(float(row["probability"]))
            d.append(float(row["distance"]) if row["distance"] else np.nan)
        self.classes = classes
        self.tile = np.frombuffer(tile, np.int32)
        self.label, self.flag = np.frombuffer(label, np.int16), np.frombuffer(flag, np.int8)
        self.x, self.y = np.frombuffer(x), np.frombuffer(y)
        self.probability, self.distance = np.frombuffer(p), np.frombuffer(d)

    def __len__(self) -> int:
        return len(self.x)

    def without(self, drop: set[int]) -> Table:
        """The table without the rows `drop` indexes."""
        if not drop:
            return self
        keep = np.ones(len(self), bool)
        keep[list(drop)] = False
        out = copy.copy(self)
        for name in ("tile", "label", "flag", "x", "y", "probability", "distance"):
            setattr(out, name, getattr(self, name)[keep])
        return out

    def tallied(self, field: str) -> list[Cell]:
        """One shared Cell per (class, flag), repeated as often as it occurs: what
        `summarise` needs (it reads only each cell's class and flag), without a Python
        object per cell."""
        out: list[Cell] = []
        pairs = self.label.astype(np.int32) * len(FLAG_CODES) + self.flag
        for key, k in zip(*np.unique(pairs, return_counts=True), strict=True):
            label, flag = self.classes[key // len(FLAG_CODES)], FLAG_CODES[key % len(FLAG_CODES)]
            out += [Cell(field, 0.0, 0.0, label, 1.0, flag)] * int(k)
        return out

    def label_of(self, i: int) -> str:
        return self.classes[self.label[i]]

    def flag_of(self, i: int) -> str:
        return FLAG_CODES[self.flag[i]]


def gallery_picks(table: Table, vocabulary, k: int) -> list[int]:
    """Up to `k` cells of each counted class (in counting order), of each reason set aside,
    and the `k` least sure flagged cells: the indices the report shows."""
    by: dict[str, list[int]] = defaultdict(list)
    flagged = []
    for i in range(len(table)):
        label, flag = table.label_of(i), table.flag_of(i)
        if flag:
            flagged.append(i)
        elif len(by[label]) < k:
            by[label].append(i)
    flagged = sorted(flagged, key=lambda i: table.probability[i])[:k]
    return sorted({*flagged, *(i for picks in by.values() for i in picks)})


def gallery_cells(slide: Slide, plan: Plan, table: Table, picks: list[int], patch: int,
                  name: str) -> list[Cell]:  # fmt: skip
    """The picked cells with their crops, read again from the slide."""
    w = plan.working
    side0 = patch * w.level0_per_model_px  # level-0 px of a crop
    side = max(1, round(side0 / w.downsample))
    cells = []
    for i in picks:
        x0, y0 = int(round(table.x[i] - side0 / 2)), int(round(table.y[i] - side0 / 2))
        crop = slide.read(x0, y0, side, side, w.level)
        thumb = np.asarray(Image.fromarray(crop).resize((THUMBNAIL, THUMBNAIL), Image.BILINEAR))
        label, flag = table.label_of(i), table.flag_of(i)
        p = float(table.probability[i])
        cells.append(Cell(name, table.x[i], table.y[i], label, p, flag, None, thumb))
    return cells


def write_slide_report(
    out: Path,
    slide: Slide,
    plan: Plan,
    journal: Journal,
    classifier: Classifier,
    config: SlideCountConfig,
    report: ReportConfig,
    about: About,
    failed: list[str],
) -> dict:
    """Write the report folder from the journal; returns the summary."""
    out = Path(out)
    vocabulary, classes = classifier.vocabulary, classifier.classes
    name = str(slide.path)
    diameter = config.count.detect.cell_diameter * plan.working.level0_per_model_px
    table = Table(journal.rows(), classes)
    cells = list(zip(table.tile.tolist(), table.x.tolist(), table.y.tolist(), strict=True))
    twice = seam_duplicates(cells, plan.tiles, diameter)
    table = table.without(twice)

    def rows():  # the journal's rows, each cell once
        return (r for i, r in enumerate(journal.rows()) if i not in twice)

    counted_tiles = [i for i in plan.order if i in journal.done]  # in the order counted
    domain = classifier.check(table.distance)
    slide_warnings = _slide_warnings(slide, plan, config, failed, counted_tiles)
    scale = (about.calibration or {}).get("interval_scale", 1.0)
    summary = summarise(table.tallied(name), vocabulary, report, [name], scale, domain,
                        [*heading(domain), *slide_warnings], classes)  # fmt: skip
    summary["n_fields"] = 1
    summary["seam_duplicates_dropped"] = len(twice)
    details = slide_details(slide, plan, config, counted_tiles)
    summary |= {"about": about.to_dict(), "config": report.to_dict(), "slide": details,
                "cells_file": "cells.csv", "geojson_file": "cells.geojson"}  # fmt: skip
    write_json(out / "report.json", summary)
    with atomic_open(out / "cells.csv", "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=journal.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows())
    colours = {c: hex_rgb(PALETTE[vocabulary.index(c) % len(PALETTE)]) for c in vocabulary.codes}
    radius = about.cell_radius * plan.working.level0_per_model_px
    features = (
        cell_feature(
            float(r["x"]),
            float(r["y"]),
            radius,
            vocabulary[r["class"]].name,
            colours[r["class"]],
            float(r["probability"]),
            r["flag"],
        )  # fmt: skip
        for r in rows()
    )
    tiles = (tile_feature(plan.tiles[i].core, k) for k, i in enumerate(counted_tiles))
    write_geojson(out / "cells.geojson", _chain(tiles, features))
    overview = drawn(plan.slide_map, plan.tiles, set(counted_tiles))
    save_image(out / "slide-map.png", overview)
    picks = gallery_picks(table, vocabulary, config.gallery)
    shown = gallery_cells(slide, plan, table, picks, config.count.detect.patch_size, name)
    label = (
        associated_image(slide, "label")
        if config.with_label and "label" in slide.info.associated
        else None
    )
    section = _slide_section(details, overview, label, len(table), len(shown))
    write_text(out / "report.html", render_html(summary, shown, [], vocabulary, about, section))
    return summary


def _chain(*parts):
    for part in parts:
        yield from part


def _slide_warnings(slide: Slide, plan: Plan, config: SlideCountConfig, failed: list[str],
                    counted: list[int]) -> list[str]:  # fmt: skip
    warnings = []
    if plan.working.warning:
        warnings.append(plan.working.warning)
    if failed:
        warnings.append(
            f"{len(failed)} tile(s) of the slide could not be read and were left out (the file "
            f"is damaged there; copy it again from the scanner): {failed[0]}"
        )
    if config.cells is not None and plan.chosen_by == "map" and len(counted) == len(plan.order):
        warnings.append(
            f"the countable area was counted whole ({len(counted)} tiles) before reaching "
            f"{config.cells} cells: the differential holds fewer cells than asked"
        )
    return warnings


def slide_details(slide: Slide, plan: Plan, config: SlideCountConfig, counted: list[int]) -> dict:
    info = slide.info
    return info.to_dict() | {
        "region": plan.region.to_list(),
        "working": plan.working.to_dict(),
        "chosen_by": plan.chosen_by,
        "map": {
            "level": plan.slide_map.level,
            "zones": plan.slide_map.zones(),
            "config": config.map.to_dict(),
        },  # fmt: skip
        "tiles": {
            "total": len(plan.tiles),
            "countable": len(plan.order),
            "counted": len(counted),
        },  # fmt: skip
        "counted_tiles": [
            {
                "index": i,
                "box": plan.tiles[i].core.to_list(),
                "zone": plan.slide_map.tiles[i].zone,
                "score": round(plan.slide_map.tiles[i].score, 4),
            }
            for i in counted
        ],  # fmt: skip
        "label_included": bool(config.with_label and "label" in info.associated),
    }


def _slide_section(details: dict, overview: Image.Image, label, n_cells: int, shown: int) -> str:
    esc = html.escape
    w, tiles = details["working"], details["tiles"]
    where = "countable" if details["chosen_by"] == "map" else "in the region"
    area = (
        "the best countable tiles of the slide's map"
        if details["chosen_by"] == "map"
        else "the region x, y, width, height = "
        + ", ".join(map(str, details["region"]))
        + " (level-0 px)"
    )
    rows = [
        ("File", details["file"]),
        ("Format", details["format"]),
        ("Size", f"{details['width']} x {details['height']} px, {details['levels']} level(s)"),
        (
            "Microns per pixel",
            f"{w['slide_mpp']:.4g} (from the {w['slide_mpp_from']}); read at level "
            f"{w['level']}, resized x{w['resize']:.3g} to the model's {w['model_mpp']:.4g}",
        ),
        ("Counting area", area),
        (
            "Tiles",
            f"{tiles['counted']} counted of {tiles['countable']} {where} ({tiles['total']} in all)",
        ),  # fmt: skip
    ]
    left_out = [n for n in details["left_out"] if not (n == "label" and details["label_included"])]
    privacy = (
        f"<p>The slide's {' and '.join(left_out)} image(s) were left out of this report: they can "
        "carry a patient's name or a barcode (<code>--with-label</code> includes the label).</p>"
        if left_out
        else ""
    )
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows)
    parts = [
        "<h2>Slide</h2>",
        f"<table class='details'>{table}</table>",
        privacy,
        "<p>The slide's map: counted tiles boxed in blue; other tiles tinted by zone (green "
        "countable, purple particle, red thick, yellow feathered edge).</p>",
        f"<div class='field'><img alt='slide map' src='{jpeg_data_uri(overview)}'></div>",
        f"<p>The galleries above show {shown} of the {n_cells} cells (up to "
        "a sample of each class); cells.csv and cells.geojson (QuPath: File, Import objects) "
        "hold every cell.</p>",
    ]
    if label is not None:
        parts.append(f"<h3>Label</h3><img alt='slide label' src='{jpeg_data_uri(label)}'>")
    return "\n".join(parts)
