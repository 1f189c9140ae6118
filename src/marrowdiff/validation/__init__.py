"""Ground truth a laboratory can defend: how far reviewers agree with each other, and a model
with their consensus (`agreement`), the reference's intervals (`intervals`), the method
comparison over cases (`comparison`), and its report (`report`). Pure statistics and files:
the station (`web`) gathers the verdicts and runs the model."""
