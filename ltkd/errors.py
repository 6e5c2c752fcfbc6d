"""User-facing errors: the entry point prints them as one line and exits with status 2."""


class LTKDError(Exception):
    """An error caused by the user's input (config, data, checkpoint), reported as one line."""


class ConfigError(LTKDError):
    """A config value is invalid: the message names the field, the value and what is allowed."""


class DataError(LTKDError):
    """A dataset is missing, incomplete or corrupt: the message names the path and the expected layout."""


class CheckpointError(LTKDError):
    """A checkpoint is missing, truncated, corrupt or does not match the run."""
