class NlpexpError(Exception):
    """A problem with the user's config, data or environment: printed as one line, no traceback."""


def first_line(err: BaseException) -> str:
    """The message of an error as one line (its type when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
