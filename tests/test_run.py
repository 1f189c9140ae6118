"""The run folder and its checkpoint: one owner, checked on load, errors that name the file."""

import shutil

import pytest
import torch

from marrowdiff import run
from marrowdiff.data.datasets import DatasetError
from marrowdiff.run import CheckpointError, checkpoint_file, load_checkpoint


def test_a_run_folder_means_its_model_file(tiny_run):
    assert checkpoint_file(tiny_run) == tiny_run / run.MODEL
    assert checkpoint_file(tiny_run / run.LAST) == tiny_run / run.LAST
    checkpoint = load_checkpoint(tiny_run)
    assert checkpoint.classes == ["pronormoblast", "myeloblast", "segmented_neutrophil"]
    assert checkpoint.fold == 0 and checkpoint.config.geometry.input_size == 32
    assert "state_dict" not in checkpoint.metadata and "calibration" in checkpoint.metadata
    train, val = checkpoint.cells()
    assert len(train) + len(val) + len(checkpoint.splits().test) == 3 * 26


def _overwrite_the_middle(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(4096)  # 4 KB of zeros inside the weights
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(b""), "not a readable PyTorch checkpoint"),
        (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), "not a readable PyTorch"),
        (lambda p: p.write_bytes(p.read_bytes()[:5000]), "not a readable PyTorch checkpoint"),
        (lambda p: torch.save([1, 2, 3], p), "not a marrowdiff checkpoint"),
        (lambda p: torch.save({"format": run.FORMATS[0]}, p), "damaged checkpoint, without config"),
        (lambda p: torch.save({"format": run.FORMAT, "state_dict": {}}, p), "checksum"),
        (_overwrite_the_middle, "checksum|not a readable PyTorch checkpoint"),
    ],
)
def test_a_damaged_or_foreign_checkpoint_is_refused_by_name(tiny_run, tmp_path, damage, message):
    path = tmp_path / run.MODEL
    shutil.copy(tiny_run / run.MODEL, path)
    damage(path)
    with pytest.raises(CheckpointError, match=message) as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


def test_a_run_reopens_only_its_own_data_set(tiny_run, tmp_path):
    checkpoint = load_checkpoint(tiny_run)
    assert checkpoint.dataset().fingerprint == checkpoint.state["data"]["fingerprint"]
    other = tmp_path / "other"
    shutil.copytree(checkpoint.state["data"]["source"], other)
    next(other.rglob("*.png")).unlink()  # one image fewer: another listing
    with pytest.raises(DatasetError, match="not the data set"):
        checkpoint.dataset(other)


def test_a_checkpoint_without_its_run_folder_says_what_is_missing(tiny_run, tmp_path):
    shutil.copy(tiny_run / run.MODEL, tmp_path / run.MODEL)
    with pytest.raises(FileNotFoundError, match="splits are missing"):
        load_checkpoint(tmp_path).splits()


def test_a_model_whose_outputs_are_not_numbers_is_an_error_not_a_count(tiny_run, tmp_path):
    from marrowdiff.inference.predict import ModelError, load_model
    from marrowdiff.synthetic.cells import synthetic_cell

    state = load_checkpoint(tiny_run).state
    broken = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
              for k, v in state["state_dict"].items()}  # fmt: skip
    run.save_checkpoint(tmp_path / run.MODEL, state | {"state_dict": broken})
    model = load_model(tmp_path)  # a faithful copy of bad weights loads...
    cells = [synthetic_cell(__import__("numpy").random.default_rng(0), 48)]
    with pytest.raises(ModelError, match="non-finite outputs for 1 of 1 cells") as error:
        model.proba(cells)  # ...and gives no number
    assert str(tmp_path) in str(error.value)


def test_a_checkpoint_whose_classes_do_not_fit_its_outputs_is_refused(tiny_run, tmp_path):
    from marrowdiff.inference.predict import load_model

    state = load_checkpoint(tiny_run).state
    run.save_checkpoint(tmp_path / run.MODEL, state | {"classes": state["classes"] + ["extra"]})
    with pytest.raises(CheckpointError, match="4 class names for 3 outputs"):
        load_model(tmp_path)
    config = state["config"] | {"model": state["config"]["model"] | {"num_classes": 5}}
    run.save_checkpoint(tmp_path / run.MODEL, state | {"config": config})
    with pytest.raises(CheckpointError, match="3 class names for 5 outputs"):
        load_model(tmp_path)
    config = state["config"] | {"model": state["config"]["model"] | {"width": 0.5}}
    run.save_checkpoint(tmp_path / run.MODEL, state | {"config": config})
    with pytest.raises(CheckpointError, match="do not fit its own model description"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    "key, damage",
    [
        ("domain", {"shape": [3, 7]}),  # a bank that is not the size it says
        ("domain", {"bank": "not base64!"}),
        ("stain", {"std": [1.0, 0.0, 1.0]}),
        ("size", {"diameter": -4.0}),
    ],
)
def test_a_damaged_reference_of_the_training_cells_is_refused_by_name(
    tiny_run, tmp_path, key, damage
):
    state = load_checkpoint(tiny_run).state
    run.save_checkpoint(tmp_path / run.MODEL, state | {key: state[key] | damage})
    with pytest.raises(CheckpointError, match=f"{tmp_path / run.MODEL}: a damaged checkpoint"):
        load_checkpoint(tmp_path)
