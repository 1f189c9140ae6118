"""Training data for the objects that are not nucleated cells, mined from real fields whose
labelled cell is at the centre (`marrowdiff mine`)."""
