"""Errors that the command line reports as one clear line (exit code != 0) instead of a traceback."""


class FiveError(Exception):
    """Base class: a problem with the user's input or run, not a bug."""

    exit_code = 2


class ConfigError(FiveError):
    """An invalid configuration value (unknown model, K > d, a flag that does not apply, …)."""


class DataError(FiveError):
    """A data set that is unknown, missing or malformed."""


class TrainingDiverged(FiveError):
    """The loss became non-finite; the last good checkpoint is kept."""

    exit_code = 3

    def __init__(self, epoch: int, step: int, value: float, message: str | None = None):
        self.epoch, self.step, self.value = epoch, step, value
        what = message or f"non-finite loss ({value}) at epoch {epoch}, step {step}"
        super().__init__(f"{what}; the last good checkpoint was kept")
