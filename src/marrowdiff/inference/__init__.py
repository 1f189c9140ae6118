"""Inference: the one path from a trained model to calibrated probabilities.

predict      `Model` (PyTorch or ONNX), `Classifier` (dual stage, the unsure flag)
dualstage    a local model's refinement of the global model's probabilities
calibrate    a run's calibration fitted on its validation cells (`marrowdiff calibrate`)
reference    a run's domain reference: its training cells' features, a threshold from validation
export       a run as an ONNX file, float or int8, carrying everything it needs
quantize     int8 quantisation and its agreement with the float model
commands     `marrowdiff calibrate`, `export`
"""
