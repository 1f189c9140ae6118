"""Unlabelled inputs for `classify` and `count`: image files, folders of them, zips of them.

`list_inputs` names every image it will read, in a stable order; `read_inputs` decodes them,
reporting and skipping what cannot be read, so one bad file never stops a run.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from marrowdiff.data.datasets import junk_reason
from marrowdiff.images import ImageReadError, decode_rgb, read_capped

# A field of 100 megapixels (images.MAX_PIXELS) is 300 MB as an uncompressed 8-bit TIFF.
MAX_INPUT_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Input:
    name: str  # how reports name it: the file's path, or zip path + "!" + member
    path: Path
    member: str | None = None  # inside a zip

    def read_bytes(self) -> bytes:
        """The file's bytes; over MAX_INPUT_BYTES is an ImageReadError, read no further."""
        if self.member is None:
            with open(self.path, "rb") as fh:
                return read_capped(fh, MAX_INPUT_BYTES)
        with zipfile.ZipFile(self.path) as archive, archive.open(self.member) as member:
            return read_capped(member, MAX_INPUT_BYTES, archive.getinfo(self.member).file_size)


def list_inputs(paths: list[str | Path]) -> list[Input]:
    """Every image in the given files, folders (recursively) and zips (named .zip). A path that
    does not exist is an error naming it; system files, hidden files and non-images are passed
    over."""
    found: list[Input] = []
    for given in map(Path, paths):
        if given.is_dir():
            # a broken link is listed too: reading it then names it, never drops it silently
            for path in sorted(p for p in given.rglob("*") if p.is_file() or p.is_symlink()):
                if junk_reason(path.relative_to(given).parts) is None:
                    found.append(Input(str(path), path))
        elif given.is_file() and given.suffix.lower() == ".zip" and zipfile.is_zipfile(given):
            with zipfile.ZipFile(given) as archive:
                members = sorted(m for m in archive.namelist() if not m.endswith("/"))
            for member in members:
                if junk_reason(tuple(member.split("/"))) is None:
                    found.append(Input(f"{given}!{member}", given, member))
        elif given.is_file() or given.is_symlink():
            found.append(Input(str(given), given))
        else:
            raise FileNotFoundError(f"{given}: no such file or folder")
    return found


def read_inputs(
    inputs: list[Input], log=print, progress: bool = False
) -> Iterator[tuple[Input, np.ndarray]]:
    """(input, RGB image) for each readable input; unreadable ones are logged and skipped.
    With `progress`, a bar of inputs read, their rate and the time left."""
    for item in tqdm(inputs, disable=not progress, unit="img", leave=False):
        try:
            yield item, decode_rgb(item.read_bytes())
        except (ImageReadError, OSError, zipfile.BadZipFile) as error:
            log(f"skipped {item.name}: {error}")
