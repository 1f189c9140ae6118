"""Inputs shared among the ranks of a torchrun job, the results gathered on rank 0."""

import json
import subprocess
import sys

import pytest

from marrowdiff.distributed import launched
from marrowdiff.distributed.shards import on_every_rank

SCRIPT = """
import json, os, sys
from pathlib import Path
from marrowdiff.distributed.shards import on_every_rank
parts = on_every_rank(lambda mine: [(os.environ["RANK"], x * x) for x in mine], list(range(7)))
Path(sys.argv[1], "rank" + os.environ["RANK"] + ".json").write_text(json.dumps(parts))
"""


def test_alone_the_work_sees_every_item_once(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not launched()
    seen = []
    assert on_every_rank(lambda mine: seen.append(list(mine)) or len(mine), [3, 1, 2]) == [3]
    assert seen == [[3, 1, 2]]


def test_launched_reads_the_world_size(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert launched()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not launched()


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_take_every_other_item_and_rank_0_gets_both_in_rank_order(tmp_path):
    script = tmp_path / "shards.py"
    script.write_text(SCRIPT)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    run = [*torchrun, "--nproc_per_node", "2", str(script), str(tmp_path)]
    subprocess.run(run, capture_output=True, text=True, timeout=120, check=True)
    gathered = json.loads((tmp_path / "rank0.json").read_text())
    assert gathered == [[["0", 0], ["0", 4], ["0", 16], ["0", 36]], [["1", 1], ["1", 9], ["1", 25]]]
    assert json.loads((tmp_path / "rank1.json").read_text()) is None  # rank 1 gets nothing back
