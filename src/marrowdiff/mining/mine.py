"""Mine a centred-cell data set's fields for objects that are not nucleated cells, into a data
set `marrowdiff train` reads (a CSV manifest of crops) with splits inherited image by image.

    OUT/manifest.csv       path,label,group (group: the field the object came from)
    OUT/crops/<label>/     each object as `count` crops it (the detector's patch side), JPEG
    OUT/splits.json        each crop on the side of the split its field is on (leak-free)
    OUT/mined.json         what was mined: per outcome, skipped, the rules, the source
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from marrowdiff import __version__
from marrowdiff.counting.detect import DetectConfig, crop, detect
from marrowdiff.data.datasets import Dataset, open_dataset
from marrowdiff.data.splits import Splits, derive_splits
from marrowdiff.errors import UserError
from marrowdiff.fileio import write_bytes, write_json, write_text
from marrowdiff.images import encode_jpeg
from marrowdiff.mining.debris import background_point, draw_debris
from marrowdiff.mining.objects import LABELLED, SKIP, SortConfig, nuclear_share, sort_objects

MANIFEST = "manifest.csv"
VOCABULARY = "marrow14"  # the outcomes' vocabulary: the mined set is read with it


class MiningError(UserError, ValueError):
    """A data set cannot be mined as given; the message says what to change."""


@dataclass(frozen=True)
class MineConfig:
    detect: DetectConfig = field(default_factory=DetectConfig)
    sort: SortConfig = field(default_factory=SortConfig)
    debris: float = 0.25  # drawn debris crops per field (on its own background)
    skip_labels: tuple[str, ...] = ("platelet",)  # fields whose labelled object is not a cell
    seed: int = 0
    quality: int = 95  # JPEG

    def to_dict(self) -> dict:
        return {
            "detect": self.detect.to_dict(),
            "sort": self.sort.to_dict(),
            "debris": self.debris,
            "skip_labels": list(self.skip_labels),
            "seed": self.seed,
        }


def mine_field(
    image: np.ndarray, config: MineConfig, rng: np.random.Generator, centred: bool = True
) -> list[tuple[str, np.ndarray]]:
    """(outcome, crop) of every object of one field that is not its labelled cell, sorted by
    `objects.sort_objects`, plus drawn debris. `centred`: False for a field whose labelled
    object is not a nucleated cell (a platelet image)."""
    d = config.detect.cell_diameter
    side = config.detect.patch_size
    found = detect(image, config.detect)
    patches = [crop(image, o.y, o.x, side) for o in found]
    shares = [nuclear_share(p, d, config.sort.dense) for p in patches]
    outcomes = sort_objects(image.shape[:2], found, shares, d, config.sort, centred)
    mined = []
    for outcome, patch in zip(outcomes, patches, strict=True):
        if outcome not in (LABELLED, SKIP):
            mined.append((outcome, patch))
    if rng.random() < config.debris:
        point = background_point(image.shape[:2], [(o.y, o.x) for o in found], 0.7 * d, rng)
        if point is not None:
            mined.append(("artefact", draw_debris(crop(image, *point, side), rng)))
    return mined


def mine(
    dataset: Dataset,
    splits: Splits,
    out: Path,
    config: MineConfig = MineConfig(),
    log=print,
    progress: bool = False,
) -> dict:
    """Mine every field of `dataset` (split by `splits`) into `out`; returns mined.json."""
    if splits.fingerprint not in (None, dataset.fingerprint):
        raise MiningError(
            f"{splits.source} was made for another listing than {dataset.source}; mine with "
            "the splits of this data set (`marrowdiff split`)"
        )
    out = Path(out)
    rng = np.random.default_rng(config.seed)
    rows, sources, labels = [], {}, {}
    tally, unreadable = Counter(), []
    images = dataset.iter_images(progress, "mining fields", whole=True)
    for i, (record, image, reason) in enumerate(images):
        if image is None:
            unreadable.append(f"{dataset.describe(record)}: {reason}")
            log(f"skipped {dataset.describe(record)}: {reason}")
            continue
        centred = record.label not in config.skip_labels
        stem = Path(record.path).stem
        for k, (outcome, patch) in enumerate(mine_field(image, config, rng, centred)):
            path = f"crops/{outcome}/{i:06d}-{stem}-{k}.jpg"
            write_bytes(out / path, encode_jpeg(patch, quality=config.quality))
            rows.append((path, outcome, record.path))
            sources[path], labels[path] = record.path, outcome
            tally[outcome] += 1
    if not sum(n for outcome, n in tally.items() if outcome != "artefact"):  # drawn only
        raise MiningError(
            f"{dataset.source}: no object was mined from {len(dataset)} field(s); mining needs "
            "whole fields with a labelled cell at the centre (as PBC's)"
        )
    manifest = io.StringIO()
    csv.writer(manifest, lineterminator="\n").writerows([("path", "label", "group"), *rows])
    write_text(out / MANIFEST, manifest.getvalue())
    derived = derive_splits(splits, sources, labels)
    written = open_dataset(out / MANIFEST, VOCABULARY)
    derived["dataset"] = {
        "source": str(out / MANIFEST),
        "fingerprint": written.fingerprint,
        "vocabulary": VOCABULARY,
    }
    Splits(derived).write(out)
    summary = {
        "format": "marrowdiff.mining/1",
        "version": __version__,
        "source": str(dataset.source),
        "source_fingerprint": dataset.fingerprint,
        "splits": str(splits.source),
        "splits_fingerprint": splits.fingerprint,
        "fields": len(dataset),
        "unreadable": unreadable,
        "mined": dict(sorted(tally.items())),
        "test_objects": len(derived["test"]),
        "config": config.to_dict(),
    }
    write_json(out / "mined.json", summary)
    log(
        f"{out}: {sum(tally.values())} objects mined from {len(dataset) - len(unreadable)} "
        f"fields ({', '.join(f'{k} {v}' for k, v in sorted(tally.items()))}); "
        f"{len(derived['test'])} of them from test fields, never trained on"
    )
    return summary


def mined_set(
    dataset: Dataset,
    splits: Splits,
    out: Path,
    config: MineConfig = MineConfig(),
    log=print,
    progress: bool = False,
) -> tuple[Dataset, Splits]:
    """The mined data set in `out` and its splits: mined now, unless `out` holds a mining of
    this listing, split by these splits, with this configuration (a demo run again)."""
    try:
        summary = json.loads((Path(out) / "mined.json").read_text())
        current = (
            summary["source_fingerprint"] == dataset.fingerprint
            and summary["splits_fingerprint"] == splits.fingerprint
            and summary["config"] == json.loads(json.dumps(config.to_dict()))
        )
    except (OSError, ValueError, KeyError, TypeError):
        current = False
    if not current:
        mine(dataset, splits, out, config, log, progress)
    mined = open_dataset(Path(out) / MANIFEST, VOCABULARY)
    return mined, Splits.read(out, mined)
