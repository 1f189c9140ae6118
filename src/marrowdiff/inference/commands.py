"""`marrowdiff calibrate` and `export`: a trained run's calibration, and the run as ONNX."""

from __future__ import annotations

from pathlib import Path

from marrowdiff.arguments import log, progress
from marrowdiff.calibration import TARGET_ACCURACY
from marrowdiff.inference.calibrate import calibrate_run
from marrowdiff.inference.export import export_onnx, quantisation_summary


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="fit temperature, unsure threshold and domain reference on validation"
    )
    p.add_argument("run_dir", metavar="RUN", type=Path, help="run folder (or its model.pt)")
    p.add_argument("--data", type=Path, help="the data set (default: where the run was trained)")
    p.add_argument(
        "--target-accuracy",
        type=float,
        default=TARGET_ACCURACY,
        help="unflagged validation cells must be right this often (default %(default)s)",
    )
    p.add_argument(
        "--mpp",
        type=float,
        help="microns per pixel of the images the run was trained on (kept: --mpp of count)",
    )
    p.set_defaults(run=cmd_calibrate)

    p = sub.add_parser("export", help="export a model to ONNX for deployment")
    p.add_argument("model", type=Path, help="run folder or .pt checkpoint")
    p.add_argument("--onnx", type=Path, required=True, help="ONNX file to write")
    p.add_argument(
        "--int8",
        action="store_true",
        help="quantise to 8-bit integers (about twice the cells/s on a CPU), calibrated on the "
        "run's training cells and checked against the float model on its validation cells",
    )
    p.add_argument("--data", type=Path, help="the run's data set, if it has moved (with --int8)")
    p.set_defaults(run=cmd_export)


def cmd_calibrate(args) -> int:
    calibrate_run(
        args.run_dir,
        args.data,
        args.target_accuracy,
        log=log,
        progress=progress(),
        mpp=args.mpp,
    )
    return 0


def cmd_export(args) -> int:
    path = export_onnx(args.model, args.onnx, int8=args.int8, data=args.data, progress=progress())
    print(f"ONNX model: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if args.int8:
        log(quantisation_summary(path))
    return 0
