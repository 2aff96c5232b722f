"""The one exception type for bad user input (configuration, data, paths)."""


class BadInput(ValueError):
    """A value the user gave is wrong. The message is one line: the bad value, and the fix.

    Raised before any model is loaded, so a mistake costs seconds, not a model load. The CLI
    prints the message and exits with code 2.
    """
