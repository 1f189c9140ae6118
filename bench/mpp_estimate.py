"""The public sets' microns per pixel, estimated (neither says it): PBC's from its red cells,
the archive's from PBC's by the size of the segmented neutrophils' nuclei in both.

- PBC: the median equivalent diameter of whole, isolated, round red cells (no haematoxylin,
  not touching the image border, filling at least 70% of their box, aspect under 1.2) in
  150 images drawn at random, taken as 7.5 microns (a normal red cell: 7-8 microns).
- The archive: its 144 px patches' segmented neutrophils against 150 of PBC's, by the median
  diameter of the stained blob nearest each image's centre (`cellsize.cell_diameter`, the
  nucleus and dense cytoplasm): archive mpp = PBC mpp x (PBC's diameter / the archive's).

    python bench/mpp_estimate.py --archive data/data_WBC_torch.zip --pbc data/pbc.zip
"""

from __future__ import annotations

import argparse
import io
import re
import zipfile

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from marrowdiff.cellsize import cell_diameter
from marrowdiff.stain import haematoxylin

RED_CELL_UM = 7.5


def load(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(archive.read(name))).convert("RGB"))


def red_cells(image: np.ndarray) -> list[float]:
    """Equivalent diameters, px, of the whole, isolated, round red cells of an image."""
    od = -np.log((image.astype(float) + 1) / 256).sum(-1)
    nuclear = haematoxylin(image) > 0.12
    found = ndi.binary_fill_holes(ndi.binary_opening(od > 0.35, iterations=2))
    labels, _ = ndi.label(found)
    out = []
    for i, box in enumerate(ndi.find_objects(labels), 1):
        h, w = image.shape[:2]
        if box[0].start == 0 or box[1].start == 0 or box[0].stop == h or box[1].stop == w:
            continue
        mask = labels[box] == i
        area = mask.sum()
        bh, bw = mask.shape
        if area < 500 or nuclear[box][mask].mean() > 0.05:
            continue
        if area / (bh * bw) < 0.7 or max(bh, bw) / min(bh, bw) > 1.2:
            continue
        out.append(2 * np.sqrt(area / np.pi))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archive", required=True)
    p.add_argument("--pbc", required=True)
    p.add_argument("--n", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    pbc = zipfile.ZipFile(args.pbc)
    names = [n for n in pbc.namelist() if n.lower().endswith(".jpg")]
    reds = [d for i in rng.choice(len(names), args.n, replace=False)
            for d in red_cells(load(pbc, names[i]))]  # fmt: skip
    pbc_mpp = RED_CELL_UM / float(np.median(reds))
    print(f"PBC: {len(reds)} red cells, median diameter {np.median(reds):.1f} px "
          f"(IQR {np.percentile(reds, 25):.1f}-{np.percentile(reds, 75):.1f}): "
          f"{pbc_mpp:.3f} microns per pixel")  # fmt: skip
    segs = [n for n in names if re.search(r"/SNE_", n)]
    picks = [segs[i] for i in rng.choice(len(segs), min(args.n, len(segs)), replace=False)]
    pbc_d = float(np.nanmedian([cell_diameter(load(pbc, n)) for n in picks]))
    archive = zipfile.ZipFile(args.archive)
    own = [n for n in archive.namelist() if re.search(r"(^|/)9/[^/]+\.jpe?g$", n, re.I)]
    sizes = [cell_diameter(im) for n in own if (im := load(archive, n)).shape[0] == 144]
    arch_d = float(np.nanmedian(sizes))
    print(f"segmented neutrophils' blob: PBC {pbc_d:.1f} px ({len(picks)}), archive "
          f"{arch_d:.1f} px ({len(sizes)} of its 144 px patches): archive "
          f"{pbc_mpp * pbc_d / arch_d:.3f} microns per pixel")  # fmt: skip


if __name__ == "__main__":
    main()
