"""The one error type every reader raises: a single sentence naming the file and the problem."""


class DatasetError(ValueError):
    """Bad or unreadable trajectory data. `str(err)` is meant to be shown to the user as is."""
