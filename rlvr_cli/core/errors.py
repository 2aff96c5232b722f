"""The one exception type for bad user input (configuration, data, paths)."""


class BadInput(ValueError):
    """A value the user gave is wrong. The message is one line: the bad value, and the fix.

    Raised before any model is loaded, so a mistake costs seconds, not a model load. The CLI
    prints the message and exits with code 2.
    """


def one_line(e: BaseException | str, limit: int | None = None) -> str:
    """The first paragraph of an exception's message on one line (its lines up to the first blank one, joined by
    spaces; its type name when the message is empty), for the one-line errors `BadInput` carries: a message that a
    library wraps over several lines (Hydra's `_target_` blocklist) stays whole. A string gives the same. `limit`:
    cut at that many characters (with "...")."""
    lines = [line.strip() for line in str(e).strip().splitlines()]
    paragraph = lines[:lines.index("")] if "" in lines else lines
    text = " ".join(paragraph) or type(e).__name__
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."


def root_cause(e: BaseException) -> str:
    """`one_line` of the innermost cause of an exception: for a `hydra.utils.instantiate` error, the import or
    argument error behind Hydra's wrapper."""
    while e.__cause__ is not None:
        e = e.__cause__
    return one_line(e)
