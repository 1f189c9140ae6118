"""The demo's reviewed reference: held-out test cells reviewed blind in a review station by two
simulated reviewers, disagreements decided by a simulated adjudicator, cases signed, and the
model compared with them (`marrowdiff validate`). A demonstration of the protocol and its
report, never a validation: the verdicts are the archive's labels with simulated slips."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marrowdiff.classes import Vocabulary
from marrowdiff.inference.predict import Classifier
from marrowdiff.web.station import ReviewStation, by_cell
from marrowdiff.web.validate import reference_cases, validate


@dataclass(frozen=True)
class DemoReview:
    cases: int = 4
    cells: int = 25  # per case
    slip: tuple[float, float] = (0.05, 0.15)  # how often each reviewer names a neighbour stage
    between: float = 0.3  # how often the adjudicator calls a neighbour dispute "between"
    seed: int = 0


def neighbour(code: str, vocabulary: Vocabulary, rng: np.random.Generator) -> str:
    """A neighbouring stage of `code` (itself if it has none)."""
    near = [c for c in vocabulary.fine_codes if c != code and vocabulary.adjacent(code, c)]
    return str(rng.choice(near)) if near else code


def demo_review(
    dataset,
    paths: list[str],
    classifier: Classifier,
    out: Path,
    model_name: str,
    d: DemoReview = DemoReview(),
    log=print,
) -> dict:
    """Review `paths` (held-out cells) blind in a station at OUT/review-data, sign the cases,
    and write the method comparison to OUT/validation; its result."""
    data_dir = out / "review-data"
    shutil.rmtree(data_dir, ignore_errors=True)  # the demo's own station, made afresh
    station = ReviewStation(data_dir, classifier, model_name=model_name)
    store, vocabulary = station.store, classifier.vocabulary
    rng = np.random.default_rng(d.seed)
    chosen = [str(p) for p in rng.permutation(sorted(paths))[: d.cases * d.cells]]
    truth = {r.path: r.label for r in dataset.records}
    groups = np.array_split(chosen, min(d.cases, len(chosen)))  # a small test split: fewer
    for k, mine in enumerate(groups):
        case = store.create_case(f"demo-{k + 1}", "demo", reviewers=2, hide_model=True)["id"]
        for path in mine:
            station.upload(case, "demo", Path(path).name, dataset.read_bytes(dataset.record(path)))
        cells = store.cells(case)
        for cell, path in zip(cells, mine, strict=True):
            true = truth[path]
            for name, slip in zip(("ana", "ben"), d.slip, strict=True):
                said = neighbour(true, vocabulary, rng) if rng.random() < slip else true
                store.review(cell["id"], name, "corrected", said)
        verdicts = by_cell(store.verdicts(case))  # opened: every cell has both
        for cell, path in zip(store.cells(case), mine, strict=True):
            if cell["status"] != "pending":
                continue
            true = truth[path]
            a, b = verdicts[cell["id"]]["ana"], verdicts[cell["id"]]["ben"]
            label = true
            if a != b and vocabulary.adjacent(a, b) and rng.random() < d.between:
                label = vocabulary.between(a, b)
            store.adjudicate(cell["id"], "cleo", "corrected", label)
        station.sign(case, "sam")
    store.close()
    result = validate(
        classifier, reference_cases(data_dir), out / "validation", model_name,
        demonstration=True, log=lambda message: None,
    )  # fmt: skip
    agree, among = result["cells"], result["reviewers"]

    def kappa(value) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    log(
        f"{len(groups)} cases, {len(chosen)} held-out cells reviewed blind by two simulated "
        f"reviewers (agreeing on {among['percent']:.1f}%, kappa {kappa(among['kappa'])}); the "
        f"model agrees with their consensus on {agree['percent']:.1f}% (kappa "
        f"{kappa(agree['kappa'])}). A demonstration, not a validation: "
        f"{out / 'validation' / 'validation.html'}"
    )
    return result
