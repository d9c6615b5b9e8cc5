"""`sweeper run`: a spec becomes Ray Tune trials tracked in MLflow, as four phases of one ``Sweep``.

- prepare: the spec and its trials, the checks of where it runs, the store, the sweep's
  experiment and parent run, the lease;
- plan: the child runs read once (after the lease: no other driver changes them from then on),
  the ends an earlier driver kept (``trial_record.settle_pending``), the study version, what
  remains;
- execute: Ray started or attached, the signal handlers, Tune's fit (``tune_loop``);
- close: the exit code, the run index, the parent run.

A dry run is prepare and plan, reading only: no store, folder, parent run or lease is made.

Resume design (the simplest that survives a driver killed with SIGKILL and works with s3://):

- MLflow is the record of what is done. A trial whose child run (found by ``sweeper.trial_key``)
  is done (``sweeper.record.trial_record``: finished, diverged or stopped early) is never run again.
- Every other trial goes into a fresh ``Tuner`` (``sweeper.driver.tune_loop``).
- Each trial keeps its one checkpoint folder at ``<storage>/<sweep>/trials/<trial_key>/``
  (``sweeper.driver.checkpoint_store.CheckpointStore``); ``run_trial`` resumes from it by itself.
  So a worker that crashed (Ray retries it up to ``max_failures`` times, FailureConfig), a driver
  that was killed, and a Ctrl-C all continue from the last checkpoint, not from scratch.
- Logging is idempotent per (metric, step), so epochs trained again after a crash between two
  checkpoints do not duplicate metric points.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from sweeper.core import logs, settings
from sweeper.core.errors import SweepError
from sweeper.core.states import DONE, EXIT_INTERRUPTED, EXIT_LEASE_LOST, EXIT_OK, PENDING
from sweeper.core.trial import Trial
from sweeper.driver import cluster_address, driver_exit, ray_setup, tune_loop
from sweeper.driver import preflight as cluster_preflight
from sweeper.driver.context import SweepContext
from sweeper.driver.hold import DriverHold
from sweeper.driver.lease import LeaseLost
from sweeper.driver.term_close import TermClose, interrupt_running
from sweeper.plan import arrays as plan_arrays
from sweeper.plan.planning import expected_trials
from sweeper.plan.search import searcher
from sweeper.record import dashboard, links, preflight, readback, retrying, run_index, tracking, versions
from sweeper.record.store import TrackingStore
from sweeper.record.trial_record import PendingEnds, settle_pending, state_of
from sweeper.views import plan_preview, terminal

log = logging.getLogger(__name__)


def storage_root(storage: str) -> str:
    """Where a sweep's folders go: a URI as given, a local path absolute (Ray's workers run in
    other folders); ``sweeper.api`` names a trial's folder with it too."""
    if "://" in storage:
        return storage.rstrip("/")
    return str(Path(storage).expanduser().resolve())


def open_tracking(spec, store: TrackingStore, *, create: bool):
    """(client, experiment id, parent run id) of the sweep in ``store``; without ``create``, only
    what is there (ids None when absent)."""
    client = store.client()
    if not create:
        experiment = client.get_experiment_by_name(spec.name)
        return client, (experiment.experiment_id if experiment else None), None
    experiment_id = tracking.ensure_experiment(client, spec.name, store)
    parent = tracking.ensure_parent_run(client, experiment_id, spec.name, spec.text, spec.spec_hash)
    dashboard.prepare(client, experiment_id, parent, spec, spec.sampled_trial_count() or len(spec.trials()))
    return client, experiment_id, parent


