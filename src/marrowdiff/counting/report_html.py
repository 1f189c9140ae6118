"""The report as one offline HTML page: the summary's numbers (`report.summarise`), galleries
of cells by class, and every field with its cells outlined in their class colours."""

from __future__ import annotations

import html

from PIL import Image, ImageDraw, ImageFont

from marrowdiff.classes import Vocabulary
from marrowdiff.counting.report import About, Cell, FieldImage, set_aside
from marrowdiff.images import jpeg_data_uri

esc = html.escape

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
    extra: str = "",
) -> str:
    """The report as one offline page: particulars, review status, alerts and warnings, the
    estimate, the sure cells, galleries and every field with its cells outlined; `extra`: a
    section of HTML after the galleries (a slide's details and map)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>marrowdiff differential count</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Differential count</h1>",
        _details(summary, about),
        f"<p>{summary['n_cells_found']} cells found in {summary['n_fields']} field(s); "
        f"{summary['n_counted']} of them sure or verified.</p>",
        _status(about, vocabulary),
        *(f"<div class='alert'>Alert: {esc(a)}</div>" for a in summary["alerts"]),
        *(f"<div class='warn'>{esc(w)}</div>" for w in summary["warnings"]),
        _estimate_section(summary),
        _sure_section(summary),
        _galleries(cells, vocabulary),
        extra,
        _fields_section(fields, cells, vocabulary, about.cell_radius),
        "</body></html>",
    ]
    return "\n".join(parts)


def _status(about: About, vocabulary: Vocabulary) -> str:
    """Reviewed and signed (from the station), or pre-classified by the model only."""
    if about.signed_by is None:
        return (
            "<div class='warn'><b>Pre-classified by the model, not verified by a person.</b> "
            "For research use; a differential is released only after review "
            "(<code>marrowdiff serve</code>).</div>"
        )
    return (
        f"<p>Every cell reviewed by a person ({esc(', '.join(about.reviewed_by or []))}); "
        f"signed by {esc(about.signed_by)}.{_detection_sentence(about.detection)}</p>"
        + _review_section(about.review, vocabulary)
    )


def _estimate_section(summary: dict) -> str:
    guess = summary["estimate"]
    rows = [r | {"interval": _interval(r)} for r in guess["classes"]]
    me_hat = guess["me_ratio"]
    return (
        f"<h2>Differential: estimate of {guess['n_cells']} cells (target {summary['target']})"
        "</h2>"
        + _table(rows, ["name", "abbrev", "lineage", "expected", "percent", "interval"])
        + f"<p>Estimated M:E ratio {'undefined' if me_hat is None else f'{me_hat:.2f}'}. "
        f"{esc(guess['method'][0].upper() + guess['method'][1:])}.</p>"
    )


def _sure_section(summary: dict) -> str:
    me = summary["me_ratio"]
    value = (
        "undefined (no erythroid cells counted)" if me["value"] is None else f"{me['value']:.2f}"
    )
    return (
        f"<h2>Sure cells: count of {summary['n_counted']}</h2>"
        "<p>Only the cells the model is sure of (or a person verified), each by its class. "
        "The easy cells are not a random sample, so these shares are skewed; the estimate "
        "above is the differential.</p>"
        + _table(summary["classes"], ["name", "abbrev", "lineage", "count", "percent"])
        + "<h2>Lineages</h2>"
        + _table(summary["lineages"], ["lineage", "count", "percent"])
        + f"<p><b>M:E ratio {value}</b> ({me['myeloid']} : {me['erythroid']}). "
        f"{esc(me['definition'])}.</p>"
    )


def _galleries(cells: list[Cell], vocabulary: Vocabulary) -> str:
    """The flagged cells (least sure first), the objects set aside as not nucleated cells by
    reason, then the counted cells class by class."""
    aside = set_aside(cells, vocabulary)
    apart = {id(c) for c in aside}
    flagged = [c for c in cells if c.flag and id(c) not in apart]
    parts = [
        f"<h2>Flagged cells, not counted ({len(flagged)})</h2>",
        _gallery(sorted(flagged, key=lambda c: c.probability), vocabulary),
        f"<h2>Set aside as not nucleated cells ({len(aside)})</h2>",
        "<p>Objects the detector found that the model takes for something other than a "
        "nucleated cell; never counted. A person restores any that is a cell in the review "
        "station.</p>"
        if aside
        else "",
    ]
    for code in vocabulary.codes:
        members = [c for c in aside if c.label == code]
        if members:
            parts.append(f"<h3>{esc(vocabulary[code].name)} ({len(members)})</h3>")
            parts.append(_gallery(sorted(members, key=lambda c: c.probability), vocabulary))
    parts.append("<h2>Cells by class</h2>")
    for code in vocabulary.codes:
        members = [c for c in cells if c.label == code and not c.flag and vocabulary.counted(code)]
        if members:
            parts.append(f"<h3>{esc(vocabulary[code].name)} ({len(members)})</h3>")
            parts.append(_gallery(members, vocabulary))
    return "\n".join(parts)


def _fields_section(
    fields: list[FieldImage], cells: list[Cell], vocabulary: Vocabulary, radius: float
) -> str:
    if not fields:
        return ""
    parts = ["<h2>Fields</h2>"]
    for image in fields:
        mine = [c for c in cells if c.field == image.name]
        overlay = jpeg_data_uri(field_overlay(image, mine, vocabulary, radius))
        parts.append(
            f"<div class='field'><h3>{esc(image.name)} ({len(mine)} cells)</h3>"
            f"<img alt='{esc(image.name)}' src='{overlay}'></div>"
        )
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
    if review.get("blind"):
        out.append(_blind_sentence(review["blind"]))
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


def _blind_sentence(b: dict) -> str:
    """How a blind double review went (`ReviewStation._double_review`)."""

    def value(v, digits=2):
        return "n/a" if v is None else f"{v:.{digits}f}"

    hidden = " or the model's class" if b["model_hidden"] else ""
    return (
        f"<p>Blind double review: each cell was classified by {b['reviewers_per_cell']} "
        f"reviewers ({html.escape(', '.join(b['reviewers']))}) without seeing each other's "
        f"verdicts{hidden}. They agreed on {value(b['all_agree_percent'], 1)}% of cells "
        f"(Cohen's kappa {value(b['kappa'])}, Fleiss' kappa {value(b['fleiss_kappa'])}); "
        f"{b['adjudicated']} cell(s) were decided by an adjudicator "
        f"({html.escape(', '.join(b['adjudicators'])) or 'none'}), {b['between']} of them as "
        "between two stages.</p>"
    )


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
