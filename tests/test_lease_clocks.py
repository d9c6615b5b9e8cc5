"""Liveness without comparing clocks (sweeper/driver/lease.py, sweeper/record/claims.py), on a real
sqlite MLflow store: a claim is stale only when its heartbeat stood still for the stale time on
the reader's own clock, whatever the writer's clock says; a live driver whose clock is minutes
ahead is refused, not evicted; a trial's fence trusts a heartbeat from a moment of its own clock."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from sweeper.driver import fence as fence_module
from sweeper.driver.fence import Fence
from sweeper.driver.lease import Lease, LeaseHeld
from sweeper.record import names, tracking
from sweeper.record.claims import ClaimWatch, claims_in, watch_clock

STALE_S = 3.0


@pytest.fixture
def parent(mlflow_client, tracking_uri, monkeypatch) -> str:
    monkeypatch.setenv("SWEEPER_LEASE_SETTLE_S", "0.1")
    monkeypatch.setenv("SWEEPER_LEASE_STALE_S", str(STALE_S))
    monkeypatch.setenv("SWEEPER_LEASE_HEARTBEAT_S", "0.3")
    monkeypatch.setenv("SWEEPER_CLOCK_SKEW_S", "1")
    experiment = tracking.ensure_experiment(mlflow_client, "clocks", tracking_uri)
    return tracking.ensure_parent_run(mlflow_client, experiment, "clocks", "name: clocks\n", "h")


class OtherDriver:
    """A driver on another host whose clock runs ``offset_s`` ahead: its claim, beating or not."""

    def __init__(self, client, run_id: str, offset_s: float, beating: bool):
        self.client, self.run_id, self.offset_s = client, run_id, offset_s
        self.tag = names.TAG_LEASE_PREFIX + "elsewhere-77-abcd1234"
        self.stop = threading.Event()
        self.write()
        self.thread = threading.Thread(target=self.beat, daemon=True) if beating else None
        if self.thread is not None:
            self.thread.start()

    def write(self) -> None:
        now = time.time() + self.offset_s
        self.client.set_tag(self.run_id, self.tag, json.dumps(
            {"host": "elsewhere", "pid": 77, "since": now, "heartbeat": now, "pidns": "another-machine"}))

    def beat(self) -> None:
        while not self.stop.wait(0.3):
            self.write()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


def test_a_driver_with_a_clock_five_minutes_ahead_refuses_a_live_holder_and_names_the_clocks(
        mlflow_client, parent, caplog):
    other = OtherDriver(mlflow_client, parent, offset_s=-300, beating=True)  # its claim looks 5 min old here
    try:
        with caplog.at_level(logging.WARNING, logger="sweeper.driver.lease"):
            with pytest.raises(LeaseHeld, match=r"host elsewhere, pid 77, .*its heartbeat changed while this "
                                                r"driver watched"):
                Lease(mlflow_client, parent, "clocks").acquire()
    finally:
        other.close()
    assert other.tag in mlflow_client.get_run(parent).data.tags  # never evicted
    clock = [r.getMessage() for r in caplog.records if "clock is" in r.getMessage()]
    assert len(clock) == 1 and "ahead of that of elsewhere (pid 77)" in clock[0], clock
    assert 290 < float(clock[0].split("clock is ")[1].split(" s")[0]) < 310


def test_a_claim_that_looks_fresh_is_refused_at_once_without_watching(mlflow_client, parent):
    other = OtherDriver(mlflow_client, parent, offset_s=300, beating=True)  # a holder whose clock is ahead
    try:
        with pytest.raises(LeaseHeld, match="host elsewhere, pid 77"):
            Lease(mlflow_client, parent, "clocks").acquire()
    finally:
        other.close()


def test_a_dead_driver_is_taken_over_once_its_heartbeat_stood_still_for_the_stale_time(mlflow_client, parent):
    other = OtherDriver(mlflow_client, parent, offset_s=-300, beating=False)  # it looks 5 min old here
    began = watch_clock()
    held = Lease(mlflow_client, parent, "clocks").acquire()
    try:
        assert watch_clock() - began >= STALE_S  # watched, not judged from its timestamp
        assert list(claims_in(mlflow_client.get_run(parent).data.tags)) == [held.driver]
    finally:
        held.release()
        other.close()


def test_a_watch_measures_how_long_a_value_stood_on_its_own_clock():
    from sweeper.record.claims import Claim

    watch = ClaimWatch()
    claim = Claim("d", "h", 1, 0.0, 1000.0)
    watch.observe({"d": claim}, at=10.0)
    watch.observe({"d": claim}, at=15.0)
    assert watch.unchanged_for("d", now=20.0) == 10.0 and not watch.alive("d")
    watch.observe({"d": Claim("d", "h", 1, 0.0, 1001.0)}, at=21.0)
    assert watch.unchanged_for("d", now=22.0) == 1.0 and watch.alive("d")
    watch.observe({}, at=23.0)
    assert watch.unchanged_for("d", now=30.0) == 0.0  # gone: nothing to judge


def test_a_trials_fence_trusts_a_heartbeat_only_once_it_saw_it_change(mlflow_client, tracking_uri, parent,
                                                                      monkeypatch):
    held = Lease(mlflow_client, parent, "clocks").acquire()
    monkeypatch.setattr(fence_module, "clock_namespace", lambda: "another-machine")  # the trial's clock is not the driver's
    try:
        assert held.fence.verified()  # the driver wrote its heartbeat: it knows when
        fence = Fence(tracking_uri, parent, held.driver, "clocks")  # a trial: another process's clock
        assert not fence.verified()  # one read: when that heartbeat was written is unknown here
        began = watch_clock()
        fence()  # waits for the next beat (0.3 s), then passes
        assert watch_clock() - began < 10 and fence.verified()
        held._stop.set()  # the driver freezes: no more beats
        held._thread.join()
        time.sleep(STALE_S / 2 + 0.5)
        assert not fence.verified() and "has not been seen to change" in fence.why_waiting()
    finally:
        held.release()



def test_a_trial_on_the_drivers_machine_trusts_the_heartbeat_at_its_first_read(mlflow_client, tracking_uri, parent,
                                                                              monkeypatch):
    """The claim says when its write began on the clock the trial reads too (same boot and time
    namespace): a new trial there writes at once instead of waiting for the next heartbeat, and
    trusts that heartbeat for TRUST_S from that moment, as if it had written it."""
    monkeypatch.setenv("SWEEPER_LEASE_STALE_S", "20")  # a trust long enough for a loaded machine
    held = Lease(mlflow_client, parent, "clocks").acquire()
    try:
        held._stop.set()  # no beat from here on: only the claim already written can be trusted
        held._thread.join()
        claim = claims_in(mlflow_client.get_run(parent).data.tags)[held.driver]
        assert claim.clock and claim.wrote is not None and claim.wrote <= watch_clock()
        fence = Fence(tracking_uri, parent, held.driver, "clocks")  # a new trial's: nothing read before
        assert fence.verified()
        assert fence.trusted_until == pytest.approx(claim.wrote + 10)
    finally:
        held.release()
