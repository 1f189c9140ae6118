"""Work shared among the processes of a torchrun job.

__init__   whether this process is one of several (no PyTorch: `count` with an ONNX model
           runs without it)
runtime    the process group, device, precision, sharding and global batch norm (PyTorch)
shards     a list of inputs shared among ranks, the results gathered on rank 0
"""

from __future__ import annotations

import os


def world_size() -> int:
    """How many processes the launcher started (1 alone)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """Whether torchrun (or another launcher) started this process as one of several."""
    return world_size() > 1
