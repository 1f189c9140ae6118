"""Another magnification, simulated: a model's own test cells framed larger or smaller, read as
they are and with `--rescale auto` (cellsize.py; figures in docs/BENCHMARKS.md, "Scale").

Each test patch is framed by its centre 1/z (cells z times as large in the model's window) or
set on its own background at z times its side (z < 1), as another magnification would frame
it; then the size check measures the set (`counting.scale.choose_scale`) and each cell is
classified plainly and reframed by the measured factor. Accuracy over the model's classes.

    python bench/scale_check.py --run runs/demo/pbc/model --data data/pbc.zip
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from marrowdiff.cellsize import reframed, spread
from marrowdiff.counting.scale import choose_scale
from marrowdiff.data.datasets import open_dataset
from marrowdiff.inference.predict import in_chunks, load_classifier
from marrowdiff.run import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, help="its data set, if it has moved")
    parser.add_argument("--zooms", default="0.67,0.8,1.0,1.25,1.5")
    parser.add_argument("--cells", type=int, default=600, help="test cells, at most")
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.run)
    dataset = open_dataset(args.data or checkpoint.state["data"]["source"], checkpoint.vocabulary)
    classifier = load_classifier([args.run])
    splits = checkpoint.splits(dataset)
    test = splits.of_classes(splits.test, classifier.classes)
    test = [test[i] for i in np.linspace(0, len(test) - 1, min(args.cells, len(test))).astype(int)]
    truth = splits.label_indices(test, classifier.classes)
    for zoom in (float(z) for z in args.zooms.split(",")):
        images = [reframed(x, zoom) for x in dataset.load_paths(test)]
        scale = choose_scale(classifier, spread(images), "auto")
        plain = in_chunks(lambda x: x, images, classifier.proba).argmax(1)
        fixed = [reframed(x, scale.factor) for x in images]
        auto = in_chunks(lambda x: x, fixed, classifier.proba).argmax(1)
        print(
            f"cells x{zoom:.2f}: measured size ratio {scale.ratio:.2f}, factor "
            f"{scale.factor:.2f}; accuracy as read {np.mean(plain == truth):.3f}, "
            f"--rescale auto {np.mean(auto == truth):.3f} ({len(test)} test cells)",
            flush=True,
        )


if __name__ == "__main__":
    main()
