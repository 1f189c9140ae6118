"""Inputs shared among the ranks of a torchrun job, the results gathered on rank 0."""

import subprocess
import sys

import pytest

from marrowdiff.distributed import launched
from marrowdiff.distributed.shards import on_every_rank

SCRIPT = """
import json, os
from marrowdiff.distributed.shards import on_every_rank
parts = on_every_rank(lambda mine: [(os.environ["RANK"], x * x) for x in mine], list(range(7)))
print("RESULT", json.dumps(parts))
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
    run = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
    ]
    out = subprocess.run(run, capture_output=True, text=True, timeout=120, check=True).stdout
    results = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("RESULT")]
    assert sorted(results) == sorted(
        [
            '[[["0", 0], ["0", 4], ["0", 16], ["0", 36]], [["1", 1], ["1", 9], ["1", 25]]]',
            "null",  # rank 1 gets nothing back
        ]
    )
