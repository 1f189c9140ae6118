"""marrowdiff: automated white-blood-cell differential counts for bone marrow smears."""

__version__ = "0.1.0"
