"""Whole pipelines, built from the stages below.

holdout      split -> fit -> evaluate, written once
demo         the main job: the archive (and PBC) from fetch to a counted report
table1       the paper's Table 1, beside the paper's figures
commands     `marrowdiff demo`, `experiment`
"""
