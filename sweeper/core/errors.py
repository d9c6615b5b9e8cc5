"""Every error sweeper raises for a person to read derives from ``SweeperError``, which carries the
exit code the CLI leaves with; ``one_line`` is how any exception, ours or not, becomes the line
that is printed or logged. And the words messages use for the value a user gave: ``kind_of``
and ``show`` live here, beside ``SpecError``, so that every spec module (schema, axes, pydantic
translation) quotes a bad value the same way: ``got the string 'sgd'``, ``[in grid: depth=15]``.
"""

from __future__ import annotations

from typing import Any

from sweeper.core.states import EXIT_BAD_INPUT, EXIT_FAILED


class SweeperError(Exception):
    """An error whose message is written for the user: ``str(e)`` is the line printed, without
    the type's name, and ``exit_code`` the code the command leaves with. Subclasses keep their
    constructor's arguments in ``args`` (or define ``__reduce__``): Ray copies a trial's
    exception into the driver by pickling it."""

    exit_code = EXIT_BAD_INPUT


class SpecError(SweeperError):
    """Bad user input. ``str(e)`` is the single line the CLI prints before exiting with code 2.

    Format: ``sweeps/x.yaml: grid[0].depth[2]: 15 is not 6n+2 for cifar_resnet (line 12)``.
    """

    def __init__(self, file: str | None, key: str | None, message: str, line: int | None = None):
        self.file = file
        self.key = key
        self.message = message
        self.line = line
        super().__init__(str(self))

    def __reduce__(self):
        return type(self), (self.file, self.key, self.message, self.line)

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.key) if p]
        text = ": ".join(parts + [self.message])
        return f"{text} (line {self.line})" if self.line else text


class SweepError(SweeperError):
    """An operational failure the user must act on (tracking server unreachable, bad credentials,
    unknown sweep name): one line, exit code 2 as well, raised before any trial starts."""


class TrackingUnavailable(SweeperError, RuntimeError):
    """MLflow did not take a trial's results within the wait: the trial fails (and is retried)
    rather than end without its record."""

    exit_code = EXIT_FAILED


def one_line(e: BaseException, *, typed: bool = True, limit: int | None = 300) -> str:
    """Any exception as one line: the first non-empty line of its message, cut at ``limit``
    characters. ``typed``: an exception not written for the user (not a ``SweeperError``) is
    named by its type, ``ConnectionError: server not reachable``; a message-less one is its type's
    name. Untyped, it is the message alone, for quoting a cause inside a message of ours."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(e).__name__
    if typed and text != type(e).__name__ and not isinstance(e, SweeperError):
        text = f"{type(e).__name__}: {text}"
    return text[:limit] if limit else text


def kind_of(value: Any) -> str:
    """What a wrong value is, for ``got ...``: ``nothing``, ``true``, ``int 3``, ``the string 'x'``,
    ``a list``, ``a mapping``."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def show(value: Any) -> str:
    """A value as the user would type it in YAML: ``true``, ``bn_only``, ``0.1``, ``14``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return repr(value) if isinstance(value, float) else str(value)


def first_line(e: BaseException, limit: int = 200) -> str:
    """``one_line(e, typed=False)``: a cause quoted inside a message of ours."""
    return one_line(e, typed=False, limit=limit)
