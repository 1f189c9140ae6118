"""Atomic file output: a reader never sees a half-written file, a crash never leaves one."""

from __future__ import annotations

import contextlib
import glob
import io
import itertools
import json
import math
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `path`; on success fsync it and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = f".{path.name}.h{HOST}p{os.getpid()}."  # who writes it: judged after a kill
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=owner, suffix=".part")
    try:
        # Text is UTF-8; a file name that is not (a Latin-1 name on Linux) keeps its own bytes.
        text = {"encoding": "utf-8", "errors": "surrogateescape"}
        with os.fdopen(fd, mode, **({} if "b" in mode else text)) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
        remove_stale_parts(path.parent, path.name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# A temporary file this old beside its target was left by a crash (for one whose writer this
# machine cannot ask about: another host's on shared storage, or an older marrowdiff's).
STALE_PART_SECONDS = 3600
HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]
_OWNER = re.compile(r"\.h([A-Za-z0-9]*)p(\d+)\.[^.]*\.part$")


def remove_stale_parts(folder: str | Path, name: str = "*") -> int:
    """Remove the temporaries a killed writer left in `folder` (of the file `name`, or of any):
    this machine's whose process is gone, and any older than STALE_PART_SECONDS. A live
    writer's are kept. Returns how many were removed."""
    pattern = f".{glob.escape(name) if name != '*' else '*'}.*.part"
    removed = 0
    for part in Path(folder).glob(pattern):
        with contextlib.suppress(OSError):
            if _abandoned(part):
                part.unlink()
                removed += 1
    return removed


def _abandoned(part: Path) -> bool:
    owner = _OWNER.search(part.name)
    if owner and owner.group(1) == HOST:
        return not _alive(int(owner.group(2)))
    return time.time() - part.stat().st_mtime > STALE_PART_SECONDS


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """JSON has no NaN or infinity: an undefined figure is written as null. A path that is not
    valid Unicode (a non-UTF-8 file name) is written as a JSON escape and reads back the same.
    Encoded as it is written, so a large file (the splits of 200,000 images) is never held
    whole in memory, nor copied: the text is json.dumps's, byte for byte."""
    data = _finite(data)
    try:
        return _stream_json(path, data, ensure_ascii=False)
    except UnicodeEncodeError:
        return _stream_json(path, data, ensure_ascii=True)


def _stream_json(path: str | Path, data: Any, ensure_ascii: bool) -> Path:
    encoder = json.JSONEncoder(indent=2, ensure_ascii=ensure_ascii, allow_nan=False)
    with atomic_open(path, "wb") as fh:
        pending: list[str] = []
        for chunk in itertools.chain(encoder.iterencode(data), ["\n"]):
            pending.append(chunk)
            if len(pending) >= 4096:
                fh.write("".join(pending).encode("utf-8"))  # strict: a lone surrogate raises
                pending = []
        fh.write("".join(pending).encode("utf-8"))
    return Path(path)


def _finite(data: Any) -> Any:
    """`data` with every NaN and infinity as None; the containers that hold none are the
    same objects, not copies."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        values = [_finite(v) for v in data.values()]
        if all(a is b for a, b in zip(values, data.values(), strict=True)):
            return data
        return dict(zip(data, values, strict=True))
    if isinstance(data, list | tuple):
        items = [_finite(v) for v in data]
        return data if all(a is b for a, b in zip(items, data, strict=True)) else items
    return data


def save_image(path: str | Path, image, **params) -> Path:
    """Save a Pillow image or matplotlib figure atomically, format from the suffix."""
    buf = io.BytesIO()
    if hasattr(image, "savefig"):
        image.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **params)
    else:
        image.save(buf, format=_pil_format(path), **params)
    return write_bytes(path, buf.getvalue())


def _pil_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    return {"jpg": "JPEG", "jpeg": "JPEG", "tif": "TIFF"}.get(suffix, suffix.upper() or "PNG")
