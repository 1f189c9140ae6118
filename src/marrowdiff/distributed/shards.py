"""A list of inputs shared among the ranks of a torchrun job, without importing PyTorch when
alone: `classify` and `count` with an ONNX model run without it (half the memory, a second
faster to start), so `runtime` (PyTorch) is imported only when this process is one of several.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from marrowdiff.distributed import launched

T = TypeVar("T")


def on_every_rank(work: Callable[[list], T], items: list) -> list[T] | None:
    """Each rank runs `work` on every world-th item (rank r: items r, r + world, ...); rank 0
    gets every rank's result in rank order, the others None. Alone: [work(items)]."""
    if not launched():
        return [work(items)]
    from marrowdiff.distributed.runtime import gather, setup, teardown

    runtime = setup("cpu")
    try:
        return gather(work(items[runtime.rank :: runtime.world]), runtime)
    finally:
        teardown(runtime)
