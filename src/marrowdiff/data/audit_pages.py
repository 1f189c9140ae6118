"""The audit for people: one self-contained HTML page (images inlined), audit.md, and the
contact sheets of duplicate groups, label conflicts first."""

from __future__ import annotations

import html

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from marrowdiff.images import jpeg_data_uri


def audit_html(
    audit: dict, images: dict[str, np.ndarray], names: dict[str, str], thumb: int = 112
) -> str:
    """The audit as one self-contained page (images inlined, like the count report): the
    summary, images per class, every duplicate group with its cells and their full paths and
    labels (conflicts in red), and the skipped entries."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>marrowdiff audit of {esc(str(audit['source']))}</title>",
        f"<style>{AUDIT_STYLE}</style></head><body>",
        f"<h1>Audit of {esc(str(audit['source']))}</h1>",
        "<ul>",
        f"<li>{audit['n_images']} readable images of {audit['n_listed']} listed "
        f"({esc(audit['kind'])}, vocabulary {esc(audit['vocabulary'])})</li>",
        f"<li>{len(audit['skipped'])} entries skipped, {audit['n_unreadable']} of them "
        "unreadable images</li>",
        f"<li>{audit['n_duplicate_groups']} duplicate groups "
        f"({audit['n_images_in_duplicate_groups']} images), "
        f"<b>{audit['n_conflicting_groups']} with conflicting labels</b></li>",
        f"<li>fingerprint {esc(audit['fingerprint'][:16])}</li></ul>",
        "<h2>Images per class</h2><table><tr><th>class</th><th>name</th><th>images</th></tr>",
        *(
            f"<tr><td>{esc(code)}</td><td>{esc(names.get(code, code))}</td>"
            f"<td class='n'>{n}</td></tr>"
            for code, n in audit["counts"].items()
        ),
        "</table><h2>Duplicate groups</h2>",
        "<p>The same cell found more than once: identical pixels, or a re-crop at a shifted "
        "centre, resized or re-encoded. <code>split</code> keeps each group on one side of every "
        "split. A group with conflicting labels is one cell filed under two classes: a "
        "hematologist should decide which label is right (or drop the cell).</p>",
    ]
    parts += [
        _groups_html(audit["duplicate_groups"], images, names, thumb),
        "<h2>Skipped entries</h2>",
        _skipped_html(audit),
        "</body></html>",
    ]
    return "\n".join(parts)


def _groups_html(groups: list[dict], images: dict, names: dict[str, str], thumb: int) -> str:
    esc = html.escape
    parts = []
    for number, group in enumerate(groups, start=1):
        conflict = group["conflicting_labels"]
        members = "".join(
            f"<figure><img alt='' width='{thumb}' height='{thumb}' "
            f"src='{jpeg_data_uri(images[m['path']], thumb)}'><figcaption>"
            f"<b>{esc(names.get(m['label'], m['label']))}</b><br>{esc(m['path'])}"
            "</figcaption></figure>"
            for m in group["members"]
        )
        kind = "conflicting labels" if conflict else "same label"
        parts.append(
            f"<div class='group{' conflict' if conflict else ''}'><h3>#{number}: {kind}, "
            f"similarity {group['similarity']:.3f}</h3>{members}</div>"
        )
    return "\n".join(parts) or "<p>None found.</p>"


def _skipped_html(audit: dict, shown: int = 1000) -> str:
    """The skipped entries by reason, then the first `shown` of them."""
    esc = html.escape
    skipped = audit["skipped"]
    if not skipped:
        return "<p>None.</p>"
    by_reason = "".join(
        f"<li>{esc(reason)}: {n}</li>" for reason, n in audit["skipped_by_reason"].items()
    )
    rows = "".join(
        f"<tr><td>{esc(s['path'])}</td><td>{esc(s['reason'])}</td></tr>" for s in skipped[:shown]
    )
    more = f"<p>... {len(skipped) - shown} more in audit.json</p>" if len(skipped) > shown else ""
    return f"<ul>{by_reason}</ul><table><tr><th>path</th><th>reason</th></tr>{rows}</table>{more}"


AUDIT_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .7em;border-bottom:1px solid #ddd;
text-align:left}td.n{text-align:right}.group{margin:.8em 0;padding:.3em .6em;
border-left:4px solid #bbb}.group.conflict{border-left-color:#c0392b}.group.conflict h3{
color:#c0392b}h3{margin:.2em 0;font-size:14px}figure{display:inline-block;margin:0 6px 6px 0;
vertical-align:top;max-width:160px}figcaption{font-size:11px;word-break:break-all}
"""