def run_command(spec_path, *, address: str | None = None, tracking_uri: str | None = None,
                storage: str = "./sweeper_results", dry_run: bool = False, handle_signals: bool = True,
                ray_log: bool = True) -> int:
    """The sweep of ``spec_path`` (a path or a ``Spec``); its exit code. The CLI's ways are the
    defaults: SIGINT/SIGTERM handled (driver_exit) and Ray's output sent to the log file
    (views.terminal). ``sweeper.run`` turns both off: no handler of ours, the caller's file
    descriptors left alone, and a driver failure raised after the bookkeeping instead of
    becoming exit 1 (its lines are kept by ``terminal.kept``, not printed)."""
    from sweeper.spec import Spec, load_spec

    spec = spec_path if isinstance(spec_path, Spec) else load_spec(spec_path)
    # the driver's log file, once the spec names it, outlives the lease (its release logs too)
    with contextlib.ExitStack() as log_file, DriverHold() as hold:  # one driver per sweep; the parent run never stays RUNNING
        sweep = Sweep(spec, hold, log_file, address=address, tracking_uri=tracking_uri, storage=storage,
                      handle_signals=handle_signals, ray_log=ray_log)
        sweep.prepare(dry_run)
        plan = sweep.plan(write=not dry_run)
        sweep.say_plan(plan)
        if dry_run:
            sweep.say_trials(plan)
            sweep.say_preview(plan)
            return EXIT_OK
        return sweep.execute(plan)


@dataclass
class Plan:
    """What this run of the sweep has to do, read once after the lease."""

    trials: list[Trial]  # every trial the spec defines up front
    remaining: list[Trial]  # those not done
    states: dict[str, str]  # trial key -> state, as read (an end kept for a later write counts)
    done_before: list[tuple]  # (key, name, state, final_test_acc) of the done ones, for the live view
    samples_left: int  # samples a searcher still draws while the sweep runs (Optuna)
    runs: dict  # trial key -> its child run, as read


