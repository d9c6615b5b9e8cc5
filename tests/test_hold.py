"""Taking a sweep (sweeper/driver/hold.py): drivers that start a new sweep together each make a
parent run; they agree on the oldest, the other is deleted, and one of them holds the lease. A
parent made a moment ago shares one settle wait between the two agreements, on a real sqlite store."""

from __future__ import annotations

import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from sweeper.driver.hold import DriverHold
from sweeper.driver.lease import LeaseHeld
from sweeper.record import names, tracking

SETTLE_S = 0.5


@pytest.fixture
def experiment(mlflow_client, tracking_uri, monkeypatch) -> str:
    monkeypatch.setenv("SWEEPER_LEASE_SETTLE_S", str(SETTLE_S))
    return tracking.ensure_experiment(mlflow_client, "held", tracking_uri)


def new_parent(client, experiment_id: str) -> str:
    """What ensure_parent_run makes when it finds none (each driver saw none)."""
    return client.create_run(experiment_id, run_name="held", tags={names.TAG_ROLE: names.ROLE_SWEEP}).info.run_id


def test_two_drivers_that_made_a_parent_each_agree_on_the_oldest_and_one_holds_the_sweep(
        experiment, tracking_uri):
    clients = [MlflowClient(tracking_uri=tracking_uri) for _ in range(2)]
    parents = [new_parent(clients[0], experiment)]
    time.sleep(0.01)  # distinct start times: the first is the oldest
    parents.append(new_parent(clients[1], experiment))
    holds, outcomes = [DriverHold(), DriverHold()], [None, None]

    def take(i: int) -> None:
        try:
            outcomes[i] = holds[i].take(clients[i], experiment, parents[i], "held")
        except LeaseHeld as e:
            outcomes[i] = e

    threads = [threading.Thread(target=take, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    won = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, LeaseHeld)]
    assert won == [parents[0]] and len(refused) == 1, outcomes
    assert "being run by another driver" in str(refused[0])
    assert clients[0].get_run(parents[1]).info.lifecycle_stage == "deleted"  # the newer parent is gone
    for hold in holds:
        if hold.lease is not None:
            hold.lease.release()


def test_a_parent_made_a_moment_ago_is_held_after_one_settle_wait(experiment, mlflow_client, monkeypatch):
    parent = new_parent(mlflow_client, experiment)
    real_sleep, waits = time.sleep, []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    hold = DriverHold()
    assert hold.take(mlflow_client, experiment, parent, "held") == parent
    monkeypatch.setattr(time, "sleep", real_sleep)
    hold.lease.release()
    assert waits.count(SETTLE_S) == 1  # the parent's and the lease's settle are one wait


def test_a_parent_that_another_driver_made_long_ago_is_joined_not_replaced(experiment, mlflow_client, monkeypatch):
    from sweeper.driver import hold as hold_module

    old = new_parent(mlflow_client, experiment)
    monkeypatch.setattr(hold_module, "made_recently", lambda client, run_id: False)  # as for a sweep started yesterday
    hold = DriverHold()
    assert hold.take(mlflow_client, experiment, old, "held") == old
    assert mlflow_client.get_run(old).data.tags[names.TAG_LEASE_HOLDER]
    hold.lease.release()
