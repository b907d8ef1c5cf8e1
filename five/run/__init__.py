"""One run: training steps and loop, validation, evaluation, checkpoints, timing, devices, MLflow."""
