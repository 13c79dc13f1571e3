"""The one exception type the CLI turns into a clean one-line message, and warnings as one line too."""

import sys


class AvddError(Exception):
    """A problem the user can fix: the message says what, which file, and what to do."""


def show_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    """A warning as one ``avdd: warning:`` line, like the errors (not Python's file:line and source);
    the CLI and ``avdd run``'s worker processes install it as ``warnings.showwarning``."""
    print(f"avdd: warning: {message}", file=sys.stderr)


def first_line(err: BaseException) -> str:
    """An exception's message as one line (an error message must not spill over several)."""
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return line if len(line) <= 200 else line[:200] + "…"
