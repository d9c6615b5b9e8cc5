"""An array of trials, tracked: what runs inside the one Ray trial that trains an array (issue 21).

Per member, exactly what ``sweeper.driver.worker.run_tracked_trial`` does for a solo trial: its
own child run (found by key), attempts, device, its own keyed checkpoint folder, the epochs a
checkpoint holds logged first, each epoch logged with ``step=epoch``, the final metrics, the
checkpoint and gamma artifacts, then its end state. What the array adds: the child run's
``sweeper.array`` tag, one ``trainables.array.run_array`` call for all members, and one
``tune.report`` per member per epoch carrying that member's ``trial_key`` (the driver's callback
turns it back into the member's line; Tune sees one trial). A member whose run is already done
(finished in an earlier attempt of this array) is left out: it is never trained again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from sweeper.core.states import DONE
from sweeper.core import settings
from sweeper.driver import worker
from sweeper.driver.lease import Fence, LeaseLost
from sweeper.driver.worker import (CheckpointStore, SweepContext, _log_final, _log_saved_history,
                                   _set_aside_unusable_checkpoint, open_trial_logger)
from sweeper.plan.payload import TrialPayload
from sweeper.record import names, system_metrics, tracking, trial_record
from sweeper.record.trial_record import state_of
from trainables.names import FINAL_METRICS


class _Member:
    """One member's tracking: its logger, checkpoint store and the report ``run_array`` calls."""

    def __init__(self, ctx: SweepContext, payload: TrialPayload, node_id: str, array: str,
                 tune_report: Callable[[dict], None] | None, fence: Fence | None):
        from sweeper.plan.measure import trial_device

        self.ctx, self.payload, self.node_id, self.tune_report, self.fence = ctx, payload, node_id, tune_report, fence
        self.logger = open_trial_logger(ctx, payload, node_id, fence)
        run = self.logger.client.get_run(self.logger.run_id)
        self.done = state_of(run) in DONE
        self.store: CheckpointStore | None = None
        if self.done:
            return
        self.attempt = int(run.data.tags.get(names.TAG_ATTEMPTS, "0")) + 1
        self.logger.set_tags({names.TAG_ATTEMPTS: self.attempt, names.TAG_ARRAY: array,
                              names.TAG_DEVICE: trial_device(payload.config)})
        self.store = CheckpointStore(ctx.trials_root, payload.key)
        _set_aside_unusable_checkpoint(self.store, payload, self.logger)
        _log_saved_history(self.store, self.logger)
        self.first_epoch_seen = False
        self.last_epoch = int(payload.config["train"]["epochs"])
        self.deferred: list[dict] = []

    def report(self, metrics: dict, checkpoint: Path | None) -> None:
        epoch = int(metrics["epoch"])
        if not self.first_epoch_seen:
            self.first_epoch_seen = True
            self.logger.log_metrics({names.METRIC_START_EPOCH: epoch}, step=self.attempt)
        if checkpoint is not None:
            if self.store.remote and self.fence is not None:
                self.fence()  # the upload is where a remote checkpoint is written
            self.store.upload()  # before anything that may stop this process
            worker._checkpoint_stored(self.ctx, self.payload, epoch, self.fence)
        worker._log_epoch(self.logger, metrics)  # looked up at the call: the tests' hooks wrap it
        if self.tune_report is None:
            return
        if epoch == self.last_epoch:
            self.deferred.append(metrics)  # reported once its final results are in MLflow
        else:
            self.tune_report({**metrics, "trial_key": self.payload.key})

    def failed(self, error: BaseException) -> None:
        if not isinstance(error, SystemExit):
            self.logger.set_tags(trial_record.error_tags(error))
        self.logger.flush(wait_s=10)

    def finish(self, final: dict) -> None:
        _log_final(self.logger, final, self.store.local_dir, self.node_id)
        if self.tune_report is not None:
            last = self.deferred[-1] if self.deferred else {"epoch": final.get("epochs_completed", self.last_epoch),
                                                            "test_acc": final.get("final_test_acc")}
            self.tune_report({**last, **{k: v for k, v in final.items() if k in FINAL_METRICS},
                              "trial_key": self.payload.key})

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def run_tracked_array(ctx: SweepContext, payloads: list[TrialPayload], array: str, node_id: str, *,
                      cpus: float, tune_report: Callable[[dict], None] | None = None) -> dict[str, dict]:
    """Train ``payloads`` as one array with per-member tracking; final metrics by trial key (members
    done before this attempt are left out)."""
    import torch

    from trainables.array import run_array

    torch.set_num_threads(max(1, int(cpus)))
    os.environ.update(ctx.tracking_env)
    settings.apply(ctx.settings)  # the driver's, not this node's
    tracking.no_run_links()
    fence = ctx.fence()
    if fence is not None:
        fence()  # before the first write: a retried array of a driver that lost the sweep stops here
    members: list[_Member] = []
    try:
        for payload in payloads:
            members.append(_Member(ctx, payload, node_id, array, tune_report, fence))
        todo = [m for m in members if not m.done]
        finals: dict[str, dict] = {}
        if todo:
            try:
                with system_metrics.monitored([m.logger.run_id for m in todo], ctx.tracking_uri):
                    results = run_array([m.payload.config for m in todo], [m.report for m in todo],
                                        [m.store.local_dir for m in todo], fence=fence)
                if fence is not None:
                    fence()  # the members' results go in under the same lease
            except LeaseLost:
                for member in todo:  # never sent later, by anyone: the new holder logs these epochs
                    member.logger.discard()
                raise
            except BaseException as e:  # SystemExit too: Ray stops a trial that way
                for member in todo:
                    member.failed(e)
                raise
            first_error: BaseException | None = None
            for member, final in zip(todo, results):
                try:  # every member's bookkeeping, even if one member's fails
                    member.finish(final)
                    finals[member.payload.key] = final
                except Exception as e:  # noqa: BLE001 - raised below, after the others
                    first_error = first_error or e
            if first_error is not None:
                raise first_error
        return finals
    finally:
        for member in members:
            member.close()
