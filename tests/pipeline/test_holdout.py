"""split -> fit -> evaluate, the one pipeline the demo, Table 1 and the CV benchmark run."""

import json

from marrowdiff.data.datasets import open_dataset
from marrowdiff.data.splits import SplitConfig, Splits
from marrowdiff.evaluation.evaluate import EvalConfig, evaluate_run
from marrowdiff.pipeline.holdout import split_fit_evaluate
from marrowdiff.run import MODEL, load_checkpoint

from ..conftest import tiny_config

PAIR = ("8", "9")  # two of easy_data's classes, as a local pair


def test_split_fit_evaluate_scores_each_mode_and_trains_only_once(easy_data, tmp_path):
    said = []
    dataset = open_dataset(easy_data, "infer")
    split = SplitConfig(test_fold=2)
    held = split_fit_evaluate(
        dataset,
        tmp_path,
        tiny_config(2),
        split,
        modes=("plain", "tta"),
        local_pair=PAIR,
        log=said.append,
    )
    assert held.run == tmp_path / "model" and Splits.read(tmp_path).config["test_fold"] == 2
    assert held.splits.test == Splits.read(tmp_path).test
    # each mode's figures are evaluate's on the held-out test cells, in its own folder
    plain = json.loads((tmp_path / "model" / "metrics.json").read_text())
    tta = json.loads((tmp_path / "model-tta" / "metrics.json").read_text())
    assert held.metrics["plain"]["accuracy"] == plain["accuracy"] and not plain["tta"]
    assert held.metrics["tta"]["accuracy"] == tta["accuracy"] and tta["tta"]
    again = evaluate_run([held.run], EvalConfig(out=tmp_path / "again"), log=lambda m: None)
    assert again["accuracy"] == plain["accuracy"]
    local = tmp_path / "local-8-9"
    assert load_checkpoint(local).classes == list(PAIR)
    assert held.dual["dual_stage"] and held.dual["tta"]  # in the last mode
    # a second call reuses the finished runs: nothing is trained again
    stamps = {p: (p / MODEL).stat().st_mtime_ns for p in (held.run, local)}
    split_fit_evaluate(
        dataset, tmp_path, tiny_config(2), split, local_pair=PAIR, log=lambda m: None
    )
    assert {p: (p / MODEL).stat().st_mtime_ns for p in stamps} == stamps


def test_no_dual_stage_without_both_classes_of_the_pair(easy_data, tmp_path):
    said = []
    dataset = open_dataset(easy_data, "infer")
    held = split_fit_evaluate(
        dataset, tmp_path, tiny_config(1), modes=(), local_pair=("8", "nowhere"), log=said.append
    )
    assert held.metrics == {} and held.dual is None
    assert any("no dual-stage model" in line for line in said)
    assert not (tmp_path / "model" / "metrics.json").exists()  # no mode: trained, not scored
