"""Find patches that show the same cell: exact copies, re-crops at a shifted centre, resized or
re-encoded copies. Pure functions over RGB arrays; `audit.py` does the I/O.

Two stages, both normalised cross-correlation (NCC), so brightness and contrast changes from
re-encoding or white balance do not matter:
1. candidates: grey images at 48 px; the centre 32 px window of one patch is correlated with every
   window of the other (shifts up to +-16 px at 96 px scale), all pairs at once as matrix products;
2. verification: at 96 px, on a difference-of-Gaussians band (sigma 0.7 to 2 px) that keeps the
   chromatin and granule texture and drops the round outline every cell shares, so two different
   cells that merely look alike score low while two crops of the same pixels score high.
On the public archive the verified re-crops score >= 0.93 and the closest look-alike 0.73
(docs/data.md); the threshold sits in that gap.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.feature import match_template


@dataclass(frozen=True)
class DuplicateConfig:
    size: int = 96  # common scale every patch is brought to (the paper's network input)
    coarse_size: int = 48  # candidate search resolution
    coarse_window: int = 32  # centre window correlated at every shift in the candidate search
    coarse_threshold: float = 0.90  # grey NCC to become a candidate (archive re-crops: >= 0.95)
    fine_window: int = 56  # centre window matched at full scale: shifts up to +-20 px
    band: tuple[float, float] = (0.7, 2.0)  # difference-of-Gaussians sigmas, in px at `size`
    threshold: float = 0.85  # band-pass NCC to call two patches one cell (archive: gap 0.73-0.93)
    block: int = 1024  # patches per block in the candidate search (bounds memory at N x block)


@dataclass(frozen=True)
class DuplicatePair:
    a: int  # index into the image list, a < b
    b: int
    similarity: float  # 1.0 for identical pixels, else the verified band-pass NCC
    exact: bool


def find_duplicates(
    images: list[np.ndarray], config: DuplicateConfig = DuplicateConfig()
) -> list[DuplicatePair]:
    """Every pair of images that show the same cell, sorted by (a, b)."""
    exact = _exact_pairs(images)
    grey = [_square_grey(image, config.size) for image in images]
    candidates = _candidate_pairs(grey, config) - set(exact)
    band = [_band_pass(g, config.band) for g in grey]
    pairs = [DuplicatePair(a, b, 1.0, True) for a, b in exact]
    for a, b in sorted(candidates):
        score = max(
            _best_ncc(band[a], band[b], config.fine_window),
            _best_ncc(band[b], band[a], config.fine_window),
        )
        if score >= config.threshold:
            pairs.append(DuplicatePair(a, b, round(score, 4), False))
    return sorted(pairs, key=lambda p: (p.a, p.b))


def components(n: int, edges: list[tuple[int, int]]) -> np.ndarray:
    """(n,) component label of each node of an undirected graph on 0..n-1; the labels are
    numbered in order of each component's smallest node."""
    if not edges:
        return np.arange(n)
    a, b = np.array(edges, dtype=np.int64).T
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def group_pairs(n: int, pairs: list[DuplicatePair]) -> list[list[int]]:
    """Connected components (of two or more) of the duplicate graph, each sorted, in order."""
    label = components(n, [(p.a, p.b) for p in pairs])
    groups: dict[int, list[int]] = {}
    for i, k in enumerate(label):
        groups.setdefault(int(k), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def _exact_pairs(images: list[np.ndarray]) -> list[tuple[int, int]]:
    first: dict[str, int] = {}
    pairs = []
    for i, image in enumerate(images):
        key = hashlib.sha256(repr(image.shape).encode() + image.tobytes()).hexdigest()
        if key in first:
            pairs.append((first[key], i))
        else:
            first[key] = i
    return pairs


def _square_grey(image: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop, luminance, resized to size x size, float32."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    grey = Image.fromarray(image[top : top + side, left : left + side]).convert("L")
    return np.asarray(grey.resize((size, size), Image.BILINEAR), dtype=np.float32)


def _band_pass(grey: np.ndarray, sigmas: tuple[float, float]) -> np.ndarray:
    return ndi.gaussian_filter(grey, sigmas[0]) - ndi.gaussian_filter(grey, sigmas[1])


def _best_ncc(image: np.ndarray, other: np.ndarray, window: int) -> float:
    """Highest NCC of `other`'s centre window anywhere in `image`."""
    m = (other.shape[0] - window) // 2
    template = other[m : m + window, m : m + window]
    if template.std() < 1e-6:
        return 0.0
    return float(np.nan_to_num(match_template(image, template)).max())


def _unit_rows(windows: np.ndarray) -> np.ndarray:
    """(N, h, w) -> (N, h*w), each row zero-mean and unit-norm (NCC becomes a dot product)."""
    flat = windows.reshape(len(windows), -1).astype(np.float32)
    flat -= flat.mean(axis=1, keepdims=True)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True) + 1e-6
    return flat


def _candidate_pairs(grey: list[np.ndarray], config: DuplicateConfig) -> set[tuple[int, int]]:
    n = len(grey)
    if n < 2:
        return set()
    s, t = config.coarse_size, config.coarse_window
    small = np.stack([np.asarray(Image.fromarray(g).resize((s, s), Image.BILINEAR)) for g in grey])
    m = (s - t) // 2
    centres = _unit_rows(small[:, m : m + t, m : m + t])  # (N, t*t)
    shifts = [(dy, dx) for dy in range(s - t + 1) for dx in range(s - t + 1)]
    pairs: set[tuple[int, int]] = set()
    for start in range(0, n, config.block):
        rows = centres[start : start + config.block]  # (B, t*t)
        best = np.full((len(rows), n), -1.0, dtype=np.float32)
        for dy, dx in shifts:
            np.maximum(best, rows @ _unit_rows(small[:, dy : dy + t, dx : dx + t]).T, out=best)
        for i, j in zip(*np.nonzero(best >= config.coarse_threshold), strict=True):
            a = start + int(i)
            if a != j:
                pairs.add((min(a, int(j)), max(a, int(j))))
    return pairs
