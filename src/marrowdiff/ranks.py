"""Work shared among the processes of a torchrun job, without importing PyTorch when alone.

`classify` and `count` with an ONNX model run without PyTorch (half the memory, a second faster
to start), so whether this process is one of several is read from the environment here, and
`distributed` (PyTorch) is imported only when it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def launched() -> bool:
    """Whether torchrun (or another launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def on_every_rank(work: Callable[[list], T], items: list) -> list[T] | None:
    """Each rank runs `work` on every world-th item (rank r: items r, r + world, ...); rank 0
    gets every rank's result in rank order, the others None. Alone: [work(items)]."""
    if not launched():
        return [work(items)]
    from marrowdiff.distributed import gather, setup, teardown

    runtime = setup("cpu")
    try:
        return gather(work(items[runtime.rank :: runtime.world]), runtime)
    finally:
        teardown(runtime)
