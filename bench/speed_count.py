"""Inference speed side by side: cells/s through PyTorch, ONNX Runtime and ONNX Runtime int8
(`marrowdiff export --int8`) for a trained model, and the paper's VGG-16; the time to count one
1080 x 1330 field, and `count`'s peak memory.

    python bench/speed_count.py --model runs/demo/model --data data/data_WBC_torch.zip

Cells/s are measured two ways: the network alone on ready (N, 3, S, S) batches of 128 (the
model's windows of 512 archive patches; random ones for VGG-16), and end
to end from decoded patches (resize, white balance, crop, network, calibrated softmax). The field
time is detection + cropping + classification + the report (HTML, JSON, CSV), warm, best of 3.
Peak memory is the resident set of a whole `marrowdiff count` process on 3 fields.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from marrowdiff.config import PRESETS
from marrowdiff.counting.count import CountConfig, count_field
from marrowdiff.counting.report import About, ReportConfig
from marrowdiff.counting.report_files import write_report
from marrowdiff.data.datasets import open_dataset
from marrowdiff.inference.export import Deployable, export_graph, export_onnx
from marrowdiff.inference.predict import Classifier, load_model
from marrowdiff.models import build_model
from marrowdiff.normalisation import Normalisation
from marrowdiff.preprocess import centre_views
from marrowdiff.synthetic.fields import FieldConfig, make_field


def best_rate(fn, n: int, repeats: int = 3) -> float:
    fn()  # warm up
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return n / best


def network_rates(
    module: torch.nn.Module | None, size: int, onnx_path: Path, x: np.ndarray | None = None
) -> tuple[float, float]:
    """(PyTorch, ONNX Runtime) cells/s of a uint8 -> logits module on batches of 128 of `x`
    (default: random windows); PyTorch is nan without a module."""
    if x is None:
        x = np.random.default_rng(0).integers(0, 256, (512, 3, size, size), dtype=np.uint8)

    def run_torch():
        with torch.inference_mode():
            for i in range(0, len(x), 128):
                module(torch.from_numpy(x[i : i + 128]))

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run_ort():
        for i in range(0, len(x), 128):
            session.run(None, {name: x[i : i + 128]})

    torch_rate = best_rate(run_torch, len(x)) if module is not None else float("nan")
    return torch_rate, best_rate(run_ort, len(x))


# The child reports its own high-water mark (VmHWM, per address space): getrusage's ru_maxrss
# would carry over this big parent's resident size through fork and exec.
PEAK = """
import runpy, sys
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_module("marrowdiff", run_name="__main__")
except SystemExit as stop:
    code = stop.code
status = open("/proc/self/status").read().splitlines()
print(next(line for line in status if line.startswith("VmHWM")), file=sys.stderr)
sys.exit(code)
"""


def peak_memory_mb(args: list[str]) -> float:
    """Peak resident memory, MB, of `marrowdiff ARGS` in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK, "marrowdiff", *args], capture_output=True, text=True
    )
    line = done.stderr.strip().splitlines()[-1]
    if done.returncode or not line.startswith("VmHWM"):
        raise RuntimeError(f"marrowdiff {' '.join(args)} failed: {done.stderr[-500:]}")
    return int(line.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=Path("runs/demo/model"))
    parser.add_argument("--data", type=Path, default=Path("data/data_WBC_torch.zip"))
    args = parser.parse_args()
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs"
    )
    tmp = Path(tempfile.mkdtemp(prefix="marrowdiff-bench-"))
    onnx_path = export_onnx(args.model, tmp / "default.onnx")
    int8_path = export_onnx(args.model, tmp / "int8.onnx", int8=True, data=args.data)
    torch_model, onnx_model = load_model(args.model), load_model(onnx_path)
    int8_model = load_model(int8_path)
    size = torch_model.geometry.input_size
    deployable = Deployable(torch_model.module, torch_model.normalisation)
    dataset = open_dataset(args.data)
    patches = [dataset.load(r) for r in dataset.records[:512]]
    windows = centre_views(patches, torch_model.geometry)  # int8 ranges fit real cells
    label = f"{args.model.name}: {torch_model.metadata['config']['model']['name']} ({size} px)"
    rows = [
        (label, *network_rates(deployable.eval(), size, onnx_path, windows)),
        (label + " int8", *network_rates(None, size, int8_path, windows)),
    ]
    paper = PRESETS["paper"]
    vgg = Deployable(
        build_model(replace(paper.model, num_classes=10)),
        Normalisation("yuv", (0.5, 0.0, 0.0), (0.25, 0.1, 0.1)),
    )
    vgg_onnx = tmp / "vgg16.onnx"
    export_graph(vgg, paper.model.input_size, vgg_onnx)
    rows.append(
        (
            f"paper vgg16 ({paper.model.input_size} px)",
            *network_rates(vgg.eval(), paper.model.input_size, vgg_onnx),
        )
    )
    print("\nnetwork alone, batches of 128 (cells/s):")
    for name, pt, ox in rows:
        print(f"  {name:37s} PyTorch {pt:7.1f}   ONNX Runtime {ox:7.1f}")

    print("\nend to end from decoded patches (cells/s, 512 archive patches):")
    backends = (("PyTorch", torch_model), ("ONNX Runtime", onnx_model), ("ORT int8", int8_model))
    for name, model in backends:
        rate = best_rate(lambda m=model: m.proba(patches), len(patches))
        print(f"  {name:14s} {rate:7.1f}  (a 500-cell differential in {500 / rate:.2f} s)")

    field, truth = make_field(patches[:104], ["x"] * 104, FieldConfig(), seed=0)
    field_path = tmp / "field.png"
    Image.fromarray(field).save(field_path)
    print(f"\none 1080 x 1330 field ({len(truth)} cells): detect, classify, report (best of 3)")
    for name, model in backends:
        classifier = Classifier(model)

        def one_field(c=classifier, name=name):
            cells, preview = count_field(c, "field", field, CountConfig())
            about = About(model=name, cell_radius=CountConfig().detect.cell_diameter / 2)
            write_report(
                tmp / "report", cells, [preview], c.vocabulary, c.classes, ReportConfig(), about
            )

        seconds = 1 / best_rate(one_field, 1)
        print(f"  {name:14s} {seconds:.3f} s")

    fields = tmp / "fields"
    fields.mkdir()
    for k in range(3):
        Image.fromarray(make_field(patches, ["x"] * len(patches), FieldConfig(), seed=k)[0]).save(
            fields / f"{k}.png"
        )
    print("\npeak resident memory of `marrowdiff count` on 3 fields:")
    files = (("PyTorch checkpoint", args.model), ("ONNX file", onnx_path), ("int8 ONNX", int8_path))
    for name, model in files:
        mb = peak_memory_mb(
            [
                "count",
                str(model),
                str(fields),
                "--out",
                str(tmp / "count"),
            ]
        )
        print(f"  {name:20s} {mb:6.0f} MB")
    print(json.dumps({"scratch": str(tmp)}))


if __name__ == "__main__":
    main()
