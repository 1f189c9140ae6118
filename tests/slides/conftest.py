"""Slides for tests: small synthetic marrow-like pyramids (seconds to write), a tiny model
that records its microns per pixel, and the shared real slide files (tests skip without)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from marrowdiff.synthetic.slide import SlideConfig, write_slide

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "slides"
MPP = 0.136  # the synthetic slides' and the tiny model's microns per pixel

# A slide of about 190 nucleated cells: thick area with a particle, countable area, edge, glass.
SMALL = SlideConfig(width=3072, height=2560, spacing=150, particles=1, seed=3)


def shared(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared/data/slides/: the public slide files)")
    return path


@pytest.fixture(scope="session")
def small_slide(patches, tmp_path_factory) -> Path:
    """A synthetic slide (generic pyramidal TIFF) and its truth file beside it."""
    labels = ["myeloblast" if k % 2 else "segmented_neutrophil" for k in range(len(patches))]
    path, _ = write_slide(tmp_path_factory.mktemp("slide") / "marrow.tiff", patches, labels,
                          SMALL)  # fmt: skip
    return path


@pytest.fixture(scope="session")
def mpp_run(tiny_run, tmp_path_factory) -> Path:
    """The tiny run, calibrated again with its images' microns per pixel recorded."""
    from marrowdiff.inference.calibrate import calibrate_run

    run = tmp_path_factory.mktemp("mpp") / "run"
    shutil.copytree(tiny_run, run)
    calibrate_run(run, log=lambda m: None, mpp=MPP)
    return run


@pytest.fixture(scope="session")
def mpp_onnx(mpp_run, tmp_path_factory) -> Path:
    from marrowdiff.inference.export import export_onnx

    return export_onnx(mpp_run, tmp_path_factory.mktemp("mpp-onnx") / "model.onnx")


@pytest.fixture(scope="session")
def counted(mpp_onnx, small_slide, tmp_path_factory):
    """The small slide counted whole (768 px tiles) in this process: (summary, folder)."""
    from marrowdiff.counting.report import ReportConfig
    from marrowdiff.inference.predict import load_classifier
    from marrowdiff.slides.count import SlideCountConfig
    from marrowdiff.slides.job import count_slide

    out = tmp_path_factory.mktemp("count")
    config = SlideCountConfig(tile=768, cells=None)
    summary = count_slide(load_classifier([str(mpp_onnx)]), small_slide, config, ReportConfig(),
                          out, str(mpp_onnx), log=lambda m: None)  # fmt: skip
    return summary, out


def stop_at(monkeypatch, n: int) -> None:
    """Make the n-th tile classified raise KeyboardInterrupt (a count stopped midway: the
    tiles before it are in the journal); `monkeypatch.undo()` lets counts finish again."""
    from marrowdiff.slides import job

    real, calls = job.classify_tile, []

    def stopping(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(job, "classify_tile", stopping)
