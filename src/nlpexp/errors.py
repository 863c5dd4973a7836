class NlpexpError(Exception):
    """A problem with the user's config, data or environment: printed as one line, no traceback."""
