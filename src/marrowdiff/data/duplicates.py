"""Find patches that show the same cell: exact copies, re-crops at a shifted centre, resized or
re-encoded copies. Pure functions over RGB arrays; `audit.py` does the I/O.

Three stages. The last two are normalised cross-correlation (NCC), so brightness and contrast
changes from re-encoding or white balance do not matter:
0. neighbours: each patch is kept as a 48 px grey thumbnail (2.3 kB, on disk for a large set).
   The Fourier magnitude of a window does not change when the window's content shifts, so the
   magnitude of each patch's centre window, reduced by PCA, goes into a nearest-neighbour index
   (faiss: exact below 20,000 patches, HNSW above), and the windows of every patch at 25 offsets
   ask it for their 3 nearest patches: the pairs worth comparing, about 50 per patch, in time
   that grows as N log N, not N^2;
1. candidates: the centre 32 px window of one patch is correlated with every window of the other
   (shifts up to +-16 px at 96 px scale), both ways, for each neighbour pair, first at half that
   scale to leave out most pairs at a fourteenth of the cost;
2. verification: at 96 px, on a difference-of-Gaussians band (sigma 0.7 to 2 px) that keeps the
   chromatin and granule texture and drops the round outline every cell shares, so two different
   cells that merely look alike score low while two crops of the same pixels score high.
On the public archive the verified re-crops score >= 0.93 and the closest look-alike 0.73
(docs/data.md); the threshold sits in that gap. Stage 0 finds all 11 of its re-crop groups, and
every one of 500 re-crops planted among 200,000 synthetic cells (bench/audit_scale.py).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm

from marrowdiff.errors import UserError


@dataclass(frozen=True)
class DuplicateConfig:
    size: int = 96  # common scale every patch is brought to (the paper's network input)
    coarse_size: int = 48  # candidate search resolution
    coarse_window: int = 32  # centre window correlated at every shift in the candidate search
    coarse_threshold: float = 0.90  # grey NCC to become a candidate (archive re-crops: >= 0.95)
    fine_window: int = 56  # centre window matched at full scale: shifts up to +-20 px
    band: tuple[float, float] = (0.7, 2.0)  # difference-of-Gaussians sigmas, in px at `size`
    threshold: float = 0.85  # band-pass NCC to call two patches one cell (archive: gap 0.73-0.93)
    block: int = 2048  # patches per block of the neighbour search (bounds its memory)
    index_window: int = 32  # window, px at the coarse scale, whose Fourier magnitude is indexed
    index_band: int = 8  # spatial frequencies kept each way around zero
    index_dims: int = 24  # PCA dimensions of the nearest-neighbour index
    index_step: int = 4  # offsets of the query windows, px at the coarse scale (25 windows)
    neighbours: int = 3  # nearest patches each query window asks for
    pca_sample: int = 20_000  # patches the PCA is fitted on
    exhaustive_below: int = 64  # smaller sets compare every pair
    exact_below: int = 20_000  # smaller sets search their neighbours exactly, larger ones by HNSW
    # grey NCC at half the coarse scale a pair must reach before the coarse one: every pair of
    # the public archive and of PBC that reaches `coarse_threshold` scores 0.89 or more here
    prefilter_threshold: float = 0.80


class WorkerError(UserError, RuntimeError):
    """A worker process of the search died; the message says what to do."""


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
    index = DuplicateIndex(len(images), config)
    for image in images:
        index.add(image)
    return index.find(images.__getitem__)


class DuplicateIndex:
    """What the duplicate search keeps of each image, added one at a time: a pixel digest and a
    48 px grey thumbnail (uint8; in `folder` on disk when given, so memory does not grow with
    the number of images). `find` re-reads, through `load`, only the images it must verify."""

    def __init__(
        self, n: int, config: DuplicateConfig = DuplicateConfig(), folder=None, resume=False
    ):
        s = config.coarse_size
        self.config, self.n = config, 0
        if folder is None:
            self.thumbs = np.empty((n, s, s), np.uint8)
        else:  # `resume`: the thumbnails of an interrupted run, to go on from (`restore`)
            path = Path(folder) / "thumbnails.npy"
            mode = "r+" if resume and path.is_file() else "w+"
            self.thumbs = np.lib.format.open_memmap(path, mode, np.uint8, (max(n, 1), s, s))
        self._first: dict[bytes, int] = {}
        self.exact: list[tuple[int, int]] = []

    @staticmethod
    def digest(image: np.ndarray) -> bytes:
        """The pixel digest that finds exact copies."""
        return hashlib.sha256(repr(image.shape).encode() + image.tobytes()).digest()

    def add(self, image: np.ndarray, key: bytes | None = None) -> int:
        """Index the next image (`key`: its `digest`, if known); returns its position."""
        config = self.config
        grey = Image.fromarray(_square_grey(image, config.size))
        small = grey.resize((config.coarse_size, config.coarse_size), Image.BILINEAR)
        self.thumbs[self.n] = np.clip(np.rint(np.asarray(small)), 0, 255)
        return self._count(key or self.digest(image))

    def restore(self, key: bytes) -> int:
        """Count the next image as indexed already: its thumbnail is in the resumed file."""
        return self._count(key)

    def _count(self, key: bytes) -> int:
        i = self.n
        if key in self._first:
            self.exact.append((self._first[key], i))
        else:
            self._first[key] = i
        self.n += 1
        return i

    def flush(self) -> None:
        """Thumbnails so far to disk (a resumed run finds them there)."""
        if isinstance(self.thumbs, np.memmap):
            self.thumbs.flush()

    def find(self, load, progress: bool = False, work: Path | None = None) -> list[DuplicatePair]:
        """Every pair that shows the same cell; `load(i)` gives image i again, for the pairs
        that pass the candidate stage. With a `work` folder each stage's result is kept there
        when it is done, and taken from there by a resumed search."""
        config = self.config
        exact = set(self.exact)
        thumbs = self.thumbs[: self.n]
        neighbours = _stage(work, "neighbours", lambda: _neighbour_pairs(thumbs, config, progress))
        candidates = _stage(
            work,
            "candidates",
            lambda: np.array(
                sorted(_coarse_pairs(thumbs, neighbours, config, progress) - exact), np.int32
            ).reshape(-1, 2),
        )

        def band(i: int) -> np.ndarray:  # image i band-passed at `size`, decoded again
            return _band_pass(_square_grey(load(i), config.size), config.band)

        candidates = [(int(a), int(b)) for a, b in candidates]
        scores = _verified(candidates, band, config, progress)
        pairs = [DuplicatePair(a, b, 1.0, True) for a, b in sorted(exact)]
        for (a, b), score in sorted(scores.items()):
            if score >= config.threshold:
                pairs.append(DuplicatePair(a, b, round(score, 4), False))
        return sorted(pairs, key=lambda p: (p.a, p.b))


def _stage(work: Path | None, name: str, compute) -> np.ndarray:
    """A search stage's array: from `work/name.npy` when a resumed search has it, else computed
    (and kept there, written whole or not at all)."""
    if work is None:
        return compute()
    path = Path(work) / f"{name}.npy"
    if path.is_file():
        return np.load(path)
    result = compute()
    part = path.with_name(f".{name}.part.npy")
    np.save(part, result)
    part.replace(path)
    return result


def _verified(
    candidates: list[tuple[int, int]], band, config: DuplicateConfig, progress: bool = False
) -> dict[tuple[int, int], float]:
    """(a, b) -> the best band-pass NCC of the centre window of either one anywhere in the
    other. Each image is correlated with the windows of all its partners at once. `band(i)`
    decodes image i band-passed; each image is decoded twice: once for its centre window (kept
    in a file on disk, so memory does not grow with the pairs), once to be searched. Both
    passes are shared between one process per core (`_in_workers`) when there are many."""
    partners: dict[int, list[int]] = {}
    for a, b in candidates:
        partners.setdefault(a, []).append(b)
        partners.setdefault(b, []).append(a)
    w = config.fine_window
    needed = sorted(partners)
    row = {x: k for k, x in enumerate(needed)}
    scores: dict[tuple[int, int], float] = {}
    with tempfile.TemporaryFile(prefix="marrowdiff-verify-") as windows:
        job = _Verification(band, partners, row, windows.fileno(), w, (config.size - w) // 2)
        for _ in _in_workers(
            "verification", job, _write_windows, needed, progress, "centre windows"
        ):
            pass
        for part in _in_workers("verification", job, _search, needed, progress, "verifying"):
            for key, value in part.items():  # a pair is scored from both ends: the best
                scores[key] = max(scores.get(key, 0.0), value)
    return scores


@dataclass(frozen=True)
class _Verification:
    band: Callable[[int], np.ndarray]  # i -> image i band-passed
    partners: dict[int, list[int]]
    row: dict[int, int]  # image -> its row in the windows file
    fd: int  # the windows file, (rows, w, w) float64, read and written with pread/pwrite
    w: int
    m: int  # offset of the centre window

    def window(self, x: int) -> np.ndarray:
        return self.band(x)[self.m : self.m + self.w, self.m : self.m + self.w]

    def windows(self, rows: list[int]) -> np.ndarray:
        """Rows of the windows file, read with pread: not mapped, so they stay in the page
        cache, not in the process's memory (a memory map's pages count as the process's: 4 GB
        of windows at 200,000 images)."""
        size = 8 * self.w * self.w
        return np.stack(
            [np.frombuffer(os.pread(self.fd, size, r * size), np.float64) for r in rows]
        ).reshape(len(rows), self.w, self.w)


def _write_windows(job: _Verification, xs: list[int]) -> None:
    size = 8 * job.w * job.w
    for x in xs:
        data = np.ascontiguousarray(job.window(x), np.float64).tobytes()
        os.pwrite(job.fd, data, job.row[x] * size)


def _search(job: _Verification, xs: list[int]) -> dict[tuple[int, int], float]:
    scores: dict[tuple[int, int], float] = {}
    for x in xs:
        image = job.band(x)
        for start in range(0, len(job.partners[x]), 64):  # bounds the FFTs' memory
            others = job.partners[x][start : start + 64]
            templates = job.windows([job.row[p] for p in others])
            for p, value in zip(others, _ncc_max(image, templates).tolist(), strict=True):
                key = (min(x, p), max(x, p))
                scores[key] = max(scores.get(key, 0.0), value)
    return scores


# Items of each search stage below which it runs in this process (forking costs more), and
# the items a worker takes at a time (progress is counted per chunk): blocks of patches for the
# neighbours, images for the others.
PARALLEL_FROM = {"neighbours": 8, "candidates": 4096, "verification": 2048}
CHUNK = {"neighbours": 1, "candidates": 1024, "verification": 256}
_JOB = None  # the stage's job, which forked workers inherit: closures do not pickle


def _in_workers(
    stage: str, job, fn, items: list[int], progress: bool, desc: str = "", unit: str = "img"
):
    """fn(job, chunk of items) over `items`, one forked process per core, each on one thread
    (in this process below the stage's `PARALLEL_FROM` items, or on one core); yields each
    chunk's result as it ends (in no set order: a stage combines them so that order does not
    matter), under a progress bar of items done."""
    global _JOB
    size = CHUNK[stage]
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    with tqdm(total=len(items), disable=not progress, desc=desc or stage, unit=unit) as bar:
        if cores < 2 or len(items) < PARALLEL_FROM[stage]:
            for part in chunks:
                yield fn(job, part)
                bar.update(len(part))
            return
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        _JOB = job
        context = multiprocessing.get_context("fork")
        # a worker that dies (killed, out of memory) fails the stage (BrokenProcessPool), and
        # a rerun of the audit resumes after the stages already kept
        pool = ProcessPoolExecutor(cores, mp_context=context, initializer=_one_thread)
        try:
            pending = {pool.submit(_call, fn, part) for part in chunks}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:  # each result is let go once it is yielded
                    try:
                        n, result = future.result()
                    except BrokenProcessPool:
                        raise WorkerError(
                            f"a worker process of the duplicate search ({stage}) died: out "
                            "of memory, or killed; run the same command again, it goes on "
                            "after the stages already done"
                        ) from None
                    yield result
                    bar.update(n)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            _JOB = None


def _one_thread() -> None:
    """A worker's BLAS and faiss on one thread: the processes share the cores, not threads."""
    import sys

    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(1)


