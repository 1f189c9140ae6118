"""Training: a run folder (`run.py`) from a data set's split.

recipes      which views of which cells an epoch draws (the paper's Table 1 and the default)
transforms   canvases in a bank, D4 views cut from them
banks        the images in memory or decoded from disk, by worker processes
cells        the cells of a fold, other data sets beside them, the classes learned
learner      model, optimiser, schedule, moving average
epoch        `train_one_epoch` and the validation figures
pretrained   starting from another run's weights (`--init`)
history      the log lines, history.csv and curves.png
train        `fit`: all of the above, resumable, under torchrun or alone
commands     `marrowdiff train`
"""

from __future__ import annotations

from marrowdiff.errors import UserError


class TrainingError(UserError, ValueError):
    """A run cannot train as configured (classes, data set weights, schedule, optimiser); the
    message says what to change."""
