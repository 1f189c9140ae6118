"""A corpus of malformed inputs, generated on the fly (tiny; nothing is committed).

Three kinds, each a list of `Case`s with what a user must see:
- `IMAGE_FILES`: one file each, put among good cells in a class folder. `bad=True`: it must be
  skipped and named; `bad=False`: odd but valid, it must be read with its folder's label.
- `DATA_SETS`: a whole input that cannot be used as given (a manifest, a zip, a folder); every
  stage must refuse it with exit 2 and a sentence holding `says`.
- `MODEL_FILES`: a damaged or foreign model; every stage that loads one must refuse it with
  exit 2 naming the file.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from marrowdiff.synthetic.cells import synthetic_cell

from .conftest import encode


@dataclass(frozen=True)
class Case:
    name: str  # a file name, or the case's id
    make: Callable[[Path], Path]  # writes the case under a folder; returns what to give marrowdiff
    bad: bool = True
    says: str = ""  # a fragment of the message (data sets and models)
    labels_only: bool = False  # its only fault is its labels: `--vocab infer` reads it


def cell(seed: int = 0, size: int = 48) -> np.ndarray:
    return synthetic_cell(np.random.default_rng(seed), size)


def png(seed: int = 0, **kw) -> bytes:
    return encode(cell(seed), "PNG", **kw)


def jpeg(seed: int = 0) -> bytes:
    return encode(cell(seed), "JPEG", quality=90)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds no pixels (a bomb's header, or a 0-pixel one)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")


def bad_crc_png() -> bytes:
    data = bytearray(png())
    at = data.index(b"IDAT") + 20
    data[at] ^= 0xFF  # flip a byte of the compressed pixels: the chunk's CRC no longer matches
    return bytes(data)


def file_with(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data() if callable(data) else data)
        return path

    return make


def sparse(name: str, size: int) -> Callable[[Path], Path]:
    """A file of `size` bytes that costs no disk (a PNG header, then a hole)."""

    def make(folder: Path) -> Path:
        path = folder / name
        with open(path, "wb") as fh:
            fh.write(png_header(64, 64))
            fh.truncate(size)
        return path

    return make


def symlink(name: str, target: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        os.symlink(target, path)
        return path

    return make


def saved(name: str, image: Image.Image, fmt: str, **kw) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        buf = io.BytesIO()
        image.save(buf, format=fmt, **kw)
        (folder / name).write_bytes(buf.getvalue())
        return folder / name

    return make


RGB = Image.fromarray(cell(7))
PNG, JPEG = png(), jpeg()

IMAGE_FILES = [
    # not images at all
    Case("empty.png", file_with("empty.png", b"")),
    Case("random.png", file_with("random.png", np.random.default_rng(1).bytes(3000))),
    Case("text.png", file_with("text.png", b"hello, this is not a picture\n")),
    Case("page.jpg", file_with("page.jpg", b"<!doctype html><html><body>404</body></html>")),
    Case("drawing.png", file_with("drawing.png", b"<svg xmlns='http://www.w3.org/2000/svg'/>")),
    Case("paper.png", file_with("paper.png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")),
    Case("archive.png", file_with("archive.png", lambda: _zip_bytes({"a.png": PNG}))),
    Case("nul.bmp", file_with("nul.bmp", b"\0" * 512)),
    # broken images
    Case("half.png", file_with("half.png", PNG[: len(PNG) // 2])),
    Case("header-only.png", file_with("header-only.png", PNG[:33])),
    Case("signature-only.png", file_with("signature-only.png", PNG[:8])),
    Case("cut.jpg", file_with("cut.jpg", JPEG[: len(JPEG) * 6 // 10])),
    Case("soi-only.jpg", file_with("soi-only.jpg", b"\xff\xd8")),
    Case("bad-crc.png", file_with("bad-crc.png", bad_crc_png)),
    Case("zero-size.png", file_with("zero-size.png", lambda: png_header(0, 0))),
    Case("bomb.png", file_with("bomb.png", lambda: png_header(200_000, 200_000))),
    Case("cut.bmp", file_with("cut.bmp", lambda: encode(cell(2), "BMP")[:200])),
    Case("cut.tif", file_with("cut.tif", lambda: encode(cell(3), "TIFF")[:300])),
    Case("cut.gif", file_with("cut.gif", lambda: encode(cell(4), "GIF")[:100])),
    Case("cut.webp", file_with("cut.webp", lambda: encode(cell(5), "WEBP")[:60])),
    Case("huge.png", sparse("huge.png", 65 * 2**20)),  # over the 64 MB a cell may take
    # files that are not there
    Case("dangling.png", symlink("dangling.png", "/nonexistent/marrowdiff/cell.png")),
    Case("loop.png", symlink("loop.png", "loop.png")),
    # odd but valid: read, with the folder's label
    Case("png-named.jpg", file_with("png-named.jpg", PNG), bad=False),
    Case("jpeg-named.png", file_with("jpeg-named.png", JPEG), bad=False),
    Case("upper.PNG", file_with("upper.PNG", lambda: png(8)), bad=False),
    Case("grey.png", saved("grey.png", RGB.convert("L"), "PNG"), bad=False),
    Case("grey16.png", saved("grey16.png", RGB.convert("I;16"), "PNG"), bad=False),
    Case("palette.png", saved("palette.png", RGB.convert("P"), "PNG"), bad=False),
    Case("alpha.png", saved("alpha.png", RGB.convert("RGBA"), "PNG"), bad=False),
    Case("grey-alpha.png", saved("grey-alpha.png", RGB.convert("LA"), "PNG"), bad=False),
    Case("cmyk.jpg", saved("cmyk.jpg", RGB.convert("CMYK"), "JPEG"), bad=False),
    Case("progressive.jpg", saved("progressive.jpg", RGB, "JPEG", progressive=True), bad=False),
    Case("cell.bmp", saved("cell.bmp", RGB, "BMP"), bad=False),
    Case("cell.tif", saved("cell.tif", RGB, "TIFF", compression="tiff_lzw"), bad=False),
    Case("cell.webp", saved("cell.webp", RGB, "WEBP"), bad=False),
    Case("cell.gif", saved("cell.gif", RGB, "GIF"), bad=False),
    Case("one-pixel.png", saved("one-pixel.png", RGB.resize((1, 1)), "PNG"), bad=False),
    Case("thin.png", saved("thin.png", RGB.resize((400, 3)), "PNG"), bad=False),
    Case("name with spaces.png", file_with("name with spaces.png", lambda: png(9)), bad=False),
    Case('comma,quote".png', file_with('comma,quote".png', lambda: png(10)), bad=False),
    Case("Zoë-张伟.png", file_with("Zoë-张伟.png", lambda: png(11)), bad=False),
    Case(
        "latin1-\udcff.png", file_with(os.fsdecode(b"latin1-\xff.png"), lambda: png(12)), bad=False
    ),
]


def _zip_bytes(members: dict[str, bytes], **kw) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", **kw) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _good_members() -> dict[str, bytes]:
    return {f"{label}/{k}.png": png(10 * int(label) + k) for label in "01" for k in range(3)}


def manifest(text: str | bytes, suffix: str = ".csv") -> Callable[[Path], Path]:
    """A manifest beside good files 0/0.png .. 1/2.png."""

    def make(folder: Path) -> Path:
        for name, data in _good_members().items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        path = folder / f"list{suffix}"
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    return make


def a_zip(members: dict[str, bytes] | None = None, raw: bytes | None = None, **kw):
    def make(folder: Path) -> Path:
        path = folder / "cells.zip"
        if raw is not None:
            path.write_bytes(raw)
            return path
        with zipfile.ZipFile(path, "w", **kw) as archive:
            for name, data in (members or {}).items():
                archive.writestr(name, data)
        return path

    return make


def twice_zip(folder: Path) -> Path:
    import warnings

    path = folder / "twice.zip"
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as archive:
        warnings.simplefilter("ignore", UserWarning)
        for name, data in _good_members().items():
            archive.writestr(name, data)
        archive.writestr("0/0.png", png(99))
    return path


def folder(files: dict[str, bytes]) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        for name, data in files.items():
            (root / "data" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "data" / name).write_bytes(data)
        (root / "data").mkdir(exist_ok=True)
        return root / "data"

    return make


HEADER = "path,label\n"
ROWS = "0/0.png,0\n0/1.png,0\n0/2.png,0\n1/0.png,1\n1/1.png,1\n1/2.png,1\n"
GOOD = _good_members()

DATA_SETS = [
    Case("manifest-twice", manifest(HEADER + ROWS + "./0/0.png,1\n"), says="again"),
    Case(
        "manifest-latin1",
        manifest((HEADER + ROWS + "0/0.png,Zoë\n").encode("latin-1")),
        says="save the manifest as UTF-8",
    ),
    Case(
        "manifest-extra-field",
        manifest(HEADER + "0/0.png,0,9\n" + ROWS[10:]),
        says="line 2 has 3 fields",
    ),
    Case(
        "manifest-no-label-column", manifest("path,class\n0/0.png,0\n"), says="columns path,label"
    ),
    Case("manifest-empty", manifest(""), says="columns path,label"),
    Case("manifest-header-only", manifest(HEADER), says="columns path,label"),
    Case("manifest-open-quote", manifest(HEADER + '"0/0.png,0\n' + ROWS), says="check its quotes"),
    Case(
        "manifest-parent", manifest(HEADER + "../0/0.png,0\n" + ROWS), says="outside the manifest"
    ),
    Case(
        "manifest-absolute",
        manifest(HEADER + "/etc/passwd,0\n" + ROWS),
        says="outside the manifest",
    ),
    Case(
        "manifest-unknown-label",
        manifest(HEADER + "0/0.png,blast\n" + ROWS[10:]),
        says="are not in vocabulary 'choi2017': 'blast'",
        labels_only=True,
    ),
    Case(
        "manifest-nothing-there", manifest(HEADER + "a.png,0\nb.png,1\n"), says="no labelled images"
    ),
    Case("manifest-binary", manifest(b"\x89PNG\r\n\x1a\n\0\0\0"), says="UTF-8"),
    Case(
        "manifest-nul",
        manifest(HEADER + "0/0.png,0\0\n" + ROWS[10:]),
        says="'0\\x00'",
        labels_only=True,
    ),
    Case("zip-twice", twice_zip, says="more than once"),
    Case("zip-truncated", a_zip(raw=_zip_bytes(GOOD)[:-30]), says="not a readable zip archive"),
    Case("zip-empty", a_zip({}), says="no labelled images"),
    Case(
        "zip-only-junk",
        a_zip({"__MACOSX/0/._a.png": b"x", "Thumbs.db": b"x"}),
        says="no labelled images",
    ),
    Case("zip-not-a-zip", a_zip(raw=b"PK\x03\x04" + b"\0" * 60), says="not a readable zip"),
    Case(
        "zip-unknown-class",
        a_zip({**GOOD, "blast/0.png": png(50)}),
        says="'blast'",
        labels_only=True,
    ),
    Case("folder-empty", folder({}), says="no labelled images"),
    Case("folder-flat", folder({"a.png": PNG, "b.png": png(1)}), says="no labelled images"),
    Case(
        "folder-unknown-class",
        folder({**GOOD, "blasts/0.png": png(51)}),
        says="'blasts'",
        labels_only=True,
    ),
    Case("missing-path", lambda root: root / "no-such-data", says="no such file or folder"),
    Case("a-text-file", file_with("notes.txt.md", b"hello"), says="not a folder, a zip"),
]


def _checkpoint_with(run: Path, folder: Path, change: Callable[[bytes], bytes]) -> Path:
    import shutil

    target = folder / "run"
    shutil.copytree(run, target)
    model = target / "model.pt"
    model.write_bytes(change(model.read_bytes()))
    return target


def _overwrite_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(4096) + data[middle + 4096 :]


def _checkpoint_edited(run: Path, folder: Path, edit: Callable[[dict], None]) -> Path:
    """A copy of the run whose model.pt says something else about itself (weights intact)."""
    import shutil

    import torch

    target = folder / "run"
    shutil.copytree(run, target)
    state = torch.load(target / "model.pt", weights_only=True)
    edit(state)
    torch.save(state, target / "model.pt")
    return target


def _onnx_edited(onnx: Path, edit, rehash: bool = True, graph=None) -> bytes:
    """The ONNX file with its marrowdiff metadata edited (`edit(meta)` changes it in place, or
    returns the new text), its checksums recomputed unless `rehash` is off; `graph()` gives
    another model's graph to carry the metadata."""
    import onnx as onnxlib

    from marrowdiff.inference.predict import ONNX_METADATA_KEY, graph_sha256, metadata_sha256

    proto = onnxlib.load(str(onnx))
    if graph is not None:
        proto.graph.CopyFrom(graph())
    entry = next(e for e in proto.metadata_props if e.key == ONNX_METADATA_KEY)
    meta = json.loads(entry.value)
    text = edit(meta)
    if text is None:
        if rehash:
            meta["graph_sha256"] = graph_sha256(proto)
            meta["metadata_sha256"] = metadata_sha256(meta)
        text = json.dumps(meta)
    entry.value = text
    return proto.SerializeToString()


