"""The paper's Table 1: every recipe and the dual-stage set, beside the paper's figures."""

import json

import pytest

from marrowdiff.cli import main
from marrowdiff.pipeline.table1 import PAPER_TABLE1


@pytest.mark.slow
def test_table1_reports_each_runs_own_test_figures_beside_the_papers(easy_data, tmp_path):
    out = tmp_path / "table1"
    argv = [
        "experiment",
        "table1",
        str(easy_data),
        "--out",
        str(out),
        "--quick",
        "--epochs",
        "1",
        "--recipes",
        "original,oversampled-300",
    ]
    assert main(argv) == 0
    table = json.loads((out / "table1.json").read_text())
    assert set(table["rows"]) == {"original", "oversampled-300", "dual-stage"}
    dual = json.loads(
        (out / "test-fold-0" / "oversampled-300-dual" / "metrics-test-dual.json").read_text()
    )
    assert dual["dual_stage"] and table["rows"]["dual-stage"]["accuracy"][0] == dual["accuracy"]
    rows = {
        line.split(" | ")[0][2:]: line.split(" | ")
        for line in (out / "table1.md").read_text().splitlines()
        if line.startswith("| o")
    }
    for recipe in ("original", "oversampled-300"):
        measured = json.loads((out / "test-fold-0" / recipe / "metrics.json").read_text())
        assert table["per_fold"][recipe][0]["accuracy"] == measured["accuracy"]
        assert table["rows"][recipe]["accuracy"][0] == measured["accuracy"]  # one fold: its own
        assert rows[recipe][1] == f"{100 * measured['accuracy']:.1f}"
        paper_accuracy, paper_f1 = PAPER_TABLE1[recipe][0], PAPER_TABLE1[recipe][3]
        assert rows[recipe][-2:] == [str(paper_accuracy), f"{paper_f1} |"]
