"""The one exception type for bad user input (configuration, data, paths)."""


class BadInput(ValueError):
    """A value the user gave is wrong. The message is one line: the bad value, and the fix.

    Raised before any model is loaded, so a mistake costs seconds, not a model load. The CLI
    prints the message and exits with code 2.
    """


def one_line(e: BaseException | str, limit: int | None = None) -> str:
    """The first non-empty line of an exception's message (its type name when the message is empty), for the
    one-line errors `BadInput` carries; a string gives its first line. `limit`: cut at that many characters
    (with "...")."""
    text = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."


def root_cause(e: BaseException) -> str:
    """`one_line` of the innermost cause of an exception: for a `hydra.utils.instantiate` error, the import or
    argument error behind Hydra's wrapper."""
    while e.__cause__ is not None:
        e = e.__cause__
    return one_line(e)
