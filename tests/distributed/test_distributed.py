"""torchrun on CPU with gloo, 2 processes: training matches one process, counting merges to the
same report, a killed rank fails the job and --resume finishes it. Run alone: -m distributed."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from marrowdiff.inference.export import export_onnx
from marrowdiff.run import MODEL
from marrowdiff.synthetic.cells import synthetic_cell
from marrowdiff.synthetic.fields import FieldConfig, make_field

from ..conftest import TINY_CLASSES, write_image

pytestmark = [pytest.mark.distributed, pytest.mark.slow]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]

# SGD and no dropout: the only differences left between 1 and 2 processes are in the order of
# floating-point sums (measured: 3e-8 on weights, 2e-5 on running variances of ~5).
CONFIG = """
base = "quick"
[model]
input_size = 32
dropout = 0.0
extra = { fc_dropout = 0.0 }
[geometry]
input_size = 32
[train]
epochs = EPOCHS
optimizer = "sgd"
lr = 0.02
"""
# Every weight and buffer within 1e-5 absolute plus 1e-5 relative (running variances are ~5).
RTOL = ATOL = 1e-5


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(3)
    for label, radius in TINY_CLASSES.items():
        for k in range(20):
            write_image(root / "data" / label / f"{k}.png", synthetic_cell(rng, 48, radius=radius))
    return root


def config(folder: Path, epochs: int) -> Path:
    path = folder / f"ddp-{epochs}.toml"
    path.write_text(CONFIG.replace("EPOCHS", str(epochs)))
    return path


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, **kwargs)


def train_command(data: Path, out: Path, cfg: Path, *extra: str) -> list[str]:
    return [
        "-m",
        "marrowdiff",
        "train",
        str(data / "data"),
        "--out",
        str(out),
        "--config",
        str(cfg),
        "--device",
        "cpu",
        *extra,
    ]


def test_two_processes_train_the_same_weights_as_one(data, tmp_path):
    cfg = config(tmp_path, epochs=2)
    one = run([sys.executable, *train_command(data, tmp_path / "one", cfg)])
    two = run([*TORCHRUN, "2", *train_command(data, tmp_path / "two", cfg)])
    assert one.returncode == 0, one.stderr[-8000:]
    assert two.returncode == 0, (two.stdout + two.stderr)[-8000:]
    assert "effective batch size 40 (20 per process)" in two.stdout + two.stderr
    a = torch.load(tmp_path / "one" / MODEL, weights_only=True)
    b = torch.load(tmp_path / "two" / MODEL, weights_only=True)
    assert b["runtime"]["processes"] == 2
    for key, value in a["state_dict"].items():
        if value.dtype.is_floating_point:
            assert torch.allclose(value, b["state_dict"][key], rtol=RTOL, atol=ATOL), key
    # Rank 0 alone writes: the same files as one process, and nothing half-written.
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )


def test_two_processes_count_exactly_what_one_does(tiny_run, tmp_path):
    rng = np.random.default_rng(9)
    patches = [
        synthetic_cell(rng, 144, radius=3 * r) for r in TINY_CLASSES.values() for _ in range(4)
    ]
    fields = tmp_path / "fields"
    for k in range(5):
        field, _ = make_field(
            patches, ["x"] * len(patches), FieldConfig(540, 660, 6, red_cells=40), k
        )
        write_image(fields / f"field{k}.png", field)
    onnx = export_onnx(tiny_run, tmp_path / "tiny.onnx")
    args = ["count", str(onnx), str(fields), "--cell-diameter", "90", "--out"]
    one = run([sys.executable, "-m", "marrowdiff", *args, str(tmp_path / "one")])
    two = run([*TORCHRUN, "2", "-m", "marrowdiff", *args, str(tmp_path / "two")])
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    csv_one, csv_two = (tmp_path / n / "cells.csv" for n in ("one", "two"))
    assert csv_one.read_bytes() == csv_two.read_bytes()
    reports = [json.loads((tmp_path / n / "report.json").read_text()) for n in ("one", "two")]
    for report in reports:
        report.pop("created")
    assert reports[0] == reports[1]
    for k, patch in enumerate(patches[:9]):  # and `classify`: the same rows, in input order
        write_image(tmp_path / "patches" / f"c{k}.png", patch)
    args = ["classify", str(onnx), str(tmp_path / "patches"), "--out"]
    one = run([sys.executable, "-m", "marrowdiff", *args, str(tmp_path / "one.csv")])
    two = run([*TORCHRUN, "2", "-m", "marrowdiff", *args, str(tmp_path / "two.csv")])
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    paths = [line.split(",")[0] for line in (tmp_path / "two.csv").read_text().splitlines()[1:]]
    assert [p.rsplit("/", 1)[1] for p in paths] == [f"c{k}.png" for k in range(9)]


def _worker_pids(out: Path) -> dict[int, int]:
    """LOCAL_RANK -> pid of the training workers writing to `out`."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(out).encode() in cmdline and b"torch.distributed.run" not in cmdline:
            for entry in environ:
                if entry.startswith(b"LOCAL_RANK="):
                    found[int(entry.split(b"=")[1])] = int(proc.name)
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_a_killed_rank_fails_the_job_and_resume_finishes_it(data, tmp_path):
    epochs = 6  # killed after epoch 2 (a few epochs before the end), resumed to the end
    cfg, out = config(tmp_path, epochs), tmp_path / "run"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(
        [*TORCHRUN, "2", *train_command(data, out, cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        last = out / "last.pt"
        if last.exists() and torch.load(last, weights_only=True)["epoch"] >= 2:
            break
        time.sleep(0.2)
    else:
        job.kill()
        pytest.fail("training did not reach epoch 2")
    pids = _worker_pids(out)
    assert set(pids) == {0, 1}
    os.kill(pids[1], signal.SIGKILL)
    output, _ = job.communicate(timeout=120)
    assert job.returncode != 0
    assert "FAILED" in output or "ChildFailedError" in output, output[-2000:]
    assert not (out / MODEL).exists()
    done = torch.load(out / "last.pt", weights_only=True)["epoch"]
    assert done < epochs

    resumed = run([*TORCHRUN, "2", *train_command(data, out, cfg, "--resume")])
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-8000:]
    assert f"resuming {out} after epoch {done}" in resumed.stdout + resumed.stderr
    final = torch.load(out / MODEL, weights_only=True)
    assert [row["epoch"] for row in final["history"]] == list(range(1, epochs + 1))
    shutil.rmtree(out)


FROZEN = """
base = "default"
[model]
input_size = 32
pretrained = false
[geometry]
input_size = 32
[train]
epochs = 1
"""


def test_frozen_layers_stay_frozen_across_processes(data, tmp_path):
    # Global batch norm swaps the BN layers; a frozen one must stay frozen, or DDP waits for
    # gradients that never come.
    cfg = tmp_path / "frozen.toml"
    cfg.write_text(FROZEN)
    two = run([*TORCHRUN, "2", *train_command(data, tmp_path / "two", cfg)])
    assert two.returncode == 0, (two.stdout + two.stderr)[-8000:]
    state = torch.load(tmp_path / "two" / MODEL, weights_only=True)["state_dict"]
    assert state["_bn0.running_mean"].abs().max() == 0  # frozen: as initialised
    assert state["_blocks.2._bn2.running_mean"].abs().max() == 0
    assert state["_blocks.3._bn2.running_mean"].abs().max() > 0  # trained
