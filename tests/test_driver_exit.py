"""The driver's exits are named for what happened: real signals sent to this process, and the
one line and code of every other way a driver fails."""

from __future__ import annotations

import os
import signal

import pytest

from sweeper.driver import driver_exit
from sweeper.core.errors import SpecError, SweepError


@pytest.fixture
def signals():
    handlers = driver_exit.DriverSignals().install()
    try:
        yield handlers
    finally:
        handlers.restore()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_first_signal_during_a_fit_is_recorded_and_stops_gracefully(signals, sig):
    stops = []
    signals.graceful = lambda: stops.append(True)
    os.kill(os.getpid(), sig)
    assert signals.signum == sig and stops == [True]
    with pytest.raises(KeyboardInterrupt):  # a second one stops the driver at once
        os.kill(os.getpid(), signal.SIGINT)
    assert signals.signum == sig


def test_a_signal_outside_a_fit_stops_at_once_and_is_recorded(signals):
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
    assert signals.received


def test_restore_puts_the_previous_handlers_back():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    handlers = driver_exit.DriverSignals().install()
    handlers.install()  # again, as after ray.init: still restores the originals
    handlers.restore()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_before_tune_runs_a_stop_request_stops_at_once(signals):
    with signals.stopping_tune_here():
        assert os.environ[driver_exit.TUNE_SIGINT_ENV] == "1"
        with pytest.raises(KeyboardInterrupt):  # SIGUSR1 is ignored until Tune installs its handler
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_with_tune_running_a_signal_reaches_tunes_sigusr1_handler(signals):
    seen = []
    with signals.stopping_tune_here():
        signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))  # as Tune does
        os.kill(os.getpid(), signal.SIGTERM)
    assert seen == [signal.SIGUSR1] and signals.signum == signal.SIGTERM


@pytest.mark.parametrize("error, code, line", [
    (KeyboardInterrupt(), 1, "failed: the driver was stopped by a KeyboardInterrupt it did not receive as a signal"),
    (SweepError("tracking: cannot use MLflow at http://x: server not reachable"), 2,
     "tracking: cannot use MLflow at http://x: server not reachable"),
    (SpecError("--address", None, "'x' is not of the form ray://HOST:PORT"), 2,
     "--address: 'x' is not of the form ray://HOST:PORT"),
    (ConnectionError("Failed during this or a previous request.\nmore detail"), 1,
     "failed: ConnectionError: Failed during this or a previous request.; run the same command again to resume"),
    (driver_exit.DriverFailure("the sweep's Tune loop on the head was lost: X"), 1,
     "failed: the sweep's Tune loop on the head was lost: X; run the same command again to resume"),
])
def test_every_other_failure_is_one_line_and_its_code(capsys, error, code, line):
    assert driver_exit.failure_exit(error, driver_exit.DriverSignals()) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(line)


def test_a_keyboard_interrupt_after_a_real_signal_is_interrupted_130(capsys):
    received = driver_exit.DriverSignals()
    received.signum = signal.SIGINT
    assert driver_exit.failure_exit(KeyboardInterrupt(), received) == 130
    assert capsys.readouterr().err == "interrupted: run the same command again to resume\n"


def test_a_first_sigterm_starts_the_close_before_the_graceful_stop(signals):
    order = []
    signals.on_term = lambda: order.append("close")
    signals.graceful = lambda: order.append("stop")
    os.kill(os.getpid(), signal.SIGTERM)
    assert order == ["close", "stop"]


def test_a_ctrl_c_leaves_the_close_to_the_end_of_the_graceful_stop(signals):
    order = []
    signals.on_term = lambda: order.append("close")
    signals.graceful = lambda: order.append("stop")
    os.kill(os.getpid(), signal.SIGINT)
    assert order == ["stop"]  # no SIGKILL follows a Ctrl-C: the ordinary end closes the runs
