"""Fencing (sweeper/driver/lease.py): a lease that another driver has taken over is found out by the
heartbeat, by the trials' fence and by the logger, on a real sqlite MLflow store; a fenced trial
leaves its checkpoint as it was and its buffered epochs unsent."""

from __future__ import annotations

import json
import threading

import pytest

from sweeper.driver.fence import Fence
from sweeper.driver.lease import Lease, LeaseLost
from sweeper.record import names, tracking
from trainables import run_trial
from trainables.checkpoint import load_checkpoint


@pytest.fixture
def parent(mlflow_client, tracking_uri, monkeypatch) -> str:
    monkeypatch.setenv("SWEEPER_LEASE_SETTLE_S", "0.1")
    experiment = tracking.ensure_experiment(mlflow_client, "fenced", tracking_uri)
    return tracking.ensure_parent_run(mlflow_client, experiment, "fenced", "name: fenced\n", "h")


def take_over(client, run_id: str, holder: Lease) -> dict:
    """What a second driver does once the holder's claim is stale: remove it, win, write the token."""
    client.delete_tag(run_id, holder.tag)
    token = {"driver": "other-host-4242-abcd", "host": "other-host", "pid": 4242, "since": 1_700_000_000.0}
    client.set_tag(run_id, names.TAG_LEASE_HOLDER, json.dumps(token))
    return token


def test_the_winner_writes_its_token_and_its_fence_passes_until_a_takeover(mlflow_client, tracking_uri, parent):
    held = Lease(mlflow_client, parent, "fenced").acquire()
    try:
        tags = mlflow_client.get_run(parent).data.tags
        assert json.loads(tags[names.TAG_LEASE_HOLDER])["driver"] == held.driver
        fence = Fence(tracking_uri, parent, held.driver, "fenced")
        fence()  # passes: nothing raised
        assert fence.verified() and held.holds()
        take_over(mlflow_client, parent, held)
        with pytest.raises(LeaseLost, match=r"^sweep 'fenced' was taken over by other-host-4242 \(since 2023-11-14 "
                                             r"22:13:20 UTC\): this driver stopped without writing$"):
            fence()
        assert not fence.holds() and not held.holds() and held.lost is not None
    finally:
        held.release()
    # the holder tag outlives the stale driver's release: a driver waking up later still finds it
    assert json.loads(mlflow_client.get_run(parent).data.tags[names.TAG_LEASE_HOLDER])["pid"] == 4242


def test_a_claim_removed_as_stale_is_a_lost_lease_even_before_the_new_token(mlflow_client, tracking_uri, parent):
    held = Lease(mlflow_client, parent, "fenced").acquire()
    try:
        mlflow_client.delete_tag(parent, held.tag)  # the taker is still settling: no new token yet
        with pytest.raises(LeaseLost, match="this driver's claim was removed as stale"):
            Fence(tracking_uri, parent, held.driver, "fenced")()
    finally:
        held.release()


def test_the_heartbeat_does_not_put_back_a_claim_it_lost_and_calls_on_lost(mlflow_client, parent, monkeypatch):
    monkeypatch.setenv("SWEEPER_LEASE_HEARTBEAT_S", "0.2")
    held = Lease(mlflow_client, parent, "fenced").acquire()
    told = threading.Event()
    held.on_lost = told.set
    try:
        take_over(mlflow_client, parent, held)
        assert told.wait(60), "the heartbeat never noticed the takeover"
        assert "taken over by other-host-4242" in str(held.lost)
        assert held.tag not in mlflow_client.get_run(parent).data.tags  # not rewritten
    finally:
        held.release()


def test_an_unreachable_store_is_trusted_only_while_the_last_claim_read_is_young(tmp_path):
    fence = Fence("http://127.0.0.1:9", "no-such-run", "me", "fenced")
    fence.trusted_until = float("inf")
    assert fence.verified()  # the claim read last cannot be stale for anyone yet
    fence.trusted_until = float("-inf")
    assert not fence.verified() and not fence.holds()  # __call__ would wait here


def test_a_fenced_trial_leaves_its_checkpoint_as_it_was(tmp_path):
    config = {"dataset": {"name": "digits", "image_size": 8, "train_size": 128, "test_size": 64},
              "model": {"family": "cifar_resnet", "depth": 8}, "mode": "bn_only",
              "train": {"epochs": 3, "batch_size": 64, "augment": False}, "checkpoint": {"every_epochs": 1}}
    reported, checks = [], []

    def fence():
        checks.append(len(checks) + 1)
        if len(checks) == 2:
            raise LeaseLost("taken over")

    with pytest.raises(LeaseLost):
        run_trial(config, lambda m, c: reported.append(m["epoch"]), tmp_path, fence=fence)
    assert reported == [1]  # epoch 2 was trained but neither reported nor checkpointed
    saved = load_checkpoint(tmp_path)
    assert saved["epoch"] == 1 and [h["epoch"] for h in saved["history"]] == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # epoch 2's temporary file removed


class _Flaky:
    """An MlflowClient whose log_batch fails while ``down`` is set (a tracking outage)."""

    def __init__(self, client):
        self.client, self.down = client, True

    def log_batch(self, *args, **kwargs):
        if self.down:
            raise ConnectionError("tracking is down")
        return self.client.log_batch(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_epochs_buffered_by_a_fenced_trial_are_dropped_never_sent(mlflow_client, tracking_uri, parent):
    experiment = mlflow_client.get_run(parent).info.experiment_id
    run_id = tracking.ensure_child_run(mlflow_client, experiment, parent, "k", "t", {})
    lost = []

    def guard() -> bool:
        if lost:
            raise LeaseLost("taken over")
        return True

    flaky = _Flaky(mlflow_client)
    logger = tracking.TrialLogger(flaky, run_id, guard=guard)
    assert not logger.log_metrics({"test_acc": 0.5}, step=1)  # buffered through the outage
    assert logger.pending == 1
    flaky.down, lost[:] = False, [True]  # the store is back, and another driver holds the sweep
    with pytest.raises(LeaseLost):
        logger.flush(wait_s=0)
    assert logger.discard() == 1 and logger.pending == 0
    assert mlflow_client.get_metric_history(run_id, "test_acc") == []


def test_the_trials_of_one_process_share_the_fence_of_their_lease():
    """A reused Ray actor's next trial trusts what the last one saw of the heartbeat instead of
    waiting up to a heartbeat again, and no polling thread is left behind per trial."""
    from sweeper.driver.context import SweepContext
    from sweeper.record.store import TrackingStore

    def context(token: str | None, parent: str = "p1") -> SweepContext:
        return SweepContext(store=TrackingStore.parse("sqlite:////tmp/shared-fence.db"), experiment_id="1",
                            parent_run_id=parent, trials_root="/tmp/trials", lease_token=token)

    first = context("driver-a").fence()
    assert context("driver-a").fence() is first
    assert context("driver-b").fence() is not first  # another driver's lease is another fence
    assert context("driver-a", parent="p2").fence() is not first
    assert context(None).fence() is None  # sweeper train takes no lease
