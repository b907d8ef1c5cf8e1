"""Errors, run-folder files and atomic writes, the training configuration; free of torch."""
