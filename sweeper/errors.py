"""The one error type for anything a user typed: a spec file, a flag, a sweep name."""

from __future__ import annotations


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
