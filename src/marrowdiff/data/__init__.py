"""The data stage: labelled cell images in, an audit and leak-free splits out.

datasets     a folder, zip or CSV manifest read into records, labels through a vocabulary
sources      the input files of classify and count (folders, zips, single images)
public       the public data sets: addresses, checksums, fetch and verify
audit        counts, unreadable files, duplicates, label conflicts; owns audit.json
duplicates   the duplicate search (nearest neighbours, then pixels), in worker processes
splits       group-aware test split and CV folds; owns splits.json
commands     `marrowdiff data`, `vocab`, `audit`, `split`
"""
