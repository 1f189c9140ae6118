"""The main job, end to end on tiny data: PBC pre-training, the joint model, its tests,
export and a counted report."""

import json

import pytest

from marrowdiff.cli import main
from marrowdiff.run import load_checkpoint


@pytest.mark.slow
def test_demo_trains_on_both_sets_tests_on_both_exports_and_counts(
    easy_data, pbc_like, tmp_path, capsys
):
    demo = tmp_path / "demo"
    argv = [
        "demo",
        "--data",
        str(easy_data),
        "--out",
        str(demo),
        "--config",
        "quick",
        "--epochs",
        "1",
    ]
    assert main([*argv, "--pbc", str(tmp_path / "nowhere.zip")]) == 2  # says how to get it
    assert "marrowdiff data fetch pbc" in capsys.readouterr().err
    assert main([*argv, "--pbc", str(pbc_like[0])]) == 0
    model = load_checkpoint(demo / "model")
    assert model.vocabulary.name == "marrow14"
    assert model.state["init"]["run"] == str(demo / "pbc" / "model")  # pre-trained on PBC
    assert model.state["also"][0]["weight"] == 0.5
    assert model.config.train.context_jitter == 0.5  # the joint recipe's (docs/training.md)
    metrics = json.loads((demo / "model" / "metrics.json").read_text())
    assert metrics["tta"] and metrics["n"] == len(
        json.loads((demo / "splits.json").read_text())["test"]
    )
    on_pbc = json.loads((demo / "model" / "pbc-test" / "metrics.json").read_text())
    assert on_pbc["data"] == str(pbc_like[0])  # the cross-data-set figure
    report = json.loads((demo / "count" / "report.json").read_text())
    assert report["n_fields"] == 4 and report["about"]["model"] == str(demo / "model.onnx")
    # These PBC-like images are single 40 px cells: mining finds no object beside the cell, so
    # the demo goes on without (and says so), and the report says what the model cannot do
    out = capsys.readouterr().out
    assert "no object was mined" in out and not (demo / "mined" / "manifest.csv").exists()
    assert len(model.state["also"]) == 1 and "red_cell" not in model.classes
    assert any("no outcome for objects that are not nucleated" in w for w in report["warnings"])
    assert (demo / "model-int8.onnx").is_file()
    assert "differential reports of synthetic fields" in out and "of a synthetic slide" in out
    slide = json.loads((demo / "slide" / "count" / "report.json").read_text())
    assert slide["slide"]["working"]["model_mpp"] == 0.136  # the archive's, recorded in training
    assert slide["slide"]["tiles"]["counted"] > 0 and slide["n_cells_found"] > 0
    # a reviewed reference of held-out cells, and the model compared with it: a demonstration
    validation = json.loads((demo / "validation" / "validation.json").read_text())
    assert validation["about"]["demonstration"] and validation["about"]["reviewers"] == [
        "ana",
        "ben",
    ]
    assert validation["cells"]["cells"] > 0 and "a method comparison" in out
