"""Data sets of labelled single-cell patches: scan a folder, zip or CSV manifest into records.

Three layouts are accepted, all giving the same `Dataset`:
- a folder with one sub-folder per class (files below a class folder, at any depth, belong to it);
- a zip archive of that layout, optionally wrapped in one top folder;
- a CSV manifest with columns `path,label` and optional `group` (patient, slide or smear id),
  paths relative to the manifest's folder.
Stray entries (hidden files, `.git/`, `__MACOSX/`, thumbnails, non-images) are skipped and
counted. Images are decoded only when read, so a scan never fails on a corrupt file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from marrowdiff.classes import Vocabulary, infer_vocabulary, load_vocabulary
from marrowdiff.errors import UserError
from marrowdiff.images import (
    MAX_FILE_BYTES,
    ImageReadError,
    decode_rgb,
    looks_like_image,
    read_capped,
)
from marrowdiff.preprocess import centre_crop

JUNK_DIRS = {"__macosx", ".git", ".svn", ".thumbnails", "@eadir", ".ipynb_checkpoints"}
JUNK_FILES = {"thumbs.db", "desktop.ini", ".ds_store"}


# A manifest's paths are relative to its folder. A path that is absolute or climbs out of it
# ("../") is refused unless this is set to 1: a manifest from elsewhere must not read any file.
ALLOW_OUTSIDE = "MARROWDIFF_ALLOW_OUTSIDE_PATHS"


class DatasetError(UserError, ValueError):
    """A data set cannot be opened as given; the message says what to change."""


@dataclass(frozen=True, slots=True)  # slots: 200,000 records are 40 MB less
class Record:
    path: str  # as it appears in the data set: zip member, path under the folder, or manifest cell
    label: str  # class code of the vocabulary
    group: str | None = None  # user-given patient, slide or smear id


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str
    notable: bool = False  # worth a line to the user (a link out, a name that escapes), not junk


@dataclass
class Dataset:
    """The records of one data set, the files skipped while scanning it, and how to read them."""

    source: Path
    kind: str  # "folder", "zip" or "manifest"
    vocabulary: Vocabulary
    records: list[Record]
    skipped: list[Skipped] = field(default_factory=list)
    _zip: zipfile.ZipFile | None = field(default=None, repr=False)
    _zip_pid: int | None = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)
    _by_path: dict[str, Record] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def counts(self) -> dict[str, int]:
        """Images per class, in the vocabulary's clinical order, zeros included."""
        found = Counter(r.label for r in self.records)
        return {code: found.get(code, 0) for code in self.vocabulary.codes}

    @property
    def fingerprint(self) -> str:
        """sha256 of the sorted listing (path, label, group): names the data set as scanned.
        Hashed line by line when the records are in that order (as a scan leaves them), so a
        listing of any size costs no memory; computed once."""
        if self._fingerprint is None:

            def line(r: Record) -> str:
                return f"{r.path}\t{r.label}\t{r.group or ''}"

            ordered = all(
                line(a) <= line(b) for a, b in zip(self.records, self.records[1:], strict=False)
            )
            lines = map(line, self.records) if ordered else iter(sorted(map(line, self.records)))
            digest = hashlib.sha256()
            for k, text in enumerate(lines):
                # a non-UTF-8 file name hashes as its own bytes (valid names: as UTF-8)
                digest.update((("\n" if k else "") + text).encode("utf-8", "surrogateescape"))
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def record(self, path: str) -> Record:
        """The record of a path of the data set (KeyError if it has none); the index is made
        once, on first use, and kept (about 50 bytes per record)."""
        if self._by_path is None:
            self._by_path = {r.path: r for r in self.records}
        return self._by_path[path]

    def read_bytes(self, record: Record) -> bytes:
        """The file's bytes; a file over MAX_FILE_BYTES is an ImageReadError, read no further
        (a zip member's declared size is checked first, then at most that much is inflated)."""
        if self.kind == "zip":
            archive = self._zipfile()
            with archive.open(record.path) as member:
                return read_capped(member, MAX_FILE_BYTES, archive.getinfo(record.path).file_size)
        with open(self.file_path(record), "rb") as fh:
            return read_capped(fh, MAX_FILE_BYTES)

    def file_path(self, record: Record) -> Path:
        base = self.source if self.kind == "folder" else self.source.parent
        return base / record.path

    def load(self, record: Record, whole: bool = False) -> np.ndarray:
        """(H, W, 3) uint8 RGB, the vocabulary's `crop` of the image (`whole`: all of it, as
        the audit compares images); raises ImageReadError naming the file."""
        try:
            image = decode_rgb(self.read_bytes(record))
            return image if whole else centre_crop(image, self.vocabulary.crop)
        except ImageReadError as exc:
            raise ImageReadError(f"{self.describe(record)}: {exc}") from None
        except (OSError, zipfile.BadZipFile, RuntimeError, KeyError) as exc:
            raise ImageReadError(f"{self.describe(record)}: cannot read the file ({exc})") from None

    def describe(self, record: Record) -> str:
        return f"{self.source}:{record.path}" if self.kind == "zip" else str(self.file_path(record))

    def iter_images(
        self,
        progress: bool = False,
        desc: str = "reading images",
        whole: bool = False,
        start: int = 0,
    ) -> Iterator[tuple[Record, np.ndarray | None, str | None]]:
        """Yield (record, image, None) or (record, None, reason) for every record from `start`
        on, in order."""
        bar = tqdm(
            self.records[start:],
            desc=desc,
            disable=not progress,
            unit="img",
            initial=start,
            total=len(self.records),
        )
        for record in bar:
            try:
                yield record, self.load(record, whole), None
            except ImageReadError as exc:
                yield record, None, str(exc).removeprefix(f"{self.describe(record)}: ")

    def load_all(
        self, progress: bool = False
    ) -> tuple[list[Record], list[np.ndarray], list[Skipped]]:
        """Decode every image; unreadable ones are returned as Skipped, never raised."""
        records, images, skipped = [], [], []
        for record, image, reason in self.iter_images(progress):
            if image is None:
                skipped.append(Skipped(record.path, reason))
            else:
                records.append(record)
                images.append(image)
        return records, images, skipped

    def load_paths(self, paths: list[str]) -> list[np.ndarray]:
        """The images of `paths`, in that order (the paths of a split); raises, naming some, if
        any is unreadable or not in the data set."""
        images, missing = [], []
        for path in paths:
            try:
                images.append(self.load(self.record(path)))
            except (KeyError, ImageReadError):
                missing.append(path)
        if missing:
            raise DatasetError(
                f"{len(missing)} split image(s) are unreadable or not in {self.source}, e.g. "
                f"{missing[:3]}; run `marrowdiff split` again"
            )
        return images

    def _zipfile(self) -> zipfile.ZipFile:
        # One handle per process: a handle inherited through fork (DataLoader workers,
        # torchrun ranks) shares its file offset with the parent and must not be reused.
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip, self._zip_pid = zipfile.ZipFile(self.source), os.getpid()
        return self._zip

    def __getstate__(self):
        return {**self.__dict__, "_zip": None, "_zip_pid": None}


