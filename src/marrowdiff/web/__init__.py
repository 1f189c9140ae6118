"""The review station: records (`store`, schema changes in `tables`), the work (`station`),
the web layer (`app`), accounts (`accounts`), slides (`slides`), and `validate`, which reads
the signed cases' exports for the method comparison (`marrowdiff.validation`)."""