def contact_sheet(
    groups: list[dict],
    images: dict[str, np.ndarray],
    thumb: int = 112,
    first_index: int = 1,
    max_width: int = 1000,
) -> Image.Image:
    """Duplicate groups side by side, wrapped into lines; conflicts headed in red."""
    pad, head, caption = 10, 18, 30
    font = ImageFont.load_default(size=11)
    boxes, x, y = [], pad, pad  # flow layout: (x, y) of each group's box
    for group in groups:
        width = len(group["members"]) * (thumb + 4) + pad
        if x > pad and x + width > max_width:
            x, y = pad, y + head + thumb + caption + pad
        boxes.append((x, y))
        x += width + pad
    line_height = head + thumb + caption + pad
    sheet = Image.new("RGB", (max(max_width, x), y + line_height), "white")
    draw = ImageDraw.Draw(sheet)
    for number, (group, (x, y)) in enumerate(zip(groups, boxes, strict=True), start=first_index):
        conflict = group["conflicting_labels"]
        title = f"#{number} {'CONFLICT' if conflict else 'same label'} {group['similarity']:.3f}"
        draw.text((x, y), title, fill=(200, 0, 0) if conflict else (70, 70, 70), font=font)
        for k, member in enumerate(group["members"]):
            left = x + k * (thumb + 4)
            tile = Image.fromarray(images[member["path"]]).resize((thumb, thumb), Image.BILINEAR)
            sheet.paste(tile, (left, y + head))
            if conflict:
                draw.rectangle(
                    (left - 1, y + head - 1, left + thumb, y + head + thumb), outline=(200, 0, 0)
                )
            draw.text((left, y + head + thumb + 2), member["path"][-20:], fill="black", font=font)
            draw.text(
                (left, y + head + thumb + 15), member["label"][:19], fill=(0, 0, 160), font=font
            )
    return sheet


def audit_markdown(audit: dict, sheets: list[str], names: dict[str, str]) -> str:
    """A readable summary of an audit for the person who curates the data."""
    lines = [
        f"# Audit of `{audit['source']}`",
        "",
        f"- {audit['n_images']} readable images of {audit['n_listed']} listed "
        f"({audit['kind']}, vocabulary `{audit['vocabulary']}`)",
        f"- {len(audit['skipped'])} entries skipped, "
        f"{audit['n_unreadable']} of them unreadable images",
        f"- {audit['n_duplicate_groups']} duplicate groups "
        f"({audit['n_images_in_duplicate_groups']} images), "
        f"**{audit['n_conflicting_groups']} with conflicting labels**",
        f"- image sizes: {', '.join(f'{k} ({v})' for k, v in audit['image_sizes'].items())}",
        f"- fingerprint: `{audit['fingerprint'][:16]}`",
        "",
        "## Images per class",
        "",
        "| class | name | images |",
        "|---|---|---:|",
        *(f"| `{code}` | {names.get(code, code)} | {n} |" for code, n in audit["counts"].items()),
        "",
        "## Duplicate groups",
        "",
        "The same cell found more than once: identical pixels, or a re-crop at a shifted centre, "
        "resized or re-encoded. `split` keeps each group on one side of every split. Groups with "
        "conflicting labels show one cell filed under two classes: a hematologist should decide "
        "which label is right (or drop the cell).",
        "",
    ]
    if audit["duplicate_groups"]:
        lines += [
            f"Contact sheet: {', '.join(f'[{s}]({s})' for s in sheets)}",
            "",
            "| # | conflict | similarity | members (path: label) |",
            "|---:|---|---:|---|",
        ]
        for i, group in enumerate(audit["duplicate_groups"], start=1):
            members = "; ".join(f"`{m['path']}`: {m['label']}" for m in group["members"])
            lines.append(
                f"| {i} | {'**yes**' if group['conflicting_labels'] else 'no'} | "
                f"{group['similarity']:.3f} | {members} |"
            )
    else:
        lines.append("None found.")
    lines += ["", "## Skipped entries", ""]
    if audit["skipped"]:
        lines += [f"- {reason}: {n}" for reason, n in audit["skipped_by_reason"].items()]
        lines += ["", "| path | reason |", "|---|---|"]
        lines += [f"| `{s['path']}` | {s['reason']} |" for s in audit["skipped"][:200]]
        if len(audit["skipped"]) > 200:
            lines.append(f"| ... | {len(audit['skipped']) - 200} more in audit.json |")
    else:
        lines.append("None.")
    detector = audit["detector"]
    lines += [
        "",
        "## Detector",
        "",
        f"Candidates: grey NCC >= {detector['coarse_threshold']} at {detector['coarse_size']} px "
        f"over shifts; verified: band-pass NCC >= {detector['threshold']} at {detector['size']} px "
        "(see docs/data.md for how it was validated).",
        "",
    ]
    return "\n".join(lines)
