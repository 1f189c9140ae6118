"""A slide's cells and counted tiles as GeoJSON that QuPath opens (File > Import objects, or
drag the file onto the slide): each cell a detection (a circle of its radius, in level-0 px)
with its class name and colour and its probability as a measurement; each counted tile an
annotation. Written feature by feature, atomically."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from marrowdiff.fileio import atomic_open
from marrowdiff.slides.tiles import Box

SIDES = 16  # vertices of each cell's circle


def hex_rgb(colour: str) -> list[int]:
    """'#1f77b4' -> [31, 119, 180]."""
    return [int(colour[i : i + 2], 16) for i in (1, 3, 5)]


_ANGLES = np.linspace(0, 2 * np.pi, SIDES, endpoint=False)
_UNIT = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1)  # (SIDES, 2)


def circle(x: float, y: float, r: float) -> list[list[list[float]]]:
    """A closed polygon ring of SIDES vertices around (x, y)."""
    ring = (np.array([x, y]) + r * _UNIT).round(1).tolist()
    return [ring + [ring[0]]]


def cell_feature(x: float, y: float, r: float, name: str, rgb: list[int], p: float,
                 flag: str) -> dict:  # fmt: skip
    properties = {
        "objectType": "detection",
        "classification": {"name": name, "color": rgb},
        "measurements": {"probability": round(float(p), 4)},
    }
    if flag:
        properties["flag"] = flag
    return {
        "type": "Feature",
        "id": str(uuid.uuid4()),
        "geometry": {"type": "Polygon", "coordinates": circle(x, y, r)},
        "properties": properties,
    }


def tile_feature(box: Box, rank: int) -> dict:
    x0, y0, x1, y1 = box.x, box.y, box.x + box.w, box.y + box.h
    return {
        "type": "Feature",
        "id": str(uuid.uuid4()),
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
        },
        "properties": {
            "objectType": "annotation",
            "name": f"counted tile {rank + 1}",
            "classification": {"name": "Counted tile", "color": [0, 90, 220]},
            "isLocked": True,
        },
    }


def write_geojson(path: str | Path, features: Iterable[dict]) -> Path:
    """A FeatureCollection of `features`, streamed."""
    with atomic_open(path, "w") as fh:
        fh.write('{"type": "FeatureCollection", "features": [\n')
        for i, feature in enumerate(features):
            fh.write((",\n" if i else "") + json.dumps(feature, separators=(",", ":")))
        fh.write("\n]}\n")
    return Path(path)
