"""five: the four models of the FIVE benchmark (VAE, FC-VAE, FIF, FIVE), their estimators and evaluation.

The math follows ../shared/spec/method.md; section numbers in docstrings (§1.3, …) refer to it.
"""

__version__ = "0.1.0"
