"""Data set audit: counts, sizes, unreadable files, duplicates and label conflicts.

The audit is a saved file (`audit.json`) that later stages read, like nnU-Net's dataset
fingerprint: `split` keeps every duplicate group on one side. `audit.html` (one page, images
inlined), `audit.md` and the contact sheet are for the person who has to judge the suspicious
pairs.
"""

from __future__ import annotations

import html
import json
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from marrowdiff import __version__
from marrowdiff.data.datasets import Dataset, DatasetError, Record, Skipped
from marrowdiff.data.duplicates import DuplicateConfig, DuplicateIndex, group_pairs
from marrowdiff.fileio import save_image, write_json, write_text
from marrowdiff.images import jpeg_data_uri

AUDIT_VERSION = 1
AUDIT_FILE = "audit.json"


@dataclass(frozen=True)
class AuditConfig:
    duplicates: DuplicateConfig = field(default_factory=DuplicateConfig)
    sheet_rows: int = 40  # duplicate groups per contact-sheet page
    thumb: int = 112  # contact-sheet thumbnail size, px


class ReadLog:
    """The audit's pass over the images, kept in a work folder as it goes so that an
    interrupted audit resumes where it stopped instead of reading every image again:
    `state.json` (which listing, which settings), `read.jsonl` (one line per image read: its
    size and pixel digest, or why it is unreadable) and the duplicate search's thumbnails. A
    torn last line (a kill mid-write) is read again."""

    EVERY = 256  # images between flushes: at most this many are read twice after a kill

    def __init__(self, folder: Path, dataset: Dataset, config: AuditConfig):
        self.folder = folder
        state = {"fingerprint": dataset.fingerprint, "n": len(dataset.records),
                 "duplicates": asdict(config.duplicates), "version": AUDIT_VERSION}  # fmt: skip
        self.lines: list[dict] = []
        try:
            same = json.loads((folder / "state.json").read_text()) == json.loads(json.dumps(state))
        except (OSError, ValueError):
            same = False
        if same:
            for line in (folder / "read.jsonl").read_text().splitlines():
                try:
                    self.lines.append(json.loads(line))
                except ValueError:
                    break  # a torn last line
        else:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            write_json(folder / "state.json", state)
        self.resumed = len(self.lines)
        self._file = open(folder / "read.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self._file.writelines(json.dumps(line) + "\n" for line in self.lines)
        self._pending: list[dict] = []

    def append(self, line: dict, index: DuplicateIndex) -> None:
        self._pending.append(line)
        if len(self._pending) >= self.EVERY:
            self.flush(index)

    def flush(self, index: DuplicateIndex) -> None:
        index.flush()  # the thumbnails first: a logged image's thumbnail is on disk
        self._file.writelines(json.dumps(line) + "\n" for line in self._pending)
        self._file.flush()
        self._pending = []

    def close(self) -> None:
        self._file.close()


WORK_DIR = ".audit-work"  # under the audit's folder while it runs (`ReadLog`)


def audit_dataset(
    dataset: Dataset,
    config: AuditConfig = AuditConfig(),
    progress: bool = False,
    work: Path | None = None,
    log=None,
) -> tuple[dict, list[Record]]:
    """Read every image once and return the audit and the readable records. Of each image only
    its size and what the duplicate search needs are kept (a thumbnail, on disk), so memory
    does not grow with the size of the data set. With a `work` folder the pass over the images
    is kept there as it goes (`ReadLog`): an interrupted audit goes on from where it stopped,
    and the folder is removed when the audit is done."""
    records: list[Record] = []
    unreadable: list[Skipped] = []
    sizes: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="marrowdiff-audit-") as tmp:
        folder = Path(work) if work is not None else Path(tmp)
        read = ReadLog(folder, dataset, config)
        index = DuplicateIndex(
            len(dataset.records), config.duplicates, folder=folder, resume=read.resumed > 0
        )
        if read.resumed and log:
            log(f"resuming the audit: {read.resumed} of {len(dataset.records)} images were read")
        for record, line in zip(dataset.records, read.lines, strict=False):
            if "reason" in line:
                unreadable.append(Skipped(record.path, line["reason"]))
            else:
                records.append(record)
                sizes[line["size"]] += 1
                index.restore(bytes.fromhex(line["digest"]))
        try:
            for record, image, reason in dataset.iter_images(
                progress, whole=True, start=read.resumed
            ):
                if image is None:
                    unreadable.append(Skipped(record.path, reason))
                    read.append({"reason": reason}, index)
                    continue
                records.append(record)
                size, key = f"{image.shape[1]}x{image.shape[0]}", DuplicateIndex.digest(image)
                sizes[size] += 1
                index.add(image, key)
                read.append({"size": size, "digest": key.hex()}, index)
            read.flush(index)
        finally:
            read.close()
        pairs = index.find(lambda i: dataset.load(records[i], whole=True), progress, work)
        del index  # the thumbnails' file is closed before its folder goes
        if work is not None:
            shutil.rmtree(folder, ignore_errors=True)
    vocab = dataset.vocabulary
    by_group: dict[int, list] = {}
    members_of = group_pairs(len(records), pairs)
    group_of = {i: g for g, members in enumerate(members_of) for i in members}
    for p in pairs:
        by_group.setdefault(group_of[p.a], []).append(p)
    groups = []
    for g, members in enumerate(members_of):
        inside = by_group[g]
        labels = {records[i].label for i in members}
        groups.append(
            {
                "members": [{"path": records[i].path, "label": records[i].label} for i in members],
                "conflicting_labels": len(labels) > 1,
                "similarity": min(p.similarity for p in inside),  # the weakest link of the group
                "exact": all(p.exact for p in inside),
                "pairs": [
                    {"a": records[p.a].path, "b": records[p.b].path, "similarity": p.similarity}
                    for p in inside
                ],
            }
        )
    groups.sort(key=lambda g: (not g["conflicting_labels"], -g["similarity"]))
    counts = Counter(r.label for r in records)
    audit = {
        "audit_version": AUDIT_VERSION,
        "marrowdiff_version": __version__,
        "source": str(dataset.source),
        "kind": dataset.kind,
        "fingerprint": dataset.fingerprint,
        "vocabulary": vocab.name,
        "n_listed": len(dataset),
        "n_images": len(records),
        "counts": {code: counts.get(code, 0) for code in vocab.codes},
        "image_sizes": dict(sizes.most_common()),
        "skipped": [
            {"path": s.path, "reason": s.reason, "stage": stage}
            for stage, found in (("scan", dataset.skipped), ("decode", unreadable))
            for s in found
        ],
        "skipped_by_reason": dict(
            Counter(_reason_kind(s.reason) for s in [*dataset.skipped, *unreadable]).most_common()
        ),
        "n_unreadable": len(unreadable),
        "duplicate_groups": groups,
        "n_duplicate_groups": len(groups),
        "n_conflicting_groups": sum(g["conflicting_labels"] for g in groups),
        "n_images_in_duplicate_groups": sum(len(g["members"]) for g in groups),
        "detector": {
            k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config.duplicates).items()
        },
    }
    return audit, records


