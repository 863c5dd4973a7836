class NlpexpError(Exception):
    """A problem with the user's config, data or environment: printed as one line, no traceback."""


def first_line(err: BaseException, message: str | None = None) -> str:
    """The message of an error (or `message`, one made from it) as one line; its type when it has none."""
    text = (str(err) if message is None else message).strip()
    return text.splitlines()[0] if text else type(err).__name__
