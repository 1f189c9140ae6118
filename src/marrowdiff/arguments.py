"""What several commands share: their common options (a data set, a model, a device) and how a
command speaks (plain lines on stdout, progress bars only on a terminal)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from marrowdiff.classes import builtin_vocabularies
from marrowdiff.stain import METHODS


def data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "data",
        type=Path,
        help="class-folder tree, zip archive of one, or CSV manifest (path,label[,group])",
    )
    p.add_argument(
        "--vocab",
        default="choi2017",
        help=f"built-in ({', '.join(builtin_vocabularies())}), a .toml/.json file, or "
        "'infer' to use the data set's own labels",
    )


def device_arg(p: argparse.ArgumentParser, default: str, help: str) -> None:
    p.add_argument(
        "--device",
        default=default,
        choices=["cpu", "cuda", "auto"],
        help=help + " (auto: CUDA when there is one; under torchrun the LOCAL_RANK's GPU)",
    )


def model_args(p: argparse.ArgumentParser, positional: bool = True) -> None:
    name, required = ("model", {}) if positional else ("--model", {"required": True})
    p.add_argument(
        name,
        **required,
        help="run folder, .pt checkpoint or .onnx file; for a dual-stage set, "
        "join global and local models with commas (global first)",
    )
    p.add_argument("--tta", action="store_true", help="average the 8 rotations/flips")
    p.add_argument(
        "--normalise-stain",
        choices=METHODS,
        default="none",
        help="stain normalisation of each cell's input window to the model's training images' "
        "colours: reinhard (Reinhard et al. 2001, in CIELAB) or none (default; "
        "docs/counting.md)",
    )
    device_arg(p, "cpu", "where a PyTorch model runs; ONNX models run on the CPU")


def log(message: str) -> None:
    print(message, flush=True)


def progress() -> bool:
    """Progress bars on a terminal only, never in a log file."""
    return sys.stderr.isatty()
