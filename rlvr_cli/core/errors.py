"""The one exception type for bad user input (configuration, data, paths)."""


class BadInput(ValueError):
    """A value the user gave is wrong. The message is one line: the bad value, and the fix.

    Raised before any model is loaded, so a mistake costs seconds, not a model load. The CLI
    prints the message and exits with code 2.
    """


def one_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when the message is empty), for the
    one-line errors `BadInput` carries."""
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
