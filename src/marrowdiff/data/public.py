"""Public data sets, fetched and verified: the one owner of their addresses and checksums.

Two kinds:
- an archive checked whole by its sha256 (the paper's `wbc_plosone`), kept zipped as published;
- a data set checked file by file against a manifest (`pbc`: the path and sha256 of each image
  kept, shipped in `manifests/`). The download (or a local copy: a zip, a zip holding the
  published zip, or a folder, in the published layout or a mirror's) is read member by
  member; each image of the manifest must be there with its checksum, and the verified images
  are written into one zip in the published layout. Files not in the manifest are not kept.
Nothing appears under its final name until all of it is verified.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from marrowdiff.data.datasets import DatasetError
from marrowdiff.fileio import atomic_open


@dataclass(frozen=True)
class PublicArchive:
    name: str
    url: str
    filename: str  # what `fetch` writes into --to
    sha256: str  # of the whole file; "" for a manifest-checked data set
    size: int  # bytes of the download, for the progress bar
    vocabulary: str  # the built-in vocabulary that reads it
    citation: str
    manifest: str = ""  # manifests/<name> (gzip): path<TAB>bytes<TAB>sha256 of each image kept
    # Microns per pixel of its images: an estimate (neither set says it; docs/slides.md, "The
    # model's scale"), recorded in the models the demo trains so that slides can be read at it.
    mpp: float | None = None


PUBLIC_ARCHIVES = {
    "wbc_plosone": PublicArchive(
        name="wbc_plosone",
        url="https://github.com/JinwooChoi9/wbc_plosone/raw/master/data_WBC_torch.zip",
        filename="data_WBC_torch.zip",
        sha256="ff7d4f72b199f2a7827f2875a7ecf7a90177fb7f17a3aab5640d4b69f4d92ace",
        size=1_732_652,
        vocabulary="choi2017",
        citation="Choi JW et al. (2017) PLoS ONE 12(12): e0189259 (CC BY 4.0)",
        mpp=0.136,  # its 144 px patches; from PBC's by the neutrophils' nuclear size
    ),
    # Mendeley Data's address for the whole data set (17,092 images, about 270 MB). The
    # manifest lists the 9,975 images marrowdiff uses: every immature granulocyte, neutrophil
    # and erythroblast, and seeded samples of the other folders (../shared/data/pbc/README.md).
    "pbc": PublicArchive(
        name="pbc",
        url="https://data.mendeley.com/public-api/zip/snkd93bnjr/download/1",
        filename="pbc.zip",
        sha256="",
        size=0,
        vocabulary="pbc",
        citation="Acevedo A et al. (2020) Data in Brief 30:105474; Mendeley Data V1, "
        "doi:10.17632/snkd93bnjr.1 (CC BY 4.0)",
        manifest="pbc.tsv.gz",
        mpp=0.093,  # from its red cells' median diameter, taken as 7.5 microns
    ),
}


class ChecksumError(DatasetError):
    """A fetched file is not the published one."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def get_archive(name: str | PublicArchive) -> PublicArchive:
    if isinstance(name, PublicArchive):
        return name
    if name not in PUBLIC_ARCHIVES:
        raise DatasetError(f"unknown archive {name!r}; known: {', '.join(PUBLIC_ARCHIVES)}")
    return PUBLIC_ARCHIVES[name]


def fetch(
    archive: str | PublicArchive,
    to: str | Path,
    from_file: str | Path | None = None,
    url: str | None = None,
    progress: bool = True,
) -> Path:
    """Download (or copy `from_file`) a public data set into `to`, verified, and return the
    path of the file to give every command. Already there and verified: nothing is done."""
    archive = get_archive(archive)
    if from_file is not None and not Path(from_file).exists():
        raise DatasetError(
            f"--from {from_file}: no such file or folder; give the path of your copy of "
            f"{archive.name}"
        )
    if archive.manifest:
        return _fetch_by_manifest(archive, Path(to), from_file, url, progress)
    target = Path(to) / archive.filename
    if target.is_file() and sha256_file(target) == archive.sha256:
        return target
    if from_file is not None and not Path(from_file).is_file():
        raise DatasetError(f"--from {from_file}: not a file; give your copy of {archive.filename}")
    digest = hashlib.sha256()
    with atomic_open(target, "wb") as out:
        source = _download(archive, from_file, url, out, progress, digest)
        if digest.hexdigest() != archive.sha256:
            raise ChecksumError(
                f"{source}: sha256 {digest.hexdigest()} does not match the published "
                f"{archive.sha256}; the file is corrupt, truncated or not {archive.filename}. "
                "Nothing was written; fetch it again or use a verified copy with --from FILE"
            )
    return target


