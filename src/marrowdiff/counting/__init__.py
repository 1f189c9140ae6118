"""Counting: fields in, a differential report out.

detect       nucleated cells found in a field (colour deconvolution, watershed)
count        classify patches, count fields, under torchrun or alone
scale        the scale cells are read at: measured against the training cells, corrected
report       the report's numbers and files (report.json, cells.csv, report.html)
commands     `marrowdiff classify`, `count`
"""
