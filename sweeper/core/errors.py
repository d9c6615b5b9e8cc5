"""The one error type for anything a user typed (a spec file, a flag, a sweep name), and the
words its messages use for the value the user gave.

``kind_of`` and ``show`` live here, beside ``SpecError``, so that every spec module (schema,
axes, pydantic translation) quotes a bad value the same way: ``got the string 'sgd'``,
``[in grid: depth=15]``.
"""

from __future__ import annotations

from typing import Any


class SpecError(Exception):
    """Bad user input. ``str(e)`` is the single line the CLI prints before exiting with code 2.

    Format: ``sweeps/x.yaml: grid[0].depth[2]: 15 is not 6n+2 for cifar_resnet (line 12)``.
    """

    def __init__(self, file: str | None, key: str | None, message: str, line: int | None = None):
        self.file = file
        self.key = key
        self.message = message
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.key) if p]
        text = ": ".join(parts + [self.message])
        return f"{text} (line {self.line})" if self.line else text


class SweepError(Exception):
    """An operational failure the user must act on (tracking server unreachable, bad credentials,
    unknown sweep name): one line, exit code 2 as well, raised before any trial starts."""


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
    """The first non-empty line of an exception's message (its type's name when it has none), cut
    at ``limit`` characters: how every one-line report of a failure quotes its cause."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(e).__name__)[:limit]