def run_audit(
    dataset: Dataset,
    out: str | Path,
    config: AuditConfig = AuditConfig(),
    progress: bool = False,
    log=None,
) -> dict:
    """Audit a data set and write audit.json, audit.html, audit.md and the contact sheets into
    `out`;
    `log` (if given) hears of every unreadable image."""
    audit, _ = audit_dataset(dataset, config, progress, Path(out) / WORK_DIR, log)
    names = {c.code: c.name for c in dataset.vocabulary.classes}
    write_audit(audit, dataset, out, names, config)
    for skipped in audit["skipped"]:
        if log and skipped["stage"] == "decode":
            log(f"skipped unreadable {skipped['path']}: {skipped['reason']}")
    return audit


def read_audit(path: str | Path) -> dict:
    """An audit.json written by `write_audit` (or the one in a folder)."""
    path = Path(path)
    path = path / AUDIT_FILE if path.is_dir() else path
    try:
        audit = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no audit; make one with `marrowdiff audit`") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(
            f"{path}: not a readable audit.json ({error}); make one with `marrowdiff audit`"
        ) from None
    if not isinstance(audit, dict) or "fingerprint" not in audit:
        raise DatasetError(f"{path}: not a marrowdiff audit; make one with `marrowdiff audit`")
    return audit


def write_audit(
    audit: dict,
    dataset: Dataset,
    out: str | Path,
    vocabulary_names: dict[str, str] | None = None,
    config: AuditConfig = AuditConfig(),
) -> list[Path]:
    """Write audit.json, audit.html, audit.md and the contact sheet(s) of duplicate groups."""
    out = Path(out)
    groups = audit["duplicate_groups"]
    wanted = {m["path"] for g in groups for m in g["members"]}
    by_path = {r.path: dataset.load(r, whole=True) for r in dataset.records if r.path in wanted}
    sheets = []
    for page, start in enumerate(range(0, len(groups), config.sheet_rows), start=1):
        sheet = contact_sheet(
            groups[start : start + config.sheet_rows], by_path, config.thumb, first_index=start + 1
        )
        sheets.append(save_image(out / f"duplicates-{page}.png", sheet))
    written = [write_json(out / AUDIT_FILE, audit)]
    markdown = audit_markdown(audit, [s.name for s in sheets], vocabulary_names or {})
    written.append(write_text(out / "audit.md", markdown))
    page = audit_html(audit, by_path, vocabulary_names or {}, config.thumb)
    written.append(write_text(out / "audit.html", page))
    return written + sheets


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
    for number, group in enumerate(audit["duplicate_groups"], start=1):
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
    if not audit["duplicate_groups"]:
        parts.append("<p>None found.</p>")
    parts.append("<h2>Skipped entries</h2>")
    if audit["skipped"]:
        parts.append(
            "<ul>"
            + "".join(
                f"<li>{esc(reason)}: {n}</li>" for reason, n in audit["skipped_by_reason"].items()
            )
            + "</ul><table><tr><th>path</th><th>reason</th></tr>"
        )
        parts += [
            f"<tr><td>{esc(s['path'])}</td><td>{esc(s['reason'])}</td></tr>"
            for s in audit["skipped"][:1000]
        ]
        parts.append("</table>")
        if len(audit["skipped"]) > 1000:
            parts.append(f"<p>... {len(audit['skipped']) - 1000} more in audit.json</p>")
    else:
        parts.append("<p>None.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


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


def _reason_kind(reason: str) -> str:
    """Collapse per-file details ("line 7: file not found") into a countable reason."""
    reason = reason.split(": ", 1)[1] if reason.startswith("line ") else reason
    return reason.split(" (")[0]