def _foreign_graph():
    """A graph of someone else's: float (1, 4) in, the same out."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    return helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "foreign", [x], [y])


def _onnx_case(name: str, onnx: Path, edit, **kw) -> Case:
    return Case(name, file_with("model.onnx", lambda: _onnx_edited(onnx, edit, **kw)))


def model_cases(run: Path, onnx: Path) -> list[Case]:
    """Damaged and foreign model files, made from a good run and its ONNX export."""

    def run_with(change):
        return lambda folder: _checkpoint_with(run, folder, change)

    return [
        Case("pt-random", file_with("model.pt", np.random.default_rng(2).bytes(5000))),
        Case("pt-empty", file_with("model.pt", b"")),
        Case("pt-text", file_with("model.pt", b"not a model\n")),
        Case("pt-truncated", file_with("model.pt", lambda: (run / "model.pt").read_bytes()[:9000])),
        Case("pt-zeroed-middle", run_with(_overwrite_middle)),
        Case("pt-a-data-zip", file_with("data.zip", lambda: _zip_bytes(GOOD))),
        Case("onnx-random", file_with("model.onnx", np.random.default_rng(3).bytes(4000))),
        Case("onnx-truncated", file_with("model.onnx", lambda: onnx.read_bytes()[:5000])),
        Case(
            "onnx-zeroed-middle",
            file_with("model.onnx", lambda: _overwrite_middle(onnx.read_bytes())),
        ),
        Case(
            "run-without-model",
            lambda folder: (folder / "empty-run").mkdir() or folder / "empty-run",
        ),
        Case("missing-model", lambda folder: folder / "no-such-run"),
        Case("onnx-a-folder", lambda folder: (folder / "x.onnx").mkdir() or folder / "x.onnx"),
        _onnx_case("onnx-metadata-not-json", onnx, lambda meta: "{not json"),
        _onnx_case("onnx-metadata-a-list", onnx, lambda meta: "[1, 2]"),
        _onnx_case(
            "onnx-metadata-without-classes", onnx, lambda meta: meta.pop("classes") and None
        ),
        _onnx_case(
            "onnx-metadata-without-geometry",
            onnx,
            lambda meta: meta["config"].pop("geometry") and None,
        ),
        _onnx_case("onnx-classes-not-a-list", onnx, lambda meta: meta.update(classes="abc")),
        _onnx_case(
            "onnx-fewer-classes-than-outputs",
            onnx,
            lambda meta: meta.update(classes=meta["classes"][:2]),
        ),
        _onnx_case(
            "onnx-metadata-edited-checksum-kept",
            onnx,
            lambda meta: meta.update(classes=meta["classes"][::-1]),
            rehash=False,
        ),
        _onnx_case("onnx-foreign-graph", onnx, lambda meta: None, graph=_foreign_graph),
        Case(
            "pt-normalisation-none",
            lambda folder: _checkpoint_edited(
                run, folder, lambda state: state.update(normalisation=None)
            ),
        ),
        Case(
            "pt-classes-not-a-list",
            lambda folder: _checkpoint_edited(run, folder, lambda state: state.update(classes=7)),
        ),
    ]
