"""The main job: the public archive (and PBC beside it) audited, split, trained on, tested,
exported and counted, into one run folder."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from marrowdiff.config import load_config
from marrowdiff.counting.commands import count_and_say
from marrowdiff.counting.count import CountConfig
from marrowdiff.counting.report import ReportConfig
from marrowdiff.data.datasets import DatasetError, open_dataset
from marrowdiff.data.public import PUBLIC_ARCHIVES, fetch
from marrowdiff.data.sources import list_inputs
from marrowdiff.data.splits import AUDIT_DIR, Splits
from marrowdiff.evaluation.evaluate import EvalConfig, evaluate_run
from marrowdiff.inference.export import export_onnx, quantisation_summary
from marrowdiff.inference.predict import load_classifier
from marrowdiff.mining.mine import MiningError, mined_set
from marrowdiff.pipeline.holdout import split_fit_evaluate
from marrowdiff.pipeline.reviewed import demo_review
from marrowdiff.slides.commands import say
from marrowdiff.slides.count import SlideCountConfig
from marrowdiff.slides.job import count_slide
from marrowdiff.synthetic.fields import write_fields
from marrowdiff.synthetic.slide import write_demo_slide
from marrowdiff.training.cells import Source
from marrowdiff.training.train import FitOptions

# The demo's PBC recipe (docs/BENCHMARKS.md, "More cells: PBC"): pre-train on PBC, then train
# on the archive with PBC beside it at this weight (its draws per label, relative to the
# archive's), starting from the pre-trained weights.
PBC_PRETRAIN_EPOCHS = 30
PBC_WEIGHT = 0.5
# The objects of PBC's fields that are not its labelled cells (`marrowdiff mine`: red cells,
# platelets, drawn debris), trained on at this weight, so that `count` sets them aside.
MINED_WEIGHT = 0.5
# ... with half the views' surroundings replaced by plain plasma (`[train] context_jitter`), so
# that the stage calls hold on cells cut from fields unlike the archive's patches: on fold 0's
# validation fields the differential's error 46.7 -> 34.2 points; the archive's 6-fold CV
# 0.772 +- 0.033 against 0.773 +- 0.038 without (docs/BENCHMARKS.md, "Context").
CONTEXT_JITTER = 0.5


@dataclass(frozen=True)
class DemoConfig:
    data: Path | None = None  # the archive or any data set (None: fetch the archive into data/)
    pbc: Path | None = Path("data/pbc.zip")  # PBC beside it; None: the archive alone
    out: Path = Path("runs/demo")
    config: str = "default"  # the training preset or TOML file
    epochs: int | None = None  # of every training (None: the preset's; PBC: 30)


def demo(d: DemoConfig, log=print, progress: bool = False) -> int:
    """Run the whole pipeline into `d.out`; the exit code of its count."""
    data = d.data or fetch("wbc_plosone", Path("data"), progress=progress)
    if d.pbc is not None and not d.pbc.exists():
        raise DatasetError(
            f"{d.pbc}: no PBC data set; get it with `marrowdiff data fetch pbc --to "
            f"{d.pbc.parent}` (add --from FILE for a local copy), or run the archive alone "
            "with --no-pbc"
        )
    dataset = open_dataset(data, "choi2017" if d.pbc is None else "marrow14")
    # The archive's microns per pixel (an estimate: docs/slides.md), so that slides can be counted
    options = FitOptions(progress=progress, mpp=PUBLIC_ARCHIVES["wbc_plosone"].mpp)
    if d.pbc is not None:
        options = _pretrained_on_pbc(d, options, log)
    log("== audit, split and train" + (" on the archive and PBC" if d.pbc else "") + "; test")
    joint = {"train__context_jitter": CONTEXT_JITTER} if d.pbc is not None else {}
    config = load_config(d.config, train__epochs=d.epochs, **joint)
    held = split_fit_evaluate(dataset, d.out, config, options=options, modes=("tta",), log=log)
    if d.pbc is not None:
        log("== evaluate on PBC's held-out test split (another laboratory, peripheral blood)")
        on_pbc = EvalConfig(
            data=d.pbc,
            tta=True,
            out=held.run / "pbc-test",
            vocab="pbc",
            splits_file=d.out / "pbc" / Splits.FILE,
        )
        evaluate_run([held.run], on_pbc, log=log)
    log("== export to ONNX, and count fields made from the held-out test cells")
    onnx = export_onnx(held.run, d.out / "model.onnx")
    int8 = export_onnx(held.run, d.out / "model-int8.onnx", int8=True, data=data)
    log(f"{int8}: {quantisation_summary(int8)}")
    fields = write_fields(dataset, held.splits.test, d.out / "fields")
    code = count_and_say(
        load_classifier([onnx]),
        list_inputs([fields])[0],
        CountConfig(),
        ReportConfig(target=300),
        d.out / "count",
        str(onnx),
    )
    log("== count a synthetic marrow slide made from the held-out test cells (docs/slides.md)")
    slide = write_demo_slide(dataset, held.splits.test, d.out / "slide" / "marrow.tiff")
    summary = count_slide(
        load_classifier([int8], spin=False),
        slide,
        SlideCountConfig(cells=None, tile=1024),  # a small slide: small tiles
        ReportConfig(),
        d.out / "slide" / "count",
        str(int8),
        log=log,
    )
    say(summary, d.out / "slide" / "count")
    log("== review held-out cells blind (simulated reviewers), and compare the model with them")
    demo_review(dataset, held.splits.test, load_classifier([onnx]), d.out, str(onnx), log=log)
    print(
        f"model: {held.run} (metrics.json, confusion.png, misclassified.html, curves.png); "
        f"audit: {d.out / AUDIT_DIR / 'audit.html'}; differential reports of synthetic "
        f"fields: {d.out / 'count' / 'report.html'}, and of a synthetic slide: "
        f"{d.out / 'slide' / 'count' / 'report.html'}; a method comparison (a demonstration): "
        f"{d.out / 'validation' / 'validation.html'}"
    )
    return code


def _pretrained_on_pbc(d: DemoConfig, options: FitOptions, log) -> FitOptions:
    """Split PBC and pre-train on it (OUT/pbc/model), and mine its fields (OUT/mined); the
    options that then train on the archive with PBC and the mined objects beside it, from the
    pre-trained weights."""
    pbc = open_dataset(d.pbc, "pbc")
    epochs = d.epochs or PBC_PRETRAIN_EPOCHS
    log(
        f"== audit, split and pre-train on {d.pbc} (Acevedo et al. 2020, CC BY 4.0), {epochs} "
        "epochs"
    )
    pretrain = load_config(d.config, train__epochs=epochs)
    on_pbc = replace(options, mpp=PUBLIC_ARCHIVES["pbc"].mpp)
    held = split_fit_evaluate(pbc, d.out / "pbc", pretrain, options=on_pbc, modes=(), log=log)
    log(f"== mine PBC's fields for objects that are not nucleated cells, into {d.out / 'mined'}")
    also = (Source(pbc, held.splits, PBC_WEIGHT),)
    try:
        mined, mined_splits = mined_set(pbc, held.splits, d.out / "mined", log=log)
        also += (Source(mined, mined_splits, MINED_WEIGHT),)
    except MiningError as error:  # fields too small to hold anything but their cell
        log(f"note: {error}; the model will have no outcomes for objects that are not cells")
    return replace(options, also=also, init=held.run)
