"""Another laboratory's cells: leave-one-source-out on the six groups the two sources share.

The archive (marrow, Korea) and PBC (peripheral blood, Barcelona, CellaVision) share six groups:
promyelocyte, myelocyte, metamyelocyte, band and segmented neutrophil, and erythroblast (any
stage). A model trained on one source only is scored on every cell of those groups of the
other source (none was trained on); a model trained on both is scored on each source's own
held-out test cells. A prediction outside the six groups (a myeloblast, a lymphocyte...) is
wrong. Prints accuracy, macro-F1 and per-group recall with bootstrap 95% intervals, and writes
them as JSON.

    python bench/loso.py --archive ARCHIVE --pbc PBC --archive-run RUN --pbc-run RUN \\
        [--joint-run RUN --pbc-splits FILE] [--on all|val|test] [--tta] [--stain reinhard]
        [--out loso.json]

`--on val` scores the archive model on PBC's validation cells of fold 0 only (with
--pbc-splits): where a training choice for the other laboratory is made; `--on test` on PBC's
test cells, where it is then measured once.

The runs of `marrowdiff demo` serve: runs/demo/pbc/model (PBC only; its splits are
runs/demo/pbc/splits.json) and runs/demo/model (both); the archive-only run is
`marrowdiff train ARCHIVE --vocab marrow14 --out runs/loso/archive`. Figures:
docs/BENCHMARKS.md ("Another laboratory's cells").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from marrowdiff.data.datasets import Dataset, open_dataset
from marrowdiff.data.splits import Splits
from marrowdiff.inference.predict import Classifier, in_chunks, load_classifier

ERYTHROID = (
    "pronormoblast",
    "basophilic_normoblast",
    "polychromatic_normoblast",
    "orthochromatic_normoblast",
    "erythroblast",
)
GROUPS = (
    "promyelocyte",
    "myelocyte",
    "metamyelocyte",
    "band_neutrophil",
    "segmented_neutrophil",
    "erythroblast",
)


def group_of(code: str) -> str | None:
    """A marrow14 code's shared group, or None (not shared, or a coarse label such as IG)."""
    if code in ERYTHROID:
        return "erythroblast"
    return code if code in GROUPS else None


def scored_cells(dataset: Dataset, paths: list[str]) -> tuple[list[str], np.ndarray]:
    """The cells of `paths` in a shared group, and their group indices."""
    labels = {r.path: r.label for r in dataset.records}
    kept = [(p, group_of(labels[p])) for p in paths]
    kept = [(p, g) for p, g in kept if g is not None]
    return [p for p, _ in kept], np.array([GROUPS.index(g) for _, g in kept])


def predicted_groups(
    classifier: Classifier, dataset: Dataset, paths: list[str], tta: bool
) -> np.ndarray:
    """Each cell's predicted group index; len(GROUPS) for a class outside the six."""
    proba = in_chunks(dataset.load_paths, paths, lambda x: classifier.proba(x, tta))
    top = [classifier.classes[k] for k in proba.argmax(1)]
    return np.array([GROUPS.index(g) if (g := group_of(c)) else len(GROUPS) for c in top])


def figures(truth: np.ndarray, pred: np.ndarray, draws: int = 1000, seed: int = 0) -> dict:
    """Accuracy, macro-F1 over the six groups and per-group recall, with bootstrap 95% CIs."""
    labels = list(range(len(GROUPS)))

    def stats(t: np.ndarray, p: np.ndarray) -> np.ndarray:
        recall = [float((p[t == k] == k).mean()) if (t == k).any() else np.nan for k in labels]
        f1 = f1_score(t, p, labels=labels, average="macro", zero_division=0)
        return np.array([float((t == p).mean()), f1, *recall])

    point = stats(truth, pred)
    rng = np.random.default_rng(seed)
    boot = np.array(
        [stats(truth[i], pred[i]) for i in rng.integers(0, len(truth), (draws, len(truth)))]
    )
    low, high = np.nanpercentile(boot, [2.5, 97.5], axis=0)
    names = ["accuracy", "f1_macro", *(f"recall_{g}" for g in GROUPS)]
    return {
        "n": int(len(truth)),
        "per_group_n": {g: int((truth == k).sum()) for k, g in enumerate(GROUPS)},
        **{
            n: [round(float(v), 4), round(float(lo), 4), round(float(hi), 4)]
            for n, v, lo, hi in zip(names, point, low, high, strict=True)
        },
    }


def score(run: Path, dataset: Dataset, paths: list[str], tta: bool, stain: str = "none") -> dict:
    cells, truth = scored_cells(dataset, paths)
    pred = predicted_groups(load_classifier([run], stain=stain), dataset, cells, tta)
    return figures(truth, pred)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, required=True)
    parser.add_argument("--pbc", type=Path, required=True)
    parser.add_argument("--archive-run", type=Path, required=True, help="trained on the archive")
    parser.add_argument("--pbc-run", type=Path, required=True, help="trained on PBC only")
    parser.add_argument("--joint-run", type=Path, help="trained on both (the demo's model)")
    parser.add_argument("--pbc-splits", type=Path, help="PBC's splits.json (with --joint-run)")
    parser.add_argument(
        "--on",
        choices=["all", "val", "test"],
        default="all",
        help="which PBC cells the archive model is scored on (val, test: of --pbc-splits)",
    )
    parser.add_argument("--tta", action="store_true", help="average the 8 rotations/flips")
    parser.add_argument(
        "--stain", choices=["none", "reinhard"], default="none", help="stain normalisation"
    )
    parser.add_argument("--out", type=Path, default=Path("loso.json"))
    args = parser.parse_args()
    archive = open_dataset(args.archive, "marrow14")
    pbc = open_dataset(args.pbc, "pbc")
    every = lambda d: [r.path for r in d.records]  # noqa: E731
    pbc_cells = every(pbc)
    if args.on != "all":
        pbc_splits = Splits.read(args.pbc_splits)
        pbc_cells = pbc_splits.test if args.on == "test" else pbc_splits.fold(0)[1]
    rows = {
        f"archive -> PBC ({args.on} PBC cells)": score(
            args.archive_run, pbc, pbc_cells, args.tta, args.stain
        ),
        "PBC -> archive (every archive cell)": score(
            args.pbc_run, archive, every(archive), args.tta, args.stain
        ),
    }
    if args.joint_run:
        own_test = Splits.read(args.joint_run / Splits.FILE).test
        rows["both -> archive (its test cells)"] = score(
            args.joint_run, archive, own_test, args.tta, args.stain
        )
        pbc_test = Splits.read(args.pbc_splits).test
        rows["both -> PBC (its test cells)"] = score(
            args.joint_run, pbc, pbc_test, args.tta, args.stain
        )
    args.out.write_text(json.dumps(rows, indent=2))
    for name, row in rows.items():
        recalls = " ".join(f"{g[:4]} {row[f'recall_{g}'][0]:.2f}" for g in GROUPS)
        print(
            f"{name}: n {row['n']}, accuracy {row['accuracy'][0]:.3f} "
            f"[{row['accuracy'][1]:.3f}, {row['accuracy'][2]:.3f}], macro-F1 "
            f"{row['f1_macro'][0]:.3f} [{row['f1_macro'][1]:.3f}, {row['f1_macro'][2]:.3f}]; "
            f"recall {recalls}"
        )


if __name__ == "__main__":
    main()
