"""Errors that the command line reports as one clear line (exit code != 0) instead of a traceback."""

import unicodedata

# what must not reach a file name, a table cell or the terminal: control characters (a newline, NUL, BEL,
# escapes) and the marks that reverse the direction in which the rest of a line is shown
LINE_BREAKING = ("Cc", "Cs", "Zl", "Zp")  # Unicode's controls, lone surrogates, line and paragraph separators
BIDI_CONTROLS = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def one_line(value) -> bool:
    """Whether `value`, where a string, is one line of visible text."""
    return not isinstance(value, str) or not any(
        unicodedata.category(c) in LINE_BREAKING or c in BIDI_CONTROLS for c in value
    )


class FiveError(Exception):
    """Base class: a problem with the user's input or run, not a bug."""

    exit_code = 2


class ConfigError(FiveError):
    """An invalid configuration value (unknown model, K > d, a flag that does not apply, …)."""


class DataError(FiveError):
    """A data set that is unknown, missing or malformed."""


class TrainingDiverged(FiveError):
    """The loss became non-finite (the run's checkpoints from before are kept)."""

    exit_code = 3

    def __init__(self, epoch: int, step: int, value: float, message: str | None = None):
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(message or f"non-finite loss ({value}) at epoch {epoch}, step {step}")
