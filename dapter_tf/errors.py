"""The one exception type for bad user input."""


class DapterError(ValueError):
    """Bad user input: a path, an image array, a flag value or a name.

    Binaries catch it and print its message as a single ``error: ...`` line with a non-zero exit,
    so its message must be one complete sentence that says what was wrong and, where possible,
    what to do instead.
    """
