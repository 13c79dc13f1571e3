"""The one exception type the CLI turns into a clean one-line message."""


class AvddError(Exception):
    """A problem the user can fix: the message says what, which file, and what to do."""