def _call(fn, part):
    return len(part), fn(_JOB, part)


def _ncc_max(image: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """(P,) highest NCC of each of (P, w, w) templates at any position inside `image` (as
    skimage's `match_template`, all templates at once with one FFT of the image)."""
    from scipy.signal import fftconvolve

    w = templates.shape[-1]
    t = templates.astype(np.float64) - templates.mean(axis=(1, 2), keepdims=True)
    t_norm = np.sqrt((t * t).sum(axis=(1, 2)))  # (P,)
    x = image.astype(np.float64)
    numerator = fftconvolve(x[None], t[:, ::-1, ::-1], mode="valid", axes=(1, 2))  # (P, h, h)

    # Each window's sum of squared deviations, from cumulative sums (integral images).
    def window_sums(a: np.ndarray) -> np.ndarray:
        c = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        return c[w:, w:] - c[:-w, w:] - c[w:, :-w] + c[:-w, :-w]

    n = w * w
    spread = window_sums(x * x) - window_sums(x) ** 2 / n  # (h, h)
    denominator = np.sqrt(np.maximum(spread, 0))[None] * t_norm[:, None, None]
    ncc = np.where(denominator > 1e-9, numerator / np.where(denominator > 1e-9, denominator, 1), 0)
    best = ncc.reshape(len(t), -1).max(axis=1)
    return np.where(t_norm / w > 1e-6, best, 0.0)  # a flat template matches nothing


def _spectra(windows: np.ndarray, band: int, chunk: int = 512) -> np.ndarray:
    """(N, w, w) grey windows -> (N, (2 band)^2) unit rows of the log Fourier magnitude of the
    low frequencies, Hann-windowed: a shift of the window's content leaves it nearly unchanged.
    Computed `chunk` windows at a time (the transform is complex128: 16 bytes a pixel)."""
    w = windows.shape[-1]
    hann = np.outer(np.hanning(w), np.hanning(w)).astype(np.float32)
    c = w // 2
    out = np.empty((len(windows), (2 * band) ** 2), np.float32)
    for start in range(0, len(windows), chunk):
        x = windows[start : start + chunk].astype(np.float32)
        x -= x.mean(axis=(1, 2), keepdims=True)
        f = np.fft.fftshift(np.abs(np.fft.fft2(x * hann)), axes=(1, 2))
        out[start : start + len(x)] = _unit_rows(
            np.log1p(f[:, c - band : c + band, c - band : c + band])
        )
    return out


def _neighbour_pairs(thumbs: np.ndarray, config: DuplicateConfig, progress: bool) -> np.ndarray:
    """(P, 2) index pairs a < b worth comparing: for every query window of a, the patches whose
    centre window's spectrum is nearest; every pair for a small set."""
    n = len(thumbs)
    if n < 2:
        return np.zeros((0, 2), np.int32)
    if n < max(config.exhaustive_below, config.neighbours + 2):
        a, b = np.triu_indices(n, 1)
        return np.stack([a, b], axis=1).astype(np.int32)
    from sklearn.decomposition import PCA

    s, w, band = config.coarse_size, config.index_window, config.index_band
    m = (s - w) // 2
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(n, min(n, config.pca_sample), replace=False))
    dims = min(config.index_dims, len(sample), (2 * band) ** 2)
    pca = PCA(dims, random_state=0).fit(_spectra(thumbs[sample, m : m + w, m : m + w], band))
    blocks = range(0, n, config.block)

    points = [
        _describe(pca, thumbs[i : i + config.block, m : m + w, m : m + w], band) for i in blocks
    ]
    index = _nearest_index(np.concatenate(points), exact=n < config.exact_below)
    job = _NeighbourSearch(thumbs, pca, index, config, min(n, config.neighbours + 1))
    found = []
    for part in _in_workers(
        "neighbours", job, _block_neighbours, list(blocks), progress, unit="block"
    ):
        found += part
    codes = np.unique(np.concatenate(found))
    return np.stack([codes // n, codes % n], axis=1).astype(np.int32)


@dataclass(frozen=True)
class _NeighbourSearch:
    thumbs: np.ndarray
    pca: object
    index: object  # faiss, of every patch's centre-window descriptor
    config: DuplicateConfig
    k: int  # neighbours asked for (one of them is the patch itself)

    def describe(self, windows: np.ndarray) -> np.ndarray:
        return _describe(self.pca, windows, self.config.index_band)


def _describe(pca, windows: np.ndarray, band: int) -> np.ndarray:
    """(B, w, w) windows -> (B, dims) float32 descriptors: the PCA of their spectra."""
    return np.ascontiguousarray(pca.transform(_spectra(windows, band)), dtype=np.float32)


def _block_neighbours(job: _NeighbourSearch, starts: list[int]) -> list[np.ndarray]:
    """Pair codes a * n + b (a < b) of the neighbours of each block of patches."""
    config, n, k = job.config, len(job.thumbs), job.k
    w = config.index_window
    offsets = range(0, config.coarse_size - w + 1, config.index_step)
    found = []
    for start in starts:
        block = job.thumbs[start : start + config.block]
        owner = np.arange(start, start + len(block))
        mine = []
        for dy in offsets:
            for dx in offsets:
                _, near = job.index.search(job.describe(block[:, dy : dy + w, dx : dx + w]), k)
                a = np.repeat(owner, k)
                b = near.ravel()
                keep = (a != b) & (b >= 0)  # -1: fewer neighbours found
                mine.append(np.minimum(a, b)[keep] * n + np.maximum(a, b)[keep])
        found.append(np.unique(np.concatenate(mine)))  # a pair found by several windows: once
    return found


def _nearest_index(points: np.ndarray, exact: bool):
    """A faiss index of (N, d) float32 points: exact (brute force) for a small set, HNSW for a
    large one, built on one thread so that the same points give the same graph every time."""
    import faiss

    d = points.shape[1]
    if exact:
        index = faiss.IndexFlatL2(d)
        index.add(points)
        return index
    index = faiss.IndexHNSWFlat(d, 32)
    index.hnsw.efConstruction, index.hnsw.efSearch = 80, 48
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.add(points)
    finally:
        faiss.omp_set_num_threads(threads)
    return index


def _coarse_pairs(
    thumbs: np.ndarray, pairs: np.ndarray, config: DuplicateConfig, progress: bool
) -> set[tuple[int, int]]:
    """The pairs whose grey NCC, the centre window of either one against every window of the
    other, reaches `coarse_threshold`; first at half the scale (a 16 px window at 24 px, a
    fourteenth of the work), where a pair must reach `prefilter_threshold` to be looked at
    again at 48 px."""
    n = len(thumbs)
    half = np.empty((n, config.coarse_size // 2, config.coarse_size // 2), np.uint8)
    for start in range(0, n, config.block):  # 2 x 2 means: an exact half-scale image
        block = thumbs[start : start + config.block].astype(np.float32)
        k, h = len(block), half.shape[1]
        half[start : start + k] = np.rint(block.reshape(k, h, 2, h, 2).mean(axis=(2, 4)))
    t = config.coarse_window
    rough = _best_both_ways(half, t // 2, pairs, progress, "candidates (24 px)")
    pairs = pairs[rough >= config.prefilter_threshold]
    fine = _best_both_ways(thumbs, t, pairs, progress, "candidates (48 px)")
    return {(int(a), int(b)) for a, b in pairs[fine >= config.coarse_threshold]}


def _best_both_ways(
    images: np.ndarray, t: int, pairs: np.ndarray, progress: bool = False, desc: str = ""
) -> np.ndarray:
    """(P,) for each pair (a, b): the best NCC of the centre t x t window of one image at any
    position in the other, whichever way round is higher."""
    if not len(pairs):
        return np.zeros(0, np.float32)
    m = (images.shape[1] - t) // 2
    # Both ends of every pair, grouped by the image whose every window is correlated.
    ends = np.concatenate([pairs, pairs[:, ::-1]])
    order = np.argsort(ends[:, 0], kind="stable")
    ends = ends[order]
    starts = np.flatnonzero(np.r_[True, ends[1:, 0] != ends[:-1, 0]])
    stops = np.r_[starts[1:], len(ends)]
    values = np.empty(len(ends), np.float32)
    job = _Correlation(images, t, m, ends, starts, stops)
    for part in _in_workers(
        "candidates", job, _correlate, list(range(len(starts))), progress, desc
    ):
        for lo, hi, best in part:
            values[lo:hi] = best
    both = np.empty(len(ends), np.float32)
    both[order] = values  # back to [pairs as given; pairs reversed]
    return np.maximum(both[: len(pairs)], both[len(pairs) :])


@dataclass(frozen=True)
class _Correlation:
    images: np.ndarray
    t: int  # window side
    m: int  # offset of the centre window
    ends: np.ndarray  # (2P, 2) both ends of every pair, grouped by the first
    starts: np.ndarray  # where each group of `ends` begins
    stops: np.ndarray


def _correlate(job: _Correlation, groups: list[int]) -> list[tuple[int, int, np.ndarray]]:
    """(lo, hi, best NCC of each partner's centre window in image x) for each group of ends."""
    t, m, out = job.t, job.m, []
    for g in groups:
        lo, hi = int(job.starts[g]), int(job.stops[g])
        x, partners = int(job.ends[lo, 0]), job.ends[lo:hi, 1]
        windows = sliding_window_view(job.images[x].astype(np.float32), (t, t))
        rows = _unit_rows(windows.reshape(-1, t, t))  # every window of x: (W, t*t)
        centres = _unit_rows(job.images[partners, m : m + t, m : m + t])  # (P, t*t)
        out.append((lo, hi, (centres @ rows.T).max(axis=1)))
    return out


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


def _square_grey(image: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop, luminance, resized to size x size, float32."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    grey = Image.fromarray(image[top : top + side, left : left + side]).convert("L")
    return np.asarray(grey.resize((size, size), Image.BILINEAR), dtype=np.float32)


def _band_pass(grey: np.ndarray, sigmas: tuple[float, float]) -> np.ndarray:
    return ndi.gaussian_filter(grey, sigmas[0]) - ndi.gaussian_filter(grey, sigmas[1])


def _unit_rows(windows: np.ndarray) -> np.ndarray:
    """(N, h, w) -> (N, h*w), each row zero-mean and unit-norm (NCC becomes a dot product)."""
    flat = windows.reshape(len(windows), -1).astype(np.float32)
    flat -= flat.mean(axis=1, keepdims=True)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True) + 1e-6
    return flat
