"""Starting a run from another run's weights (`--init`): every tensor that fits, and the
output layer's rows matched by class code."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from marrowdiff import run


def initialise(module: nn.Module, init: str | Path, classes: list[str], log=print) -> dict:
    """Load another run's weights into `module` (pre-training): every tensor of the same name
    and shape, and the output layer's rows by class code (a class the other run did not learn
    keeps its fresh rows). Returns what the checkpoint records of it."""
    checkpoint = run.load_checkpoint(init)
    state = checkpoint.state["state_dict"]
    head = output_layer(module)
    own = module.state_dict()
    loaded, rows = 0, 0
    for key, value in state.items():
        if key.startswith(head + "."):
            continue
        if key in own and own[key].shape == value.shape:
            own[key] = value
            loaded += 1
    if loaded < len(own) // 2:
        raise run.CheckpointError(
            f"--init {init}: only {loaded} of {len(own)} weights fit this model "
            f"({checkpoint.config.model.name} there, {type(module).__name__} here); "
            "pre-train with the same --config"
        )
    shared = [c for c in classes if c in checkpoint.classes]
    for suffix in ("weight", "bias"):
        key = f"{head}.{suffix}"
        if key in state and key in own and state[key].shape[1:] == own[key].shape[1:]:
            for c in shared:
                own[key][classes.index(c)] = state[key][checkpoint.classes.index(c)]
            rows = len(shared)
    module.load_state_dict(own)
    log(
        f"initialised from {init}: {loaded} of {len(own)} tensors, output rows of {rows} of "
        f"{len(classes)} classes"
    )
    return {
        "run": str(init),
        "weights_sha256": checkpoint.state.get("weights_sha256"),
        "classes": list(checkpoint.classes),
        "data": checkpoint.state.get("data"),
    }


def output_layer(module: nn.Module) -> str:
    """The name of a classifier's last linear layer (its rows are the classes)."""
    names = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(f"{type(module).__name__} has no linear output layer")
    return names[-1]