class Sweep:
    """One `sweeper run` of ``spec`` under ``hold`` (``DriverHold``: the lease, the parent run
    never left RUNNING); ``log_file`` keeps the driver's log file open until the end."""

    def __init__(self, spec, hold: DriverHold, log_file: contextlib.ExitStack, *, address: str | None,
                 tracking_uri: str | None, storage: str, handle_signals: bool = True, ray_log: bool = True):
        self.spec, self.hold, self.log_file = spec, hold, log_file
        self.address, self.tracking_uri, self.storage = address, tracking_uri, storage
        self.handle_signals, self.ray_log = handle_signals, ray_log
        self.root = storage_root(storage)
        self.log_path = terminal.log_path_for(self.root, spec.name)
        self.pending = PendingEnds(f"{self.root}/{spec.name}/pending-ends")
        self.search = searcher(spec)
        self.trials: list[Trial] = []
        self.uri = ""
        self.client = self.experiment_id = self.parent_id = None
        self.started_early = False  # Ray, started while the lease settled (ray_setup.starts_with_lease)
        self.index_runs, self.read_at_ms = None, None  # the child runs the last index is written from
        self.signals = driver_exit.DriverSignals()
        self.closing: TermClose | None = None
        self.failure: BaseException | None = None  # raised after the bookkeeping (from Python)

    # --- prepare ----------------------------------------------------------------------------

    def prepare(self, dry_run: bool) -> None:
        """The spec's trials, the checks before anything is written, the store, the sweep's
        experiment and parent run, and the lease on it (a dry run: the store only read, if any)."""
        spec = self.spec
        self.trials = expected_trials(spec)
        self.store = TrackingStore.resolve(self.tracking_uri, spec.tracking.uri)  # the one reading of it
        self.uri = self.store.uri
        if not dry_run:  # refuses what the cluster cannot reach, then probes a ray:// head
            cluster_address.check_address(self.address, self.storage, self.tracking_uri, spec.tracking.uri,
                                          store=self.store)
        preflight.check_tracking_location(self.store)
        preflight.check_storage(self.storage, create=not dry_run)  # before Ray, before MLflow is written
        if dry_run:
            self._read_store()
            return
        if self.ray_log:  # the CLI: sweeper's log records go beside Ray's output (from Python: the caller's logging)
            self.log_file.enter_context(logs.to_file(self.log_path))
        preflight.create_sqlite_store_once(self.store)
        self.client, self.experiment_id, self.parent_id = open_tracking(spec, self.store, create=True)
        # the first record: it makes the driver's log file, which must not exist if the store cannot be reached
        log.info("startup: %d trials planned, store, experiment and parent run ready", len(self.trials))  # bench_sweep_overhead's split
        take = functools.partial(self.hold.take, self.client, self.experiment_id, self.parent_id, spec.name)
        self.started_early = ray_setup.starts_with_lease(self.address, self.client, self.parent_id)
        self.parent_id = (ray_setup.take_while_ray_starts(take, self.log_path, self.ray_log, self.log_file)
                          if self.started_early else take())

    def _read_store(self) -> None:
        """A dry run's store: read when it is there; a store that is not is a sweep with no runs
        yet (opening it would create it)."""
        try:
            preflight.check_store_exists(self.store, self.spec.name)
        except SweepError:
            return
        self.client, self.experiment_id, self.parent_id = open_tracking(self.spec, self.store, create=False)

    # --- plan -------------------------------------------------------------------------------

    def plan(self, write: bool) -> Plan:
        """The child runs read once; the ends an earlier driver kept written (``write``), the
        study version recorded and the run index written from them; what remains."""
        read_at_ms = run_index.now_ms()
        runs = (run_index.child_runs(self.client, self.experiment_id, self.parent_id)
                if self.experiment_id is not None else [])
        by_key = run_index.by_trial_key(runs)
        log.info("startup: %d child runs read", len(runs))
        # ends an earlier driver saw but MLflow did not take: written now, before anything is planned
        fresh, unwritten = settle_pending(self.client, by_key, self.pending, write=write)
        if fresh:
            runs = [fresh.get(r.info.run_id, r) for r in runs]
            by_key = run_index.by_trial_key(runs)
        if write:
            change = versions.apply(self.client, self.parent_id, self.spec, self.trials, by_key)
            for line in change.lines(self.spec.name):
                terminal.say(line)
            self.index_runs, self.read_at_ms = runs, read_at_ms
            self._write_run_index()  # with the version tags just written
        states = {key: state_of(run) for key, run in by_key.items()}
        states.update(unwritten)  # a stop MLflow has not taken yet is still a stop: never trained again
        done_before = [(key, run.info.run_name or key, states[key], run.data.metrics.get("final_test_acc"))
                       for key, run in by_key.items() if states[key] in DONE]
        return Plan(self.trials, [t for t in self.trials if states.get(t.key) not in DONE], states, done_before,
                    self.search.samples_left(self.spec, self.trials, states), by_key)

    def say_plan(self, plan: Plan) -> None:
        spec, drawn = self.spec, self.search.draws_in_run
        terminal.say(f"{spec.name}: {len(plan.trials)} trials, {len(plan.trials) - len(plan.remaining)} done, "
                     f"{len(plan.remaining)} to run"
                     + (f", {plan.samples_left} {spec.search.algorithm} samples to draw" if drawn else "")
                     + f"; tracking {self.uri}; storage {self.root}")
        for line in links.lines(self.uri, self.experiment_id, self.parent_id):
            terminal.say(line)

    def say_trials(self, plan: Plan) -> None:
        """A dry run's table: each planned trial, its state, the array it would train in."""
        # what resources.array would group, if fixed, at the epochs each trial has done
        in_array = plan_arrays.array_of(self.spec, plan.remaining, readback.epochs_done(plan.runs))
        if not self.search.draws_in_run:
            for i, t in enumerate(plan.trials):
                terminal.say(f"  {i:>4}  {t.name:<40} {t.key}  {plan.states.get(t.key, PENDING)}  "
                             f"{in_array.get(t.key, '')}".rstrip())

    def say_preview(self, plan: Plan) -> None:
        """A dry run's summary: trials kept, new and gone, resources, the estimate, and the
        preflight as far as it is known without a cluster (this machine's, for a local run)."""
        local = not self.address and not os.environ.get("RAY_ADDRESS")
        checks = cluster_preflight.dry_run_lines(self.spec, local)
        # the new trials are in the table above, unless a searcher draws them while the run goes
        for line in plan_preview.describe_plan(self.spec, plan.runs, preflight=checks,
                                               name_new=self.search.draws_in_run):
            terminal.say(line)

    # --- execute ----------------------------------------------------------------------------

    def execute(self, plan: Plan) -> int:
        """Train what remains; the exit code, once the sweep is closed."""
        if not plan.remaining and not plan.samples_left:
            self._end_parent(EXIT_OK)  # the index was written a moment ago
            terminal.say("nothing to do: every trial is finished")
            return EXIT_OK
        ctx = SweepContext(store=self.store, experiment_id=self.experiment_id, parent_run_id=self.parent_id,
                           trials_root=f"{self.root}/{self.spec.name}/trials",
                           cpus_per_trial=float(self.spec.resources.cpu), tracking_env=tracking.credentials_from_env(),
                           lease_token=self.hold.token, sweep=self.spec.name, settings=settings.captured())
        self.client.update_run(self.parent_id, status="RUNNING")
        self.closing = TermClose(self.client, self.experiment_id, self.parent_id, self.hold.lease,
                                 driver_exit.INTERRUPTED_LINE)
        if self.handle_signals:
            self.signals.on_term = self.closing.start  # a SIGKILL follows a SIGTERM: the record is put right first
            self.signals.install()
        self.hold.lease.on_lost = self.signals.request_stop  # the heartbeat found another holder: stop Tune
        try:
            code = self._train(ctx, plan)
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every end gets its name, the log its traceback (_failed)
            code = self._failed(e)
        finally:
            self.signals.restore()
        return self.close(code)

    def _train(self, ctx: SweepContext, plan: Plan) -> int:
        with terminal.ray_output(self.log_path, self.ray_log):
            started_ray = ray_setup.init_ray(self.address, quiet=not self.ray_log) or self.started_early
        if self.handle_signals:
            self.signals.install()  # ray.init put a SIGTERM handler of its own in place
        try:
            if self.taken_over():  # Ray takes seconds to start: is the sweep still ours?
                raise self.hold.lost
            waiting = self._preflight(plan)
            keys, interrupted = tune_loop.fit_here_or_on_head(
                self.address, self.signals, self.spec, ctx, self.client, plan.remaining, plan.samples_left,
                self.root, plan.done_before, self.handle_signals, self.ray_log, lease_fence=self.hold.lease.fence,
                waiting=waiting or "", runs=plan.runs)
        finally:
            if started_ray:
                import ray

                ray.shutdown()
        if self.closing.done():
            return EXIT_INTERRUPTED
        if self.taken_over():
            return EXIT_LEASE_LOST
        return self._fit_exit(keys, interrupted)

    def _preflight(self, plan: Plan) -> str | None:
        """What the cluster lacks, checked once Ray is up and before any trial or child run: a
        trial no node can hold, a node without the data set, storage or tracking a node cannot
        reach end the run here (exit 2, one line); nodes that can still come are waited for,
        with the reason returned for the progress lines."""
        if not plan.remaining and not plan.samples_left:
            return None
        local = not self.address and not os.environ.get("RAY_ADDRESS")  # a Ray of our own: this machine
        waiting = cluster_preflight.before_trials(self.spec, self.root, self.uri, local=local)
        if waiting:
            terminal.say(f"waiting: {waiting}")
        return waiting

    def _fit_exit(self, keys: set[str], interrupted: bool) -> int:
        """The exit code of a fit that returned, from the child runs read once more."""
        client = self.client
        self.read_at_ms = run_index.now_ms()
        runs = retrying.through_outage(  # the one read after training
            lambda: run_index.child_runs(client, self.experiment_id, self.parent_id),
            "reading the trials after training", settings.SETTLE_WAIT_S.get())
        # ends MLflow did not take during the run: one more try (quietly: the exit's last line says what is left)
        fresh, unwritten = settle_pending(client, run_index.by_trial_key(runs), self.pending, level=logging.INFO)
        self.index_runs = [fresh.get(r.info.run_id, r) for r in runs]
        # without our handlers only Ray Tune's own SIGINT handler stops a fit early
        return driver_exit.exit_code(client, run_index.by_trial_key(self.index_runs), keys, interrupted,
                                     signalled=self.signals.received or not self.handle_signals,
                                     unwritten=unwritten, kept_in=self.pending.root)

    def _failed(self, e: BaseException) -> int:
        """The exit code of a driver that stopped on ``e``."""
        if isinstance(e, LeaseLost) and self.hold.lost is None:
            self.hold.lease.lost = e
        if not self.handle_signals and isinstance(e, KeyboardInterrupt):
            self.signals.signum = self.signals.signum or signal.SIGINT  # Python's own SIGINT handler: an interrupt
        self.index_runs = None  # read again for the index: what the failure left is not known here
        self.failure = None if self.handle_signals else e
        if self.closing.done():
            return EXIT_INTERRUPTED
        if self.taken_over():
            return EXIT_LEASE_LOST
        log.info("the driver stopped on %s", logs.cause(e), exc_info=not isinstance(e, KeyboardInterrupt))
        code = driver_exit.failure_exit(e, self.signals)
        self._kill_running_children()
        return code

    def taken_over(self) -> bool:
        """Whether another driver has taken the sweep over: what the heartbeat found, else one
        read of the parent run now, recorded on the lease (the heartbeat and the hold see it).
        Then this driver stops and writes nothing more."""
        lease = self.hold.lease
        if lease is not None and lease.lost is None:
            try:
                lease.fence.verified()
            except LeaseLost as e:
                lease.lost = e
        return self.hold.lost is not None

    def _kill_running_children(self) -> None:
        """After a driver failure: child runs it left RUNNING become KILLED (they resume next time)."""
        try:
            with tracking.fast_fail_http():
                interrupt_running(self.client, self.experiment_id)
        except Exception as e:  # noqa: BLE001 - tracking may be what failed; the next run sorts it out (logged)
            log.warning("could not mark the trials left running as interrupted (%s); the next run does",
                        logs.cause(e))

    # --- close ------------------------------------------------------------------------------

    def close(self, code: int) -> int:
        """The sweep's last word: the run index and the parent run ended, unless a SIGTERM's close
        or another driver owns them now; from Python, the driver's failure raised after."""
        if self.closing is not None and self.closing.done():
            return EXIT_INTERRUPTED  # closed at the SIGTERM, lease released: nothing more is this driver's
        if self.hold.lost is not None:
            # another driver owns the sweep, its trials and its parent run now: write nothing more
            terminal.say(str(self.hold.lost), err=True)
            return EXIT_LEASE_LOST
        self._write_run_index()  # the sweep's last word on its trials
        self._end_parent(code)
        if self.failure is not None:
            raise self.failure  # from Python: the error itself, after the bookkeeping the CLI does too
        return code

    def _write_run_index(self) -> None:
        """The run index (``sweeper.record.run_index``) of this sweep, so that status and report read
        only what changed since. It only saves time: a failure to write it is not the sweep's."""
        try:
            with tracking.fast_fail_http():
                run_index.write_index(self.client, self.experiment_id, self.parent_id, self.index_runs,
                                      self.read_at_ms)
        except Exception as e:  # noqa: BLE001 - readers fall back to listing every run (logged)
            log.info("could not write the run index of parent run %s (%s); readers list every run",
                     self.parent_id, logs.cause(e))

    def _end_parent(self, code: int) -> None:
        status = {EXIT_OK: "FINISHED", EXIT_INTERRUPTED: "KILLED"}.get(code, "FAILED")  # bad input too
        retrying.through_outage(lambda: self.client.set_terminated(self.parent_id, status),
                                f"ending parent run {self.parent_id}", settings.SETTLE_WAIT_S.get())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_command(sys.argv[1]))