def _download(archive, from_file, url, out, progress, digest=None) -> str:
    """Copy the download (or the local file) into the open file `out`; returns its address."""
    source = Path(from_file).resolve().as_uri() if from_file is not None else url or archive.url
    try:
        response = urllib.request.urlopen(source, timeout=60)
    except (OSError, ValueError) as exc:
        raise DatasetError(
            f"cannot fetch {source}: {exc}. Without internet, download it "
            "elsewhere and pass --from FILE"
        ) from None
    with (
        response,
        tqdm(
            total=archive.size or None,
            unit="B",
            unit_scale=True,
            disable=not progress,
            desc=archive.filename,
        ) as bar,
    ):
        while block := response.read(1 << 16):
            if digest is not None:
                digest.update(block)
            out.write(block)
            bar.update(len(block))
    return source


def read_manifest(archive: PublicArchive) -> dict[str, tuple[int, str]]:
    """{published path: (bytes, sha256)} of every image the data set keeps (the manifest
    shipped in `manifests/`, or a file of that name)."""
    shipped = resources.files("marrowdiff.data.manifests").joinpath(archive.manifest)
    raw = shipped.read_bytes() if shipped.is_file() else Path(archive.manifest).read_bytes()
    rows = csv.DictReader(io.StringIO(gzip.decompress(raw).decode("utf-8")), dialect="excel-tab")
    return {row["path"]: (int(row["bytes"]), row["sha256"]) for row in rows}


def _fetch_by_manifest(archive: PublicArchive, to: Path, from_file, url, progress: bool) -> Path:
    manifest = read_manifest(archive)
    target = to / archive.filename
    if target.is_file() and _verified_zip(target, manifest):
        return target
    with tempfile.TemporaryDirectory(dir=to if to.is_dir() else None) as tmp:
        source = Path(from_file) if from_file is not None else None
        if source is None or source.is_file() and source.suffix.lower() != ".zip":
            download = Path(tmp) / "download.zip"
            with open(download, "wb") as out:
                _download(archive, from_file, url, out, progress)
            source = download
        with _Members(source) as members:
            found = members.match(manifest)
            missing = [p for p in manifest if p not in found]
            if missing:
                raise ChecksumError(
                    f"{from_file or url or archive.url}: {len(missing)} of the "
                    f"{len(manifest)} images of {archive.name} are not there, e.g. "
                    f"{missing[:3]}; nothing was written. Give the published archive (or a "
                    "copy of it) with --from"
                )
            to.mkdir(parents=True, exist_ok=True)
            with atomic_open(target, "wb") as out, zipfile.ZipFile(out, "w") as zout:
                for path in tqdm(sorted(manifest), disable=not progress, unit="img"):
                    data = members.read(found[path])
                    size, sha = manifest[path]
                    if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
                        raise ChecksumError(
                            f"{found[path]}: not the published image {path} (sha256 "
                            f"{hashlib.sha256(data).hexdigest()[:16]}..., expected "
                            f"{sha[:16]}...); nothing was written. The copy is damaged or "
                            "altered: fetch it again"
                        )
                    zout.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), data)
    return target


def _verified_zip(path: Path, manifest: dict[str, tuple[int, str]]) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            if sorted(z.namelist()) != sorted(manifest):
                return False
            return all(hashlib.sha256(z.read(p)).hexdigest() == manifest[p][1] for p in manifest)
    except (zipfile.BadZipFile, OSError, KeyError):
        return False


class _Members:
    """The files of a zip (or of a zip inside it, as Mendeley wraps its archives) or of a
    folder, found by their published path or, in a mirror's layout, by their file name."""

    def __init__(self, source: Path):
        self.source, self._stack = source, []

    def __enter__(self):
        if self.source.is_dir():
            self.names = {
                PurePosixPath(Path(d, f).relative_to(self.source).as_posix()).as_posix(): None
                for d, _, files in os.walk(self.source)
                for f in files
            }
            self._read = lambda name: (self.source / name).read_bytes()
            return self
        try:
            z = zipfile.ZipFile(self.source)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DatasetError(f"{self.source}: not a readable zip archive ({exc})") from None
        self._stack.append(z)
        inner = [n for n in z.namelist() if n.lower().endswith(".zip")]
        images = [n for n in z.namelist() if not n.lower().endswith(".zip")]
        if len(inner) == 1 and not any(n.lower().endswith(".jpg") for n in images):
            spool = tempfile.TemporaryFile()
            with z.open(inner[0]) as fh:
                shutil.copyfileobj(fh, spool)
            spool.seek(0)
            z = zipfile.ZipFile(spool)
            self._stack.append(z)
        self.names = dict.fromkeys(z.namelist())
        self._read = z.read
        return self

    def __exit__(self, *exc):
        for z in reversed(self._stack):
            z.close()

    def match(self, manifest: dict) -> dict[str, str]:
        """{published path: member name} for every manifest image found."""
        by_name: dict[str, list[str]] = {}
        for name in self.names:
            by_name.setdefault(PurePosixPath(name).name, []).append(name)
        found = {}
        for path in manifest:
            if path in self.names:
                found[path] = path
                continue
            tail = PurePosixPath(path)
            candidates = [
                n
                for n in by_name.get(tail.name, [])
                if PurePosixPath(n).parent.name == tail.parent.name
            ]
            if len(candidates) == 1:
                found[path] = candidates[0]
        return found

    def read(self, name: str) -> bytes:
        return self._read(name)
