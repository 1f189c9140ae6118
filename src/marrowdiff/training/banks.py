"""Where a split's images live while a model trains: the one choice between memory and disk.

- `PatchBank` (transforms.py): every canvas decoded once and kept, (N, 3, C + 2P, C + 2P) uint8.
  The fastest for small sets (the archive's 627 patches are 50 MB).
- `DiskBank`: the data set and its records only, a few hundred bytes per image; each batch's
  canvases are decoded when the batch is drawn, by `torch.utils.data` worker processes
  (`batches`), so memory does not grow with the number of images.

Both give the same views of the same items (`views`, `centre`); `make_bank` picks one
(`stream="auto"`: disk when the canvases would take more than `MEMORY_BANK_LIMIT`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from marrowdiff.data.datasets import Dataset, DatasetError, Record
from marrowdiff.images import ImageReadError
from marrowdiff.preprocess import Geometry, canvas
from marrowdiff.training.transforms import PatchBank, cut_views

MEMORY_BANK_LIMIT = 2 * 2**30  # bytes of canvases above which "auto" streams from disk
STREAM_MODES = ("auto", "memory", "disk")
NORMALISATION_SAMPLE = 2000  # images a disk bank's normalisation is measured on


class DiskBank:
    """The images of a split, decoded onto canvases when asked for."""

    def __init__(self, dataset: Dataset, records: list[Record], geometry: Geometry):
        self.dataset, self.records, self.geometry = dataset, records, geometry

    def __len__(self) -> int:
        return len(self.records)

    def canvas(self, i: int) -> torch.Tensor:
        record = self.records[i]
        try:
            image = self.dataset.load(record)
        except ImageReadError as exc:
            raise DatasetError(
                f"{exc}; it was readable when the split was made: run `marrowdiff split` again"
            ) from None
        return torch.from_numpy(canvas(image, self.geometry).transpose(2, 0, 1).copy())

    def views(self, items: np.ndarray) -> torch.Tensor:
        """(B, 4) items [index, dy, dx, d4] -> (B, 3, S, S) uint8 windows, each image decoded
        once per call."""
        items = np.asarray(items, dtype=np.int64)
        decoded = {int(i): self.canvas(int(i)) for i in np.unique(items[:, 0])}
        return cut_views(decoded.__getitem__, items, self.geometry)

    def centre(self, indices=None) -> torch.Tensor:
        indices = np.arange(len(self)) if indices is None else np.asarray(indices)
        return self.views(np.stack([indices, *np.zeros((3, len(indices)), np.int64)], axis=1))


class ConcatBank:
    """Several banks (one per data set, in memory or on disk) as one, in order."""

    def __init__(self, banks: list):
        self.banks = banks
        self.starts = np.cumsum([0] + [len(b) for b in banks])
        self.geometry = banks[0].geometry

    def __len__(self) -> int:
        return int(self.starts[-1])

    def canvas(self, i: int) -> torch.Tensor:
        k = int(np.searchsorted(self.starts, i, side="right") - 1)
        return self.banks[k].canvas(i - int(self.starts[k]))

    views = DiskBank.views
    centre = DiskBank.centre


def bank_bytes(n: int, geometry: Geometry) -> int:
    side = geometry.canvas + 2 * geometry.pad
    return n * 3 * side * side


def make_bank(
    dataset: Dataset, paths: list[str], geometry: Geometry, stream: str = "auto"
) -> PatchBank | DiskBank:
    """The images of `paths` (in that order) in memory or on disk, as `stream` says."""
    if stream not in STREAM_MODES:
        raise ValueError(f"stream {stream!r}: use one of {', '.join(STREAM_MODES)}")
    if stream == "auto":
        stream = "disk" if bank_bytes(len(paths), geometry) > MEMORY_BANK_LIMIT else "memory"
    if stream == "memory":
        return PatchBank(dataset.load_paths(paths), geometry)
    records, missing = [], []
    for path in paths:
        try:
            records.append(dataset.record(path))
        except KeyError:
            missing.append(path)
    if missing:
        raise DatasetError(
            f"{len(missing)} split image(s) are not in {dataset.source}, e.g. {missing[:3]}; "
            "run `marrowdiff split` again"
        )
    return DiskBank(dataset, records, geometry)


def concatenate(banks: list) -> PatchBank | DiskBank | ConcatBank:
    """One bank of several, in order: in memory if all are."""
    if len(banks) == 1:
        return banks[0]
    if all(isinstance(b, PatchBank) for b in banks):
        return PatchBank.concatenate(banks)
    return ConcatBank(banks)


def normalisation_images(bank, seed: int = 0) -> torch.Tensor:
    """The centre views the colour normalisation is measured on: all of a memory bank's, a
    seeded sample of a disk bank's (its mean and sd to about 1 %)."""
    if isinstance(bank, PatchBank) or len(bank) <= NORMALISATION_SAMPLE:
        return bank.centre()
    pick = np.sort(np.random.default_rng([seed, 17]).choice(len(bank), NORMALISATION_SAMPLE, False))
    return bank.centre(pick)


def centre_chunks(bank, chunk: int = 512) -> Iterator[np.ndarray]:
    """A bank's centre views, `chunk` images at a time (bounded memory)."""
    for first in range(0, len(bank), chunk):
        yield bank.centre(np.arange(first, min(first + chunk, len(bank)))).numpy()


class _Batches(torch.utils.data.Dataset):
    def __init__(self, bank, batches: Sequence[np.ndarray]):
        self.bank, self.batches = bank, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> torch.Tensor:
        return self.bank.views(self.batches[k])


def default_workers(on_disk: bool) -> int:
    """Decoding processes for a bank: none in memory; on disk, the cores beyond the two the
    training step uses, up to 4. On 2 cores a worker costs more than it saves (measured on the
    archive: 150 images/s with one, 185 decoding between steps, 205 from memory)."""
    if not on_disk:
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - 2))


def _one_thread(worker_id: int) -> None:
    torch.set_num_threads(1)  # a decoding worker leaves the cores to the training step


def batches(
    bank, item_batches: Sequence[np.ndarray], workers: int = 0, pin: bool = False
) -> Iterator[torch.Tensor]:
    """The views of each batch of items, in order: decoded by `workers` processes ahead of
    the training step (0: in this process, as a memory bank needs)."""
    if workers == 0 or isinstance(bank, PatchBank):  # a memory bank: no decoding to overlap
        for items in item_batches:
            yield bank.views(items)
        return
    loader = torch.utils.data.DataLoader(
        _Batches(bank, item_batches),
        batch_size=None,
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=4,
        worker_init_fn=_one_thread,
        # its own generator: worker seeds drawn from the global one would change dropout
        generator=torch.Generator().manual_seed(0),
    )
    yield from loader
