"""The ``sweeper`` logging namespace: where a handler that keeps going says what it swallowed.

Every module logs with ``logging.getLogger(__name__)`` (``sweeper.record.tracking``,
``sweeper.driver.lease``, ...); nothing here is needed to do so. This module decides where those records go:

- imported as a library (a notebook, ``sweeper.load_results``): nowhere but where the caller's own
  logging sends them. The namespace holds a ``NullHandler``, so Python's last-resort handler
  prints nothing, the root logger is never touched and no level is set;
- the CLI (``configure_cli``, from ``sweeper.cli.main``): warnings and errors, what the user must
  know, as one line each on the real stderr, ``sweeper: warning: <message>``; the real one even
  while ``sweeper.views.terminal.ray_output`` points descriptors 1 and 2 at Ray's log file;
- a sweep's driver (``to_file``, around ``sweeper run``): every record from INFO up, with time,
  level and module, in ``<storage>/<sweep>/ray-driver.log``, beside Ray's own output;
- a Ray worker (``configure_worker``): INFO and up on the worker's stderr, which Ray keeps in the
  worker's log file (``log_to_driver`` is off).

Messages name the cause in one line (``cause(e)``), never a traceback on the user's stderr; the
driver's file gets the traceback where a record asks for it (``exc_info=True``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Iterator, TextIO

NAMESPACE = "sweeper"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_root = logging.getLogger(NAMESPACE)
if not any(isinstance(h, logging.NullHandler) for h in _root.handlers):
    _root.addHandler(logging.NullHandler())


def cause(e: BaseException) -> str:
    """``core.errors.one_line(e)``: an exception in one short line, with its type unless it is ours."""
    from sweeper.core.errors import one_line

    return one_line(e)


class UserLines(logging.Handler):
    """One plain line per record on ``stream``: ``sweeper: warning: ...`` (no traceback)."""

    def __init__(self, stream: TextIO, level: int = logging.WARNING):
        super().__init__(level)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(f"sweeper: {record.levelname.lower()}: {record.getMessage()}\n")
            self.stream.flush()
        except Exception:  # noqa: BLE001 - logging.Handler's contract: a broken stream never raises
            self.handleError(record)


def _real_stderr() -> TextIO:
    """A stream on descriptor 2 as it is now, which survives fd 2 being pointed at Ray's log
    later; a stderr that is not fd 2 (pytest's capture, a StringIO) is used as it is."""
    err = sys.stderr
    try:
        if err.fileno() != 2:
            return err
    except (AttributeError, ValueError, OSError):
        return err
    return os.fdopen(os.dup(2), "w", buffering=1, encoding=getattr(err, "encoding", None) or "utf-8",
                     errors="replace")


def configure_cli(stream: TextIO | None = None) -> logging.Handler:
    """The CLI's handler (once per process): warnings and errors as one line on the real stderr."""
    for handler in _root.handlers:
        if isinstance(handler, UserLines):
            return handler
    handler = UserLines(stream or _real_stderr())
    _root.addHandler(handler)
    _lower_level_to(logging.INFO)  # the driver's file takes INFO; the user's handler stays at WARNING
    return handler


def configure_worker() -> None:
    """Inside a Ray worker: INFO and up on its stderr (Ray's worker log), once per process."""
    if any(getattr(h, "_sweeper_worker", False) for h in _root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.setLevel(logging.INFO)
    handler._sweeper_worker = True  # type: ignore[attr-defined]
    _root.addHandler(handler)
    _lower_level_to(logging.INFO)


@contextlib.contextmanager
def to_file(path: str | Path) -> Iterator[Path]:
    """Every ``sweeper`` record from INFO up also goes to ``path`` (appended, created with the
    first record) while the block runs; the namespace's level is restored afterwards. Nested
    blocks on the same path add nothing."""
    path = Path(path)
    if any(getattr(h, "_sweeper_file", None) == str(path) for h in _root.handlers):
        yield path
        return
    handler = _FileMadeOnUse(path)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.setLevel(logging.INFO)
    handler._sweeper_file = str(path)  # type: ignore[attr-defined]
    saved = _root.level
    _lower_level_to(logging.INFO)
    _root.addHandler(handler)
    try:
        yield path
    finally:
        _root.removeHandler(handler)
        _root.setLevel(saved)
        handler.close()


class _FileMadeOnUse(logging.FileHandler):
    """A FileHandler that creates its file, and the folders above it, with the first record: a
    run that stops before anything is logged (a store that cannot be reached) leaves no folder."""

    def __init__(self, path: Path):
        super().__init__(path, encoding="utf-8", delay=True)

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def _lower_level_to(level: int) -> None:
    """Let records of ``level`` reach our handlers without raising a level the caller lowered."""
    if _root.level == logging.NOTSET or _root.level > level:
        _root.setLevel(level)
