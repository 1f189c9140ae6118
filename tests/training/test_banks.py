"""Images in memory or decoded from disk when needed: the same views, the same training."""

import numpy as np
import pytest
import torch

from marrowdiff.data.datasets import open_dataset
from marrowdiff.preprocess import Geometry
from marrowdiff.training import banks
from marrowdiff.training.transforms import PatchBank

GEOMETRY = Geometry(input_size=32, field=0.8, max_shift=1 / 8, white_balance=True)


@pytest.fixture
def dataset(class_tree):
    return open_dataset(class_tree)


def _items(n, geometry, seed=0):
    rng = np.random.default_rng(seed)
    p = geometry.pad
    return np.stack(
        [rng.integers(0, n, 30), rng.integers(-p, p + 1, 30), rng.integers(-p, p + 1, 30),
         rng.integers(0, 8, 30)],
        axis=1,
    )  # fmt: skip


def test_a_disk_bank_cuts_the_same_pixels_as_a_memory_bank(dataset):
    paths = [r.path for r in dataset.records]
    memory = banks.make_bank(dataset, paths, GEOMETRY, "memory")
    disk = banks.make_bank(dataset, paths, GEOMETRY, "disk")
    assert isinstance(memory, PatchBank) and isinstance(disk, banks.DiskBank)
    items = _items(len(paths), GEOMETRY)
    assert torch.equal(memory.views(items), disk.views(items))
    assert torch.equal(memory.centre(), disk.centre())
    # one in memory and one on disk, as one bank: indices run on from the first
    both = banks.concatenate([memory, disk])
    n = len(paths)
    shifted = items.copy()
    shifted[:, 0] += n
    assert len(both) == 2 * n and torch.equal(both.views(shifted), memory.views(items))


def test_auto_streams_from_disk_above_the_memory_limit(dataset, monkeypatch):
    paths = [r.path for r in dataset.records]
    assert isinstance(banks.make_bank(dataset, paths, GEOMETRY), PatchBank)
    monkeypatch.setattr(banks, "MEMORY_BANK_LIMIT", banks.bank_bytes(len(paths), GEOMETRY) - 1)
    bank = banks.make_bank(dataset, paths, GEOMETRY)
    assert isinstance(bank, banks.DiskBank)
    assert bank.records == dataset.records  # no pixels held: the records and how to read them


def test_worker_processes_give_the_batches_in_order(dataset):
    disk = banks.make_bank(dataset, [r.path for r in dataset.records], GEOMETRY, "disk")
    batches = [_items(len(disk), GEOMETRY, seed) for seed in range(5)]
    direct = list(banks.batches(disk, batches, workers=0))
    decoded = list(banks.batches(disk, batches, workers=2))
    assert len(decoded) == 5 and all(
        torch.equal(a, b) for a, b in zip(direct, decoded, strict=True)
    )


def test_training_from_disk_ends_with_the_same_weights_as_from_memory(class_tree, tmp_path):
    from dataclasses import replace

    from marrowdiff.config import load_config
    from marrowdiff.data.splits import splits_for_run
    from marrowdiff.training.train import FitOptions, fit

    config = load_config("quick", train__epochs=1)
    config = replace(
        config,
        model=replace(config.model, input_size=32),
        geometry=replace(config.geometry, input_size=32),
    )
    quiet = lambda m: None  # noqa: E731
    data = open_dataset(class_tree)
    splits = splits_for_run(data, tmp_path / "memory", log=quiet)
    memory = fit(config, data, splits, tmp_path / "memory", FitOptions(stream="memory"), log=quiet)
    disk = fit(
        config, data, splits, tmp_path / "disk", FitOptions(stream="disk", workers=1), log=quiet
    )
    assert disk["runtime"]["images"] == "disk" and memory["runtime"]["images"] == "memory"
    for key, value in memory["state_dict"].items():
        assert torch.equal(value, disk["state_dict"][key]), key
