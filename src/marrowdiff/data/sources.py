"""Unlabelled inputs for `classify` and `count`: image files, folders of them, zips of them.

`list_inputs` names every image it will read, in a stable order, and every entry it will not
read with why, listing folders and zips as every other command does (`datasets.folder_files`,
`datasets.zip_members`: the same junk, the same refusals). `read_inputs` decodes them,
reporting and skipping what cannot be read, so one bad file never stops a run. A whole-slide
file is recognised by opening it (OpenSlide) and said to be one, never counted as a field.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from marrowdiff.data.datasets import Skipped, folder_files, zip_members
from marrowdiff.images import MAX_FILE_BYTES, ImageReadError, decode_rgb, read_capped

# What scanners write: listed (so that a slide is named, not dropped), then recognised by
# opening. A TIFF may be a slide too.
SLIDE_SUFFIXES = (".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide", ".dcm")


@dataclass(frozen=True)
class Input:
    name: str  # how reports name it: the file's path, or zip path + "!" + member
    path: Path
    member: str | None = None  # inside a zip

    def read_bytes(self) -> bytes:
        """The file's bytes; over MAX_FILE_BYTES is an ImageReadError, read no further."""
        if self.member is None:
            with open(self.path, "rb") as fh:
                return read_capped(fh, MAX_FILE_BYTES)
        with zipfile.ZipFile(self.path) as archive, archive.open(self.member) as member:
            return read_capped(member, MAX_FILE_BYTES, archive.getinfo(self.member).file_size)


def list_inputs(paths: list[str | Path]) -> tuple[list[Input], list[Skipped]]:
    """Every image in the given files, folders (recursively) and zips (named .zip), and every
    entry passed over (system files, hidden files, non-images, names that leave a zip, links
    out of a folder), each with its reason and the name reports give it. A path that does not
    exist is an error naming it."""
    found: list[Input] = []
    passed: list[Skipped] = []
    for given in map(Path, paths):
        if given.is_dir():
            files, skipped = folder_files(given, keep=SLIDE_SUFFIXES)
            found += [Input(str(given.joinpath(*parts)), given.joinpath(*parts)) for parts in files]
            passed += [Skipped(str(given / s.path), s.reason) for s in skipped]
        elif given.is_file() and given.suffix.lower() == ".zip" and zipfile.is_zipfile(given):
            members, skipped = zip_members(given)
            found += [Input(f"{given}!{m}", given, m) for m in sorted(members)]
            passed += [Skipped(f"{given}!{s.path}", s.reason) for s in skipped]
        elif given.is_file() or given.is_symlink():
            found.append(Input(str(given), given))
        else:
            raise FileNotFoundError(f"{given}: no such file or folder")
    return found, passed


def read_inputs(
    inputs: list[Input], log=print, progress: bool = False
) -> Iterator[tuple[Input, np.ndarray]]:
    """(input, RGB image) for each readable input; unreadable ones are logged and skipped.
    With `progress`, a bar of inputs read, their rate and the time left."""
    for item in tqdm(inputs, disable=not progress, unit="img", leave=False):
        try:
            slide = slide_format(item)
            if slide:
                raise ImageReadError(
                    f"a whole-slide file ({slide}), not a patch or field: count it with "
                    "`marrowdiff count MODEL SLIDE` (docs/slides.md)"
                )
            yield item, decode_rgb(item.read_bytes())
        except (ImageReadError, OSError, zipfile.BadZipFile) as error:
            log(f"skipped {item.name}: {error}")


def slide_format(item: Input) -> str | None:
    """The scanner format of a file OpenSlide opens as a slide (aperio, hamamatsu, dicom,
    generic-tiff...), or None: an ordinary image (or a zip member, which it cannot open)."""
    suffix = item.path.suffix.lower() if item.member is None else ""
    if suffix not in (*SLIDE_SUFFIXES, ".tif", ".tiff"):
        return None
    import openslide

    try:
        return openslide.OpenSlide.detect_format(str(item.path))
    except (OSError, openslide.OpenSlideError):
        return None
