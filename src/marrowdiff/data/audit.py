"""Data set audit: counts, sizes, unreadable files, duplicates and label conflicts.

The audit is a saved file (`audit.json`) that later stages read, like nnU-Net's dataset
fingerprint: `split` keeps every duplicate group on one side. `audit.html` (one page, images
inlined), `audit.md` and the contact sheet are for the person who has to judge the suspicious
pairs."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from marrowdiff import __version__
from marrowdiff.data.audit_pages import audit_html, audit_markdown, contact_sheet
from marrowdiff.data.datasets import Dataset, DatasetError, Record, Skipped
from marrowdiff.data.duplicates import DuplicateConfig, DuplicateIndex, group_pairs
from marrowdiff.fileio import save_image, write_json, write_text

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


@dataclass
class Pass:
    """What one pass over a data set's images found: the readable records (with their image
    sizes), the unreadable ones, and the pairs of duplicates among the readable."""

    records: list[Record] = field(default_factory=list)
    unreadable: list[Skipped] = field(default_factory=list)
    sizes: Counter = field(default_factory=Counter)
    pairs: list = field(default_factory=list)


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
    with tempfile.TemporaryDirectory(prefix="marrowdiff-audit-") as tmp:
        folder = Path(work) if work is not None else Path(tmp)
        found = read_images(dataset, config, folder, progress, log, resumable=work is not None)
        if work is not None:
            shutil.rmtree(folder, ignore_errors=True)
    groups = duplicate_groups(found.records, found.pairs)
    return audit_summary(dataset, config, found, groups), found.records


def read_images(
    dataset: Dataset,
    config: AuditConfig,
    folder: Path,
    progress: bool = False,
    log=None,
    resumable: bool = True,
) -> Pass:
    """Decode every image once (after those a resumed `ReadLog` in `folder` already read),
    keeping its size and thumbnail, then search the thumbnails for duplicates (keeping each
    finished stage of the search in `folder` when `resumable`)."""
    found = Pass()
    read = ReadLog(folder, dataset, config)
    index = DuplicateIndex(
        len(dataset.records), config.duplicates, folder=folder, resume=read.resumed > 0
    )
    if read.resumed and log:
        log(f"resuming the audit: {read.resumed} of {len(dataset.records)} images were read")
    for record, line in zip(dataset.records, read.lines, strict=False):
        if "reason" in line:
            found.unreadable.append(Skipped(record.path, line["reason"]))
        else:
            found.records.append(record)
            found.sizes[line["size"]] += 1
            index.restore(bytes.fromhex(line["digest"]))
    try:
        for record, image, reason in dataset.iter_images(progress, whole=True, start=read.resumed):
            if image is None:
                found.unreadable.append(Skipped(record.path, reason))
                read.append({"reason": reason}, index)
                continue
            found.records.append(record)
            size, key = f"{image.shape[1]}x{image.shape[0]}", DuplicateIndex.digest(image)
            found.sizes[size] += 1
            index.add(image, key)
            read.append({"size": size, "digest": key.hex()}, index)
        read.flush(index)
    finally:
        read.close()
    records = found.records
    kept = folder if resumable else None
    found.pairs = index.find(lambda i: dataset.load(records[i], whole=True), progress, kept)
    del index  # the thumbnails' file is closed before its folder goes
    return found


def duplicate_groups(records: list[Record], pairs: list) -> list[dict]:
    """The duplicate pairs joined into groups (connected components), label conflicts first,
    then by their weakest link's similarity."""
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
    return groups


def audit_summary(dataset: Dataset, config: AuditConfig, found: Pass, groups: list[dict]) -> dict:
    """audit.json's contents."""
    counts = Counter(r.label for r in found.records)
    skipped = (("scan", dataset.skipped), ("decode", found.unreadable))
    return {
        "audit_version": AUDIT_VERSION,
        "marrowdiff_version": __version__,
        "source": str(dataset.source),
        "kind": dataset.kind,
        "fingerprint": dataset.fingerprint,
        "vocabulary": dataset.vocabulary.name,
        "n_listed": len(dataset),
        "n_images": len(found.records),
        "counts": {code: counts.get(code, 0) for code in dataset.vocabulary.codes},
        "image_sizes": dict(found.sizes.most_common()),
        "skipped": [
            {"path": s.path, "reason": s.reason, "stage": stage}
            for stage, those in skipped
            for s in those
        ],
        "skipped_by_reason": dict(
            Counter(
                _reason_kind(s.reason) for s in [*dataset.skipped, *found.unreadable]
            ).most_common()
        ),
        "n_unreadable": len(found.unreadable),
        "duplicate_groups": groups,
        "n_duplicate_groups": len(groups),
        "n_conflicting_groups": sum(g["conflicting_labels"] for g in groups),
        "n_images_in_duplicate_groups": sum(len(g["members"]) for g in groups),
        "detector": {
            k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config.duplicates).items()
        },
    }


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
    if log:
        for skipped in dataset.skipped:
            if skipped.notable:  # a link out of the folder, a name that leaves the zip
                log(f"skipped {skipped.path}: {skipped.reason}")
        for skipped in audit["skipped"]:
            if skipped["stage"] == "decode":
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


def _reason_kind(reason: str) -> str:
    """Collapse per-file details ("line 7: file not found") into a countable reason."""
    reason = reason.split(": ", 1)[1] if reason.startswith("line ") else reason
    return reason.split(" (")[0]