def open_dataset(source: str | Path, vocabulary: Vocabulary | str = "choi2017") -> Dataset:
    """Scan a class-folder tree, a zip of one, or a CSV manifest."""
    source = Path(source)
    if not source.exists():
        raise DatasetError(
            f"{source}: no such file or folder; give a class-folder tree, "
            "a .zip of one, or a CSV manifest with columns path,label[,group]"
        )
    if source.is_dir():
        kind, raw, skipped = "folder", *_scan_folder(source)
    elif zipfile.is_zipfile(source):
        kind, raw, skipped = "zip", *_scan_zip(source)
    elif source.suffix.lower() == ".zip":
        raise DatasetError(
            f"{source}: not a readable zip archive (truncated or damaged?); re-download or "
            "re-pack it"
        )
    elif source.suffix.lower() in (".csv", ".tsv", ".txt"):
        kind, raw, skipped = "manifest", *_read_manifest(source)
    else:
        raise DatasetError(f"{source}: not a folder, a zip archive or a .csv manifest")
    if not raw:
        shown = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        raise DatasetError(
            f"{source}: no labelled images found ({len(skipped)} entries skipped"
            f"{': ' + shown + more if skipped else ''}). Expected one sub-folder per class with "
            "images inside, or a manifest with columns path,label"
        )
    if isinstance(vocabulary, str) and vocabulary != "infer":
        vocabulary = load_vocabulary(vocabulary)
    if isinstance(vocabulary, Vocabulary) and vocabulary.label_from == "filename-prefix":
        raw = [(path, _name_prefix(path), group) for path, _, group in raw]
    if vocabulary == "infer":
        vocabulary = infer_vocabulary(label for _, label, _ in raw)
    codes = vocabulary.map_labels((label for _, label, _ in raw), where=str(source))
    records = sorted(
        (Record(path, code, group) for (path, _, group), code in zip(raw, codes, strict=True)),
        key=lambda r: r.path,
    )
    return Dataset(
        source=source, kind=kind, vocabulary=vocabulary, records=records, skipped=skipped
    )


