"""A trained model's domain reference: written by training and by `calibrate`, carried by the
ONNX export, and turned into a warning at the top of `classify`'s output and of a report."""

import csv
import json
import shutil

import numpy as np
import pytest

from marrowdiff import run
from marrowdiff.cli import main
from marrowdiff.inference.predict import ModelError, OnnxModel, TorchModel, load_classifier
from marrowdiff.synthetic.cells import synthetic_cell

from ..conftest import tiny_fields, write_image


def cell_folder(folder, n: int = 12):
    rng = np.random.default_rng(4)
    for k in range(n):
        write_image(folder / f"cell{k}.png", synthetic_cell(rng, 48, radius=(8, 12, 16)[k % 3]))
    return folder


def doctored(tiny_run, tmp_path, **domain):
    """A copy of the tiny run whose domain reference is changed (None: removed)."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    state = run.load_state(copy / run.MODEL)
    if domain.get("remove"):
        state.pop("domain")
    else:
        state["domain"] = state["domain"] | domain
    run.save_checkpoint(copy / run.MODEL, state)
    return copy


def test_training_stores_a_reference_of_the_models_own_features(tiny_run):
    checkpoint = run.load_checkpoint(tiny_run)
    reference = checkpoint.domain
    model = TorchModel.from_checkpoint(checkpoint)
    _, features = model.run(np.zeros((2, 3, 32, 32), np.uint8))
    train, val = checkpoint.cells()
    assert reference.dim == features.shape[1]
    assert len(reference.bank) == len(train)  # fewer than MAX_BANK: every training cell
    assert reference.threshold_cells == len(val) and reference.held_out == "validation"


def test_the_onnx_file_gives_the_checkpoints_distances(tiny_run, onnx_file, tmp_path):
    images = [write_image_and_read(tmp_path, k) for k in range(6)]
    torch_model, onnx_model = (
        TorchModel.from_checkpoint(run.load_checkpoint(tiny_run)),
        OnnxModel(onnx_file),
    )
    assert onnx_model.domain.threshold == torch_model.domain.threshold
    _, a = torch_model.outputs(images)
    _, b = onnx_model.outputs(images)
    assert np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=2e-3)


def write_image_and_read(folder, k: int) -> np.ndarray:
    return synthetic_cell(np.random.default_rng(k), 48, radius=(8, 12, 16)[k % 3])


def test_classify_writes_each_cells_distance_and_says_nothing_of_cells_like_the_training_ones(
    tiny_run, tmp_path, capsys
):
    out = tmp_path / "cells.csv"
    assert (
        main(["classify", str(tiny_run), str(cell_folder(tmp_path / "in")), "--out", str(out)]) == 0
    )
    rows = list(csv.DictReader(out.open()))
    assert all(float(r["distance"]) < 0.5 for r in rows)  # a cosine distance, filled in
    assert "differ from the model's training images" not in capsys.readouterr().out


def test_classify_warns_first_when_the_cells_lie_outside_the_training_cells(
    tiny_run, tmp_path, capsys
):
    # a threshold below every distance: all 12 cells lie beyond it (p = 0.01**12)
    model = doctored(tiny_run, tmp_path, threshold=-2.0)
    out = tmp_path / "cells.csv"
    assert main(["classify", str(model), str(cell_folder(tmp_path / "in")), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("warning: these images differ from the model's training images")
    assert "colour: mean L*a*b*" in lines[0]
    assert "12 of 12 cells (100%)" in lines[0] and "review every cell" in lines[0]


def test_a_model_without_a_reference_says_the_check_was_not_made(tiny_run, tmp_path, capsys):
    model = doctored(tiny_run, tmp_path, remove=True)
    out = tmp_path / "cells.csv"
    assert main(["classify", str(model), str(cell_folder(tmp_path / "in")), "--out", str(out)]) == 0
    assert "was not checked: run `marrowdiff calibrate`" in capsys.readouterr().out
    assert all(r["distance"] == "" for r in csv.DictReader(out.open()))
    # calibrate adds the reference
    assert main(["calibrate", str(model)]) == 0
    assert run.load_checkpoint(model).domain is not None


def test_a_report_of_unlike_cells_heads_with_the_warning_and_its_figures(tiny_run, tmp_path):
    fields = tiny_fields(tmp_path / "fields", 3)
    for name, model in (
        ("alike", tiny_run),
        ("unlike", doctored(tiny_run, tmp_path, threshold=-2.0)),
    ):
        out = tmp_path / name
        assert main(["count", str(model), str(fields), "--out", str(out)]) == 0
        report = json.loads((out / "report.json").read_text())
        assert report["domain"]["checked"]
        unlike = report["domain"]["unlike"]
        assert unlike == (name == "unlike")
        if unlike:
            assert report["warnings"][0].startswith("these images differ")
            # with what was measured of them, to say what differs: colour and size
            assert "colour: mean L*a*b*" in report["warnings"][0]
            assert "cell size:" in report["warnings"][0]
            assert report["about"]["colour"]["delta_e"] >= 0
            assert report["domain"]["outside"] == report["n_cells_found"] > 0
            assert "these images differ" in (out / "report.html").read_text()
        assert all(c["distance"] != "" for c in report["cells"])


def test_an_onnx_file_whose_graph_lacks_the_features_its_reference_needs_is_refused(
    onnx_file, tmp_path
):
    import onnx

    from marrowdiff.inference.export import _described

    proto = onnx.load(str(onnx_file))
    meta = json.loads(next(e.value for e in proto.metadata_props if e.key == "marrowdiff"))
    features = [o for o in proto.graph.output if o.name == "features"]
    proto.graph.output.remove(features[0])
    meta = {k: v for k, v in meta.items() if k not in ("graph_sha256", "metadata_sha256")}
    path = tmp_path / "no-features.onnx"
    path.write_bytes(_described(proto, meta, "").SerializeToString())
    with pytest.raises(ModelError, match="domain reference of .* features that its graph does not"):
        OnnxModel(path)
    classifier = load_classifier([onnx_file])
    assert classifier.domain is not None


def test_stain_normalisation_needs_the_models_colour_reference_and_is_recorded(tiny_run, tmp_path):
    assert run.load_checkpoint(tiny_run).stain is not None  # training records it
    bare = tmp_path / "bare"
    shutil.copytree(tiny_run, bare)
    state = run.load_state(bare / run.MODEL)
    state.pop("stain")
    run.save_checkpoint(bare / run.MODEL, state)
    with pytest.raises(ModelError, match="no reference of its training images' colours"):
        load_classifier([bare], stain="reinhard")
    images = [write_image_and_read(tmp_path, k) for k in range(4)]
    plain, normalised = (load_classifier([tiny_run], stain=s) for s in ("none", "reinhard"))
    assert normalised.stain_method == "reinhard"
    assert not np.allclose(plain.proba(images), normalised.proba(images))
    out = tmp_path / "count"
    fields = cell_folder(tmp_path / "in")
    assert (
        main(
            [
                "count",
                str(tiny_run),
                str(fields),
                "--out",
                str(out),
                "--normalise-stain",
                "reinhard",
            ]
        )
        == 0
    )
    about = json.loads((out / "report.json").read_text())["about"]
    assert about["stain_normalisation"] == "reinhard"


def test_an_onnx_file_with_a_damaged_reference_is_refused_by_name(onnx_file, tmp_path):
    import onnx

    from marrowdiff.inference.export import _described

    proto = onnx.load(str(onnx_file))
    meta = json.loads(next(e.value for e in proto.metadata_props if e.key == "marrowdiff"))
    meta = {k: v for k, v in meta.items() if k not in ("graph_sha256", "metadata_sha256")}
    path = tmp_path / "damaged.onnx"
    damaged = meta | {"domain": meta["domain"] | {"threshold": "nan"}}
    path.write_bytes(_described(proto, damaged, "").SerializeToString())
    with pytest.raises(ModelError, match=f"{path}: its marrowdiff metadata is incomplete"):
        OnnxModel(path)
