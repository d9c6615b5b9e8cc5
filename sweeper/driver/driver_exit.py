"""How a `sweeper run` driver ends, named for what happened.

- ``interrupted`` and exit 130 only after this process received a real SIGINT or SIGTERM.
  ``DriverSignals`` records the signal; while a sweep is being fitted the first one asks Ray Tune
  to stop gracefully (trials are paused, their child runs marked KILLED, and the next run resumes
  them from their checkpoints); a second one, or one outside the fit, stops the driver at once.
- Any other failure is one line naming its cause and exit 1; bad input or an operational problem
  the user must fix (SpecError/SweepError) is one line and exit 2. No traceback either way.

Ray Tune replaces the SIGINT handler while it runs (and ray.init replaces SIGTERM's), which would
hide a Ctrl-C from us; so Tune's own SIGINT handler is switched off (TUNE_DISABLE_SIGINT_HANDLER)
and our handler stops Tune through the SIGUSR1 handler Tune always installs for that purpose.

A driver whose lease was lost (sweeper.driver.lease: another driver took the sweep over) stops Tune the
same way, from its heartbeat thread (``request_stop``), without counting as a signal received.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Callable, Iterator

from sweeper.core.errors import SweeperError, one_line
from sweeper.core.states import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, FAILED, INTERRUPTED, PENDING,
                                 RUNNING)
from sweeper.record.trial_record import state_of, write_end_retried
from sweeper.views import terminal
SIGNALS = (signal.SIGINT, signal.SIGTERM)
INTERRUPTED_LINE = "interrupted: run the same command again to resume"
TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"


class DriverSignals:
    """SIGINT/SIGTERM handlers for the driver: remember the first signal, then stop gracefully
    through ``graceful`` when one is set, else raise KeyboardInterrupt."""

    def __init__(self):
        self.signum: int | None = None
        self.graceful: Callable[[], None] | None = None
        self.stop_requested = False  # the lease was lost: stop, but not "interrupted"
        self.on_term: Callable[[], None] | None = None  # at the first SIGTERM, before the stop (term_close)
        self._stop_sent = False
        self._saved: dict[int, object] = {}

    @property
    def received(self) -> bool:
        return self.signum is not None

    def install(self) -> "DriverSignals":
        """Idempotent: call again after ray.init, which puts a SIGTERM handler of its own."""
        for sig in SIGNALS:
            current = signal.getsignal(sig)
            if current != self._handle:
                self._saved.setdefault(sig, current)
                signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()

    @contextlib.contextmanager
    def stopping_tune_here(self) -> Iterator[None]:
        """While a Ray Tune loop runs in this process, a first signal stops it gracefully."""
        # SIG_IGN until Tune installs its SIGUSR1 handler: SIGUSR1's default would kill us
        saved = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        saved_env = os.environ.get(TUNE_SIGINT_ENV)
        os.environ[TUNE_SIGINT_ENV] = "1"  # Tune would take SIGINT from us while it runs
        self.graceful = _stop_tune_here
        try:
            yield
        finally:
            self.graceful = None
            signal.signal(signal.SIGUSR1, saved)
            if saved_env is None:
                os.environ.pop(TUNE_SIGINT_ENV, None)
            else:
                os.environ[TUNE_SIGINT_ENV] = saved_env

    def request_stop(self) -> None:
        """From any thread, as often as needed: stop the Tune loop running in this process once
        Tune has put its SIGUSR1 handler in place (under Ray Client the loop that relays to the
        head reads ``stop_requested``)."""
        self.stop_requested = True
        if self.graceful is _stop_tune_here and not self._stop_sent and _tune_listens():
            self._stop_sent = True
            os.kill(os.getpid(), signal.SIGUSR1)

    def _handle(self, signum, frame) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
            if signum == signal.SIGTERM and self.on_term is not None:
                self.on_term()
        if first and self.graceful is not None:
            self.graceful()
            return
        raise KeyboardInterrupt


def _stop_tune_here() -> None:
    """Ask the Ray Tune loop running in this process to end (its SIGUSR1 handler); before Tune
    has started there is nothing to stop gracefully, so the driver stops at once."""
    if not _tune_listens():
        raise KeyboardInterrupt
    os.kill(os.getpid(), signal.SIGUSR1)


def _tune_listens() -> bool:
    return signal.getsignal(signal.SIGUSR1) not in (signal.SIG_IGN, signal.SIG_DFL, None)


class DriverFailure(SweeperError, RuntimeError):
    """A failure of the driver whose message already says what happened."""

    exit_code = EXIT_FAILED


def failure_exit(e: BaseException, signals: DriverSignals) -> int:
    """Print the line for ``e`` on stderr and return the exit code it stands for."""
    from sweeper.views.terminal import say

    if isinstance(e, KeyboardInterrupt) and signals.received:
        say(INTERRUPTED_LINE, err=True)
        return EXIT_INTERRUPTED
    if isinstance(e, SweeperError) and e.exit_code != EXIT_FAILED:  # said as it is, its own code
        say(one_line(e, limit=None), err=True)
        return e.exit_code
    if isinstance(e, KeyboardInterrupt):
        # not from a signal we received: something inside raised it
        say("failed: the driver was stopped by a KeyboardInterrupt it did not receive as a signal; "
                   "run the same command again to resume", err=True)
        return EXIT_FAILED
    say(f"failed: {one_line(e)}; run the same command again to resume", err=True)
    return EXIT_FAILED


def unfinished_line(unfinished: int) -> str:
    return (f"failed: Ray Tune ended with {unfinished} trial(s) not finished and no stop signal was "
            "received (see the Ray logs); run the same command again to resume them")


def exit_code(client, runs: dict, keys: set[str], interrupted: bool, signalled: bool = True,
               unwritten: dict[str, str] | None = None, kept_in: str = "") -> int:
    """The exit code of a fit that returned (finished or stopped), from the child runs by trial
    key as they are after training (open ones are marked interrupted here) and the ends MLflow
    did not take (``unwritten``: key -> state, kept in ``kept_in`` for the next run)."""
    unwritten = unwritten or {}
    states = {key: state_of(runs.get(key)) for key in keys}
    for key, state in states.items():
        run = runs.get(key)
        if run is not None and state == RUNNING:
            # left open by a stop (Ctrl-C): mark it so, it resumes from its checkpoint next time
            # (a kept end, below, is written over it by the next run)
            write_end_retried(client, run.info.run_id, INTERRUPTED)  # logged if it still fails
            states[key] = INTERRUPTED
    states.update({key: state for key, state in unwritten.items() if key in states})
    unfinished = sum(1 for s in states.values() if s in (INTERRUPTED, PENDING))
    if (interrupted or unfinished) and not signalled:  # "interrupted" only after a real signal
        terminal.say(unfinished_line(unfinished), err=True)
        return EXIT_FAILED
    if interrupted or unfinished:
        terminal.say(INTERRUPTED_LINE, err=True)
        return EXIT_INTERRUPTED
    if unwritten:
        terminal.say(f"{len(unwritten)} trial end{'s' if len(unwritten) != 1 else ''} could not be written to MLflow; "
                     f"kept in {kept_in}, they are written by the next `sweeper run`", err=True)
        return EXIT_FAILED
    if any(s == FAILED for s in states.values()):
        return EXIT_FAILED
    return EXIT_OK