def _name_prefix(path: str) -> str:
    """The label a file name starts with: 'ig/MY_1234.jpg' -> 'MY'."""
    return PurePosixPath(path).stem.split("_", 1)[0]


def junk_reason(parts: tuple[str, ...], keep: tuple[str, ...] = ()) -> str | None:
    """Why a path is not a data file, or None if it may be one (an image, or a file ending in
    one of `keep`)."""
    for part in parts[:-1]:
        if part.lower() in JUNK_DIRS or part.startswith("."):
            return f"inside {part}/ (not data)"
    name = parts[-1]
    if name.lower() in JUNK_FILES or name.startswith("._"):
        return "system or thumbnail file"
    if name.startswith("."):
        return "hidden file"
    if not looks_like_image(name) and not name.lower().endswith(keep):
        return "not an image file (by suffix)"
    return None


def _split_class_paths(paths: list[tuple[str, ...]]) -> tuple[list[tuple[str, str]], list[Skipped]]:
    """(path, label) for image paths given as parts; strip one shared wrapper folder."""
    depth = 0
    while paths and all(len(p) > depth + 2 for p in paths) and len({p[depth] for p in paths}) == 1:
        depth += 1  # e.g. an archive wrapping the class folders in "data/"
    labelled, skipped = [], []
    for parts in paths:
        path = "/".join(parts)
        if len(parts) - depth < 2:
            skipped.append(Skipped(path, "outside a class folder"))
        else:
            labelled.append((path, parts[depth]))
    return labelled, skipped


def folder_files(
    root: Path, keep: tuple[str, ...] = ()
) -> tuple[list[tuple[str, ...]], list[Skipped]]:
    """The files under `root` that may be images, as path parts, in a stable order, and the
    rest with why: junk, and links that lead out of the folder (a folder, like a manifest,
    reads nothing outside itself) or to a folder (not followed). Every command lists folders
    this way."""
    files, skipped = [], []
    inside = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in list(dirnames):
            if Path(dirpath, name).is_symlink():
                dirnames.remove(name)
                where = Path(dirpath, name).relative_to(root).as_posix()
                skipped.append(Skipped(where, "a link to a folder: not followed", notable=True))
        for name in sorted(filenames):
            path = Path(dirpath, name)
            parts = PurePosixPath(path.relative_to(root).as_posix()).parts
            where = "/".join(parts)
            if junk_reason(parts, keep):
                skipped.append(Skipped(where, junk_reason(parts, keep)))
            elif path.is_symlink() and not _inside(path, inside):
                outside = "a link to a file outside the folder: not read"
                skipped.append(Skipped(where, outside, notable=True))
            else:
                files.append(parts)
    return files, skipped


def _inside(link: Path, folder: Path) -> bool:
    """Whether a link's target lies in `folder` (a loop or a broken link is judged by where it
    points; reading it then names the fault)."""
    return Path(os.path.realpath(link)).is_relative_to(folder)


