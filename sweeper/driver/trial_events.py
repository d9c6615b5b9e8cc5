"""The driver's Ray Tune callback: every trial event feeds the live view and the parent-run
dashboard (sweeper.views.progress), each step of the loop may rewrite the run index (index_refresh),
and a trial's end is settled here, where only the driver can know it: a trial the scheduler
stopped early, and a trial that failed for good after all its retries. A driver that no longer
holds the sweep's lease (``fence``) settles, prints and writes nothing: its trials were stopped
by their own fences and belong to the new holder."""

from __future__ import annotations

import logging

from sweeper.core.logs import cause
from sweeper.core.states import FAILED
from sweeper.driver.index_refresh import IndexRefresh
from sweeper.driver.lease import LeaseLost
from sweeper.core.trial import Trial
from sweeper.plan.arrays import members_of
from sweeper.plan.planning import trial_at
from sweeper.record import names
from sweeper.record.trial_record import COMPLETED, ERRORED, PendingEnds, settle_driver_end

log = logging.getLogger(__name__)


def progress_callback(*args, **kwargs):
    """A ray.tune.Callback built on first use, so importing this module does not import Ray."""
    from ray import tune

    klass = type("SweepProgress", (TrialEnds, tune.Callback), {})
    return klass(*args, **kwargs)


class TrialEnds:
    """Feeds the live view and the parent-run dashboard (sweeper.views.progress) and settles what only
    the driver can know: a trial the scheduler stopped early, and a trial that failed for good
    after all its retries."""

    def __init__(self, client, experiment_id: str, grid: dict, name_axes: list[str], total: int,
                 sweep: str = "sweep", parent_run_id: str | None = None, done_before=(),
                 pending_ends: str | None = None, fence=None, arrays: dict | None = None, waiting: str = ""):
        self.name_axes = name_axes
        self.fence = fence
        self.pending = PendingEnds(pending_ends) if pending_ends else None  # <storage>/<sweep>/pending-ends
        self.arrays = arrays  # array id -> its members (sweeper.plan.arrays): one Ray trial, several trials
        self.settled: set[str] = set()  # array members already ended (at their final report)
        self.client = client
        self.experiment_id = experiment_id
        self.grid = grid
        self.finished = 0
        self.keys: set[str] = set()
        from sweeper.views.progress import SweepMonitor

        holds = fence.holds if fence is not None else None
        self.monitor = SweepMonitor.start(client, parent_run_id, sweep, grid, total, done_before,
                                          holds=holds)
        self.monitor.state.waiting = waiting  # the preflight's reason to wait for a node, if any
        self.index = IndexRefresh(client, experiment_id, parent_run_id, holds=holds) if parent_run_id else None
        self.trials: dict[str, Trial] = {}

    def _trial_of(self, trial) -> Trial:
        if trial.trial_id not in self.trials:
            self.trials[trial.trial_id] = trial_at(trial.config, self.grid, self.name_axes)
        return self.trials[trial.trial_id]

    def _trials_of(self, trial) -> list[Trial]:
        """The trials one Ray trial trains: itself, or an array's members (counted one by one)."""
        keys = members_of(trial.config, self.arrays)
        if keys is None:
            return [self._trial_of(trial)]
        return [self.grid[key] for key in keys]

    def setup(self, **info):
        self.monitor.open()

    def on_trial_start(self, iteration, trials, trial, **info):
        for p in self._trials_of(trial):
            self.monitor.started(p.key, p.name, int(p.config["train"]["epochs"]))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        members = members_of(trial.config, self.arrays)
        if members is not None and result.get("trial_key") in members:  # one member's epoch
            p = self.grid[result["trial_key"]]
        else:
            p = self._trial_of(trial)
        self.monitor.result(p.key, p.name, result, int(p.config["train"]["epochs"]))
        if members is not None and "final_test_acc" in result:  # its final report: it ended, its array goes on
            self._settle_trial(trial, p, failed=False)

    def on_step_end(self, iteration, trials, **info):
        self.monitor.tick()
        if self.index is not None:
            self.index.maybe_write()

    def on_experiment_end(self, trials, **info):
        self.monitor.close()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._settle(trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._settle(trial, failed=True)

    def _settle(self, trial, failed: bool) -> None:
        self.finished += 1  # Ray trials: tuner.fit() returns one result per array too
        members = members_of(trial.config, self.arrays)
        for one in ([trial_at(trial.config, self.grid, self.name_axes)] if members is None
                    else [self.grid[key] for key in members]):
            self._settle_trial(trial, one, failed)

    def _settle_trial(self, trial, one: Trial, failed: bool) -> None:
        if one.key in self.settled:
            return
        if self.arrays:
            self.settled.add(one.key)
        self.keys.add(one.key)
        if self.fence is not None:
            try:
                verified = self.fence.verified()
            except LeaseLost:
                return  # not this driver's sweep any more: the new holder settles it, this one says nothing
            if not verified:  # the store cannot be read and the lease is too old to trust: write nothing
                self.monitor.ended(one.key, one.name, FAILED if failed else "ended", None)
                return
        # the state write first, retried and kept in PendingEnds until MLflow has it; never
        # inside the display code below, whose failures must not lose a trial's end
        state, run = settle_driver_end(self.client, self.experiment_id, one.key,
                                       ERRORED if failed else COMPLETED, self.pending, name=one.name)
        try:
            self._show_end(trial, one, failed, state, run)
        except Exception as e:  # noqa: BLE001 - progress output must never stop the sweep (logged)
            log.warning("could not show the end of trial %s (%s)", one.name, cause(e))

    def _show_end(self, trial, one: Trial, failed: bool, state: str | None, run) -> None:
        if state is None:
            state = FAILED if failed else "ended"  # "ended": MLflow could not be read to say how
        acc = run.data.metrics.get("final_test_acc", run.data.metrics.get("test_acc")) if run is not None else None
        notes = trial_notes(run)
        where = f"  ({notes.get('error') or f'error: {trial.path}'})" if failed else ""
        self.monitor.ended(one.key, one.name, state, acc, where)
        if notes.get("set_aside"):
            self.monitor.say(f"      its checkpoint was unusable and was set aside, trained from scratch: {notes['set_aside']}")


def trial_notes(run) -> dict[str, str]:
    """What a child run says went wrong: its last error, a checkpoint set aside (either absent)."""
    tags = run.data.tags if run is not None else {}
    notes = {"error": tags.get(names.TAG_LAST_ERROR), "set_aside": tags.get(names.TAG_CHECKPOINT_SET_ASIDE)}
    return {k: v for k, v in notes.items() if v}
