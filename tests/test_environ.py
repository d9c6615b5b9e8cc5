"""core.environ.temporarily: what sweeper sets in the environment for a block is gone after it."""

from __future__ import annotations

import os

import pytest

from sweeper.core import environ


@pytest.mark.parametrize("users_win, inside", [(False, "ours"), (True, "user")])
def test_values_hold_inside_the_block_and_the_environment_is_as_before_after_it(monkeypatch, users_win, inside):
    """users_win: a value the user already set is kept; an unset one is set either way."""
    monkeypatch.setenv("SWEEPER_T_SET", "user")
    monkeypatch.delenv("SWEEPER_T_UNSET", raising=False)
    with environ.temporarily({"SWEEPER_T_SET": "ours", "SWEEPER_T_UNSET": "ours"}, users_win=users_win):
        assert (os.environ["SWEEPER_T_SET"], os.environ["SWEEPER_T_UNSET"]) == (inside, "ours")
    assert os.environ["SWEEPER_T_SET"] == "user" and "SWEEPER_T_UNSET" not in os.environ


def test_the_environment_is_put_back_when_the_block_raises(monkeypatch):
    monkeypatch.delenv("SWEEPER_T_UNSET", raising=False)
    with pytest.raises(RuntimeError), environ.temporarily({"SWEEPER_T_UNSET": "ours"}, users_win=False):
        raise RuntimeError("inside")
    assert "SWEEPER_T_UNSET" not in os.environ


def test_overlapping_fast_fail_blocks_of_two_threads_leave_the_environment_as_it_was(monkeypatch):
    """The lease heartbeat, the dashboard and the trial-end writes each make MLflow fail fast
    for one call, from their own threads, and MLflow reads the knobs from os.environ at every
    request. Blocks that overlap (A enters, B enters, A leaves, B leaves) must neither leave the
    fast-fail values behind for the rest of the process (every later call of the driver would
    give up after one retry: a 7 s outage ended a chaos driver with exit 1) nor drop them while a
    block is still open."""
    import threading

    from sweeper.record import tracking
    from sweeper.record.store import FAST_FAIL_ENV

    for key in FAST_FAIL_ENV:
        monkeypatch.delenv(key, raising=False)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen_in_b_after_a_left = {}

    def a():
        with tracking.fast_fail_http():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b():
        a_in.wait(5)
        with tracking.fast_fail_http():
            b_in.set()
            a_out.wait(5)
            seen_in_b_after_a_left.update({k: os.environ.get(k) for k in FAST_FAIL_ENV})

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen_in_b_after_a_left == FAST_FAIL_ENV  # still failing fast inside B
    assert not any(k in os.environ for k in FAST_FAIL_ENV)  # and nothing left behind
