"""Errors that reach the user as one clear message (no traceback) and a non-zero exit."""


class BenchmarkInputError(ValueError):
    """Bad user input: a name, a flag value, a data folder or a file that is not as expected.

    The message names the offending file or value and says what was expected.
    """