def zip_members(path: Path) -> tuple[list[str], list[Skipped]]:
    """The members of a zip that may be images, in archive order, and the rest with why: junk,
    and names that lead out of the archive (absolute, "../", backslashes). A zip that holds a
    name twice is refused whole (a reader would see one of the two). Every command lists zips
    this way."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(
            f"{path}: unreadable zip archive ({exc}); re-download or re-pack it"
        ) from None
    names = Counter(info.filename for info in infos)
    twice = sorted(name for name, n in names.items() if n > 1)
    if twice:
        raise DatasetError(
            f"{path}: {len(twice)} member name(s) appear more than once, e.g. {twice[:3]}; only "
            "one of each could be read: re-pack the archive with each image once"
        )
    members, skipped = [], []
    for info in infos:
        name = info.filename
        if _escape_reason(name):
            skipped.append(Skipped(name, _escape_reason(name), notable=True))
        elif junk_reason(PurePosixPath(name).parts):
            skipped.append(Skipped(name, junk_reason(PurePosixPath(name).parts)))
        else:
            members.append(name)
    return members, skipped


def _escape_reason(name: str) -> str | None:
    """Why a zip member's name would lead out of its archive if extracted, or None."""
    parts = PurePosixPath(name).parts
    if name.startswith("/") or "\\" in name or ".." in parts or (":" in parts[0]):
        return "a name that leads out of the archive (absolute, ../ or \\): not read"
    return None


def _scan_folder(root: Path) -> tuple[list[tuple[str, str, None]], list[Skipped]]:
    files, skipped = folder_files(root)
    labelled, outside = _split_class_paths(files)
    return [(p, lab, None) for p, lab in labelled], skipped + outside


def _scan_zip(path: Path) -> tuple[list[tuple[str, str, None]], list[Skipped]]:
    members, skipped = zip_members(path)
    labelled, outside = _split_class_paths([PurePosixPath(m).parts for m in members])
    return [(p, lab, None) for p, lab in labelled], skipped + outside


def _read_manifest(path: Path) -> tuple[list[tuple[str, str, str | None]], list[Skipped]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(
            f"{path}: not UTF-8 text (byte {error.start}); save the manifest as UTF-8"
        ) from None
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect, strict=True)
    try:
        rows = list(reader)
    except csv.Error as error:
        raise DatasetError(
            f"{path}: line {reader.line_num}: not CSV ({error}); check its quotes"
        ) from None
    columns = {(c or "").strip().lower() for c in (reader.fieldnames if rows else [])}
    if not {"path", "label"} <= columns:
        raise DatasetError(
            f"{path}: a manifest needs a header with columns path,label "
            f"(and optionally group); found {sorted(columns) or 'no rows'}"
        )
    raw, skipped = [], []
    first_line: dict[str, int] = {}
    outside_ok = os.environ.get(ALLOW_OUTSIDE) == "1"
    for line, row in enumerate(rows, start=2):
        if None in row:  # more fields than the header names: a path with an unquoted comma?
            raise DatasetError(
                f"{path}: line {line} has {len(row) - 1 + len(row[None])} fields, the header "
                f"{len(row) - 1}; quote a path or label that holds a comma"
            )
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        rel, label, group = row["path"], row["label"], row.get("group") or None
        key = os.path.normpath(rel) if rel else ""
        if key and (os.path.isabs(key) or key.split(os.sep)[0] == os.pardir) and not outside_ok:
            raise DatasetError(
                f"{path}: line {line}: {rel!r} is outside the manifest's folder; list files "
                f"relative to it, or set {ALLOW_OUTSIDE}=1 to read files from anywhere"
            )
        if key and first_line.setdefault(key, line) != line:
            raise DatasetError(
                f"{path}: line {line} lists {rel!r} again (first on line {first_line[key]}); "
                "list each image once, with its one label"
            )
        if not rel or not label:
            skipped.append(Skipped(rel or f"<line {line}>", f"line {line}: empty path or label"))
        elif not (path.parent / rel).is_file():
            skipped.append(Skipped(rel, f"line {line}: file not found"))
        else:
            raw.append((rel, label, group))
    return raw, skipped
