"""Evaluation: how good a model and a detector are, on cells nobody trained on.

metrics      the metrics as pure functions, and their figures and pages
evaluate     a run (or a dual-stage set) scored on its held-out cells
detection    true cells from annotated boxes; detections scored against them
commands     `marrowdiff evaluate`
"""
