"""Ray's own terminal output goes to a log file; the user's terminal keeps only ours.

Ray Tune prints its configuration box, a "View detailed results" line, a TensorBoard hint and,
on Ctrl-C, a ``Tuner.restore(...)`` hint; ``ray.init`` warns about token authentication. None of
it applies to a sweep driven by ``sweeper`` (resume is "run the same command again"), and some of
it is printed with bare ``print`` whatever ``verbose`` says. So while Ray runs in the driver, file
descriptors 1 and 2 point at ``<log>``: every print, logging handler and C-level write lands there,
and what the user should see is written to ``terminal()``, a duplicate of the real stdout.

Re-entrant: nested or repeated ``to_log`` blocks append to the same file; the path is printed
once per process.

From Python (``sweeper.run``, docs/python.md) nothing of this is the caller's: inside ``kept()``
every line the CLI would print (``say``, and whatever is written to ``terminal()``) is kept in a
list for the caller instead, and ``ray_output`` leaves descriptors 1 and 2 alone unless the
caller asked for the log file.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, TextIO

from sweeper.core.uris import is_remote_storage, storage_folder
from sweeper.core import environ

_state: dict = {"depth": 0, "terminal": None, "terminal_err": None, "announced": set(), "closers": [], "kept": None}

# Tune adds CSV, JSON and TensorBoard loggers to every experiment unless told not to; MLflow holds
# the metrics, so they would only be files nobody reads (and the source of the TensorBoard hint).
QUIET_ENV = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}


def log_path_for(storage_root: str, sweep: str) -> Path:
    """``<storage>/<sweep>/ray-driver.log`` for local storage; for a remote one (s3://) a local
    folder beside the working directory, because the log is written as it happens."""
    if is_remote_storage(storage_root):
        base = Path.cwd() / "sweeper_logs" / sweep
    else:
        base = Path(storage_folder(storage_root)) / sweep
    return base / "ray-driver.log"


def terminal() -> TextIO:
    """Where user-facing output goes: the real stdout, also inside a ``to_log`` block; inside
    ``kept()`` a stream whose lines are kept for the caller."""
    if _state["kept"] is not None:
        return _Keeper(_state["kept"])
    return _state["terminal"] or sys.stdout


def say(text: str, err: bool = False) -> None:
    """One line for the user: on stdout (stderr with ``err``), or kept inside ``kept()``."""
    if _state["kept"] is not None:
        _state["kept"].append(text)
        return
    import click

    if err and _state["terminal_err"] is not None:  # inside to_log: the real stderr, not Ray's log
        click.echo(text, file=_state["terminal_err"])
        return
    click.echo(text, err=err)


@contextlib.contextmanager
def kept() -> Iterator[list[str]]:
    """Nothing is printed inside: the lines ``say`` and ``terminal()`` get are collected in the
    list this yields (what ``sweeper.run`` returns as its messages)."""
    saved, lines = _state["kept"], []
    _state["kept"] = lines
    try:
        yield lines
    finally:
        _state["kept"] = saved


class _Keeper(io.TextIOBase):
    """A text stream that adds each complete line to a list."""

    def __init__(self, lines: list[str]):
        self.lines, self.partial = lines, ""

    def write(self, text: str) -> int:
        self.partial += text
        *complete, self.partial = self.partial.split("\n")
        self.lines.extend(complete)
        return len(text)

    def isatty(self) -> bool:
        return False


# Without the log file (sweeper.run), Ray Tune is asked to print nothing: its newer output engine
# prints a configuration box and a "View detailed results" line at any verbosity, the older one
# nothing at verbose=0; and its loggers' warnings about the result files we switch off are noise.
UNLOGGED_ENV = {**QUIET_ENV, "RAY_AIR_NEW_OUTPUT": "0"}
UNLOGGED_LOGGERS = ("ray.tune", "ray.train", "ray.air")


@contextlib.contextmanager
def ray_output(path: Path, to_file: bool = True) -> Iterator[None]:
    """While Ray runs here: its output to ``path`` (``to_log``) or, without ``to_file``, the
    caller's descriptors left alone and Tune asked to print nothing (``UNLOGGED_ENV``, its
    loggers at ERROR), both as before afterwards."""
    if to_file:
        with to_log(path):
            yield
        return
    import logging

    loggers = [logging.getLogger(name) for name in UNLOGGED_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with environ.temporarily(UNLOGGED_ENV, users_win=True):
            yield
    finally:
        if not _state["depth"]:
            _leave()  # a live view stops drawing where the caller's output goes on
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def on_leave(closer: Callable[[], None]) -> None:
    """Run ``closer`` when the outermost ``to_log`` block ends (a live view must stop drawing
    before the descriptors move back)."""
    _state["closers"].append(closer)


@contextlib.contextmanager
def to_log(path: Path) -> Iterator[Path]:
    if _state["depth"]:
        _state["depth"] += 1
        try:
            yield path
        finally:
            _state["depth"] -= 1
        return
    os.environ.update({k: v for k, v in QUIET_ENV.items() if k not in os.environ})
    path.parent.mkdir(parents=True, exist_ok=True)
    if str(path) not in _state["announced"]:
        _state["announced"].add(str(path))
        say(f"Ray's own output: {path}")
    sys.stdout.flush()
    sys.stderr.flush()
    user, user_err = _user_stream(sys.stdout, 1), _user_stream(sys.stderr, 2)
    log = open(path, "a", buffering=1, encoding="utf-8")
    log.write(f"\n==== sweeper driver {os.getpid()} at {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n")
    saved = os.dup(1), os.dup(2)
    saved_py = sys.stdout, sys.stderr
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    _state.update(depth=1, terminal=user, terminal_err=user_err)
    try:
        yield path
    finally:
        _leave()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        sys.stdout, sys.stderr = saved_py
        _state.update(depth=0, terminal=None, terminal_err=None)
        for stream, own in ((user, saved_py[0]), (user_err, saved_py[1])):
            if stream is not own:
                with contextlib.suppress(Exception):
                    stream.close()
        log.close()


def _leave() -> None:
    for closer in reversed(_state["closers"]):
        with contextlib.suppress(Exception):
            closer()
    _state["closers"].clear()


def _user_stream(out: TextIO, fd: int) -> TextIO:
    """A stream on the real stdout (``fd`` 1) or stderr (2) that survives ``fd`` being pointed
    elsewhere. A stream that is not on ``fd`` (pytest's capsys, a StringIO) is used as it is."""
    try:
        if out.fileno() != fd:
            return out
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return out
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(out, "encoding", None) or "utf-8",
                     errors="replace")


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
