"""`sweeper run` and `sweeper train`: a spec becomes Ray Tune trials tracked in MLflow.

Resume design (the simplest that survives a driver killed with SIGKILL and works with s3://):

- MLflow is the record of what is done. A trial whose child run (found by ``sweeper.trial_key``)
  is done (sweeper.trial_record: finished, diverged or stopped early) is never run again.
- Every other trial goes into a fresh ``Tuner`` (one grid point per remaining trial). We do not
  use ``Tuner.restore``: its pickled experiment state ties a resume to the exact param space of
  the first run, while our trial identities already live in MLflow and in the storage layout.
- Each trial keeps its one checkpoint folder at ``<storage>/<sweep>/trials/<trial_key>/``
  (sweeper.worker.CheckpointStore); ``run_trial`` resumes from it by itself. So a worker that
  crashed (Ray retries it up to ``max_failures`` times, FailureConfig), a driver that was killed,
  and a Ctrl-C all continue from the last checkpoint, not from scratch.
- Logging is idempotent per (metric, step), so epochs trained again after a crash between two
  checkpoints do not duplicate metric points.

Search (planned in sweeper.planning): ``random`` is expanded in the driver, with a generator seeded by the spec hash, so
the sampled trials are concrete, have stable keys and resume like grid trials. ``optuna`` runs
Ray Tune's ``OptunaSearch`` over the grid points (a categorical) and the sampled axes; a sampled
trial's key is computed from its resolved config inside the trial, and trials left unfinished by
an earlier run are handed back to Optuna as ``points_to_evaluate`` so they resume by key.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import sys
from pathlib import Path

from sweeper.core import logs, settings
from sweeper.driver import cluster_address, driver_exit, ray_setup
from sweeper.record import child_run, dashboard, links, preflight, retrying, run_index, tracking, versions
from sweeper.views import terminal
from sweeper.driver.hold import DriverHold
from sweeper.driver.lease import LeaseLost
from sweeper.driver.ray_setup import array_points as _array_points, init_ray as _init_ray, scheduler as _scheduler
from sweeper.plan import arrays as plan_arrays
from sweeper.plan.planning import (algorithm, expected_payloads, optuna_samples_left, payload_from_config, payload_of,
                              tune_domains, unfinished_optuna_points)
from sweeper.core.states import (DONE, EXIT_INTERRUPTED, EXIT_LEASE_LOST, EXIT_OK, PENDING)
from sweeper.driver.term_close import TermClose, interrupt_running
from sweeper.driver.trial_events import progress_callback
from sweeper.record.trial_record import PendingEnds, settle_pending, state_of
from sweeper.driver.worker import SweepContext, run_tracked_trial
from sweeper.plan.payload import TrialPayload, payload_dict

log = logging.getLogger(__name__)


# --- tracking set-up shared by run and train -------------------------------------------------


def _prepare_tracking(spec, uri: str, *, create: bool):
    """The store at ``uri`` (resolved once by the caller), the sweep's experiment and parent run."""
    client = tracking.connect(uri)
    if not create:
        experiment = client.get_experiment_by_name(spec.name)
        return uri, client, (experiment.experiment_id if experiment else None), None
    experiment_id = tracking.ensure_experiment(client, spec.name, uri)
    parent = tracking.ensure_parent_run(client, experiment_id, spec.name, spec.text, spec.spec_hash)
    dashboard.prepare(client, experiment_id, parent, spec, spec.sampled_trial_count() or len(spec.trials()))
    return uri, client, experiment_id, parent


def _spec_tracking_uri(spec) -> str | None:
    return spec.tracking.uri


def _storage_root(storage: str) -> str:
    if "://" in storage:
        return storage.rstrip("/")
    return str(Path(storage).expanduser().resolve())


def _pending_ends(storage: str, sweep: str) -> PendingEnds:
    """Trial ends the driver saw and MLflow has not confirmed (sweeper.record.trial_record)."""
    return PendingEnds(f"{_storage_root(storage)}/{sweep}/pending-ends")


storage_root = _storage_root  # public: sweeper.api names a trial's folder as the driver does


def _cpus(spec) -> float:
    return float(spec.resources.cpu)


def _gpus(spec) -> float:
    return float(spec.resources.gpu)


# --- sweeper run ---------------------------------------------------------------------------


def run_command(spec_path, *, address: str | None = None, tracking_uri: str | None = None,
                storage: str = "./sweeper_results", dry_run: bool = False, handle_signals: bool = True,
                ray_log: bool = True) -> int:
    """The sweep of ``spec_path`` (a path or a ``Spec``); its exit code. The CLI's ways are the
    defaults: SIGINT/SIGTERM handled (driver_exit) and Ray's output sent to the log file
    (views.terminal). ``sweeper.run`` turns both off: no handler of ours, the caller's file
    descriptors left alone, and a driver failure raised after the bookkeeping instead of
    becoming exit 1 (its lines are kept by ``terminal.kept``, not printed)."""
    # the driver's log file, once the spec names it, outlives the lease (its release logs too)
    with contextlib.ExitStack() as log_file, DriverHold() as hold:  # one driver per sweep; the parent run never stays RUNNING
        return _run_held(hold, spec_path, address=address, tracking_uri=tracking_uri, storage=storage,
                         dry_run=dry_run, log_file=log_file, handle_signals=handle_signals, ray_log=ray_log)


def _run_held(hold: DriverHold, spec_path, *, address: str | None, tracking_uri: str | None,
              storage: str, dry_run: bool, log_file: contextlib.ExitStack, handle_signals: bool = True,
              ray_log: bool = True) -> int:
    from sweeper.spec import Spec, load_spec

    spec = spec_path if isinstance(spec_path, Spec) else load_spec(spec_path)
    trials = expected_payloads(spec)
    if not dry_run:  # refuses what the cluster cannot reach, then probes a ray:// head
        cluster_address.check_address(address, storage, tracking_uri, _spec_tracking_uri(spec))
    uri = tracking.resolve_tracking_uri(tracking_uri, _spec_tracking_uri(spec))
    preflight.check_tracking_location(uri)
    preflight.check_storage(storage, create=not dry_run)  # before Ray, before MLflow is written
    if not dry_run:
        if ray_log:  # the CLI: sweeper's log records go beside Ray's output (from Python: the caller's logging)
            log_file.enter_context(logs.to_file(terminal.log_path_for(_storage_root(storage), spec.name)))
        preflight.create_sqlite_store_once(uri)
    uri, client, experiment_id, parent_id = _prepare_tracking(spec, uri, create=not dry_run)
    # the first record: it makes the driver's log file, which must not exist if the store cannot be reached
    log.info("startup: %d trials planned, store, experiment and parent run ready", len(trials))  # bench_sweep_overhead's split
    started_early = False  # Ray, started while the lease settled (ray_setup.starts_with_lease)
    if not dry_run:
        take = functools.partial(hold.take, client, experiment_id, parent_id, spec.name)
        started_early = ray_setup.starts_with_lease(address, client, parent_id)
        parent_id = (ray_setup.take_while_ray_starts(take, terminal.log_path_for(_storage_root(storage), spec.name),
                                                     ray_log, log_file) if started_early else take())
    # read after the lease: from here on no other driver changes these runs
    read_at_ms = run_index.now_ms()
    runs = run_index.child_runs(client, experiment_id, parent_id) if experiment_id is not None else []
    by_key = run_index.by_trial_key(runs)
    log.info("startup: %d child runs read", len(runs))
    # ends an earlier driver saw but MLflow did not take: written now, before anything is planned
    pending = _pending_ends(storage, spec.name)
    fresh, unwritten = settle_pending(client, by_key, pending, write=not dry_run)
    if fresh:
        runs = [fresh.get(r.info.run_id, r) for r in runs]
        by_key = run_index.by_trial_key(runs)
    if not dry_run:
        change = versions.apply(client, parent_id, spec, trials, by_key)
        for line in change.lines(spec.name):
            terminal.say(line)
        _write_run_index(client, experiment_id, parent_id, runs, read_at_ms)  # with the version tags just written
    states = {key: state_of(run) for key, run in by_key.items()}
    states.update(unwritten)  # a stop MLflow has not taken yet is still a stop: never trained again
    remaining = [t for t in trials if states.get(t.key) not in DONE]
    # what the live view counts as done before this run: (key, name, state, final_test_acc)
    done_before = [(key, run.info.run_name or key, states[key], run.data.metrics.get("final_test_acc"))
                   for key, run in by_key.items() if states[key] in DONE]
    optuna = algorithm(spec) == "optuna"
    sampled_todo = optuna_samples_left(spec, trials, states) if optuna else 0

    done = len(trials) - len(remaining)
    terminal.say(f"{spec.name}: {len(trials)} trials, {done} done, {len(remaining)} to run"
                 + (f", {sampled_todo} optuna samples to draw" if optuna else "")
                 + f"; tracking {uri}; storage {_storage_root(storage)}")
    for line in links.lines(uri, experiment_id, parent_id):
        terminal.say(line)
    if dry_run:
        in_array = plan_arrays.array_of(spec, remaining)  # what resources.array would group, if fixed
        if not optuna:
            for i, t in enumerate(trials):
                terminal.say(f"  {i:>4}  {t.name:<40} {t.key}  {states.get(t.key, PENDING)}  {in_array.get(t.key, '')}".rstrip())
        for line in plan_arrays.describe(spec, remaining):
            terminal.say(line)
        return EXIT_OK
    if not remaining and not (optuna and sampled_todo):
        _close_parent(client, parent_id, EXIT_OK)  # the index was written a moment ago
        terminal.say("nothing to do: every trial is finished")
        return EXIT_OK

    ctx = SweepContext(tracking_uri=uri, experiment_id=experiment_id, parent_run_id=parent_id,
                       trials_root=f"{_storage_root(storage)}/{spec.name}/trials",
                       cpus_per_trial=_cpus(spec), tracking_env=tracking.credentials_from_env(),
                       lease_token=hold.token, sweep=spec.name, settings=settings.captured())
    client.update_run(parent_id, status="RUNNING")
    signals = driver_exit.DriverSignals()
    closing = TermClose(client, experiment_id, parent_id, hold.lease, driver_exit.INTERRUPTED_LINE)
    if handle_signals:
        signals.on_term = closing.start  # a SIGKILL follows a SIGTERM: the record is put right first
        signals.install()
    hold.lease.on_lost = signals.request_stop  # the heartbeat found another holder: stop Tune
    failure: BaseException | None = None
    try:
        with terminal.ray_output(terminal.log_path_for(_storage_root(storage), spec.name), ray_log):
            started_ray = _init_ray(address, quiet=not ray_log) or started_early
        if handle_signals:
            signals.install()  # ray.init put a SIGTERM handler of its own in place
        try:
            if _lease_lost(hold):  # Ray takes seconds to start: is the sweep still ours?
                raise hold.lost
            keys, interrupted = _fit_here_or_on_head(address, signals, spec, ctx, client, remaining,
                                                     sampled_todo, storage, done_before, handle_signals, ray_log)
        finally:
            if started_ray:
                import ray

                ray.shutdown()
        if closing.done():
            code = EXIT_INTERRUPTED
        elif _lease_lost(hold):
            code = EXIT_LEASE_LOST
        else:
            read_at_ms = run_index.now_ms()
            runs = retrying.through_outage(  # the one read after training
                lambda: run_index.child_runs(client, experiment_id, parent_id), "reading the trials after training",
                settings.SETTLE_WAIT_S.get())
            # ends MLflow did not take during the run: one more try (quietly: the exit's last line says what is left)
            fresh, unwritten = settle_pending(client, run_index.by_trial_key(runs), pending, level=logging.INFO)
            runs = [fresh.get(r.info.run_id, r) for r in runs]
            # without our handlers only Ray Tune's own SIGINT handler stops a fit early
            code = driver_exit.exit_code(client, run_index.by_trial_key(runs), keys, interrupted,
                                         signalled=signals.received or not handle_signals,
                                         unwritten=unwritten, kept_in=pending.root)
    except (Exception, KeyboardInterrupt) as e:  # every end of the driver gets its name, and the log its traceback
        if isinstance(e, LeaseLost) and hold.lost is None:
            hold.lease.lost = e
        if not handle_signals and isinstance(e, KeyboardInterrupt):
            signals.signum = signals.signum or signal.SIGINT  # Python's own SIGINT handler: an interrupt
        if closing.done():
            code = EXIT_INTERRUPTED
        elif _lease_lost(hold):
            code = EXIT_LEASE_LOST
        else:
            log.info("the driver stopped on %s", logs.cause(e), exc_info=not isinstance(e, KeyboardInterrupt))
            code = driver_exit.failure_exit(e, signals)
            _kill_running_children(client, experiment_id)
        runs = None  # read again for the index: what the failure left is not known here
        failure = None if handle_signals else e
    finally:
        signals.restore()
    if closing.done():
        return EXIT_INTERRUPTED  # closed at the SIGTERM, lease released: nothing more is this driver's
    if hold.lost is not None:
        # another driver owns the sweep, its trials and its parent run now: write nothing more
        terminal.say(str(hold.lost), err=True)
        return EXIT_LEASE_LOST
    _close_parent(client, parent_id, code, experiment_id, runs, read_at_ms)
    if failure is not None:
        raise failure  # from Python: the error itself, after the bookkeeping the CLI does too
    return code


def _lease_lost(hold: DriverHold) -> bool:
    """Whether another driver has taken the sweep over (one read of the parent run, unless the
    heartbeat already found out): then this driver stops and writes nothing more."""
    return hold.lost is not None or (not hold.holds() and hold.lost is not None)


def _fit_here_or_on_head(address, signals, spec, ctx, client, remaining, sampled_todo, storage, done_before,
                         handle_signals: bool = True, ray_log: bool = True):
    """Tune's loop here, or, through Ray Client, in a task on the head (sweeper.ray_client)."""
    if cluster_address.is_ray_client(address):
        from sweeper.driver import ray_client

        return ray_client.fit_on_head(_fit, signals, spec=spec, ctx=ctx, remaining=remaining,
                                      sampled_todo=sampled_todo, storage_root=_storage_root(storage),
                                      done_before=done_before)
    with signals.stopping_tune_here() if handle_signals else contextlib.nullcontext():
        return _fit(spec, ctx, client, remaining, sampled_todo, storage, done_before, ray_log)


def _kill_running_children(client, experiment_id) -> None:
    """After a driver failure: child runs it left RUNNING become KILLED (they resume next time)."""
    try:
        with tracking.fast_fail_http():
            interrupt_running(client, experiment_id)
    except Exception as e:  # noqa: BLE001 - tracking may be what failed; the next run sorts it out (logged)
        log.warning("could not mark the trials left running as interrupted (%s); the next run does", logs.cause(e))


def _ray_trainable(config: dict, ctx: SweepContext, grid: dict, name_axes: list[str], arrays=None) -> None:
    """The function trainable: a grid point (or an Optuna sample on one) -> one tracked trial, or
    an array's grid point -> its members trained as one array (sweeper.driver.array_worker)."""
    import ray
    from ray import tune

    logs.configure_worker()  # the worker's sweeper records to its stderr, Ray's worker log
    log.info("startup: the trainable runs in its worker")
    node_id = ray.get_runtime_context().get_node_id()
    members = plan_arrays.members_of(config, arrays)
    if members is not None:
        from sweeper.driver.array_worker import run_tracked_array

        payloads = [child_run.presented(TrialPayload(**grid[key]), name_axes) for key in members]
        run_tracked_array(ctx, payloads, config["grid"], node_id, cpus=arrays[config["grid"]]["cpu"],
                          tune_report=tune.report)
        return
    payload = child_run.presented(payload_from_config(config, grid, name_axes), name_axes)
    run_tracked_trial(ctx, payload, node_id, tune_report=tune.report)


def _fit(spec, ctx: SweepContext, client, remaining: list[TrialPayload], sampled_todo: int,
         storage: str, done_before: list[tuple] = (), ray_log: bool = True) -> tuple[set[str], bool]:
    from ray import tune

    optuna = algorithm(spec) == "optuna"
    grid = {t.key: payload_dict(t) for t in remaining}
    metric, mode = spec.metric, spec.direction
    search_alg, num_samples = None, 1
    if optuna:
        from ray.tune.search.optuna import OptunaSearch

        base = {t.key: payload_dict(t) for t in (payload_of(x) for x in spec.trials())}
        grid = {**base, **grid}
        unfinished = unfinished_optuna_points(client, ctx.experiment_id, base)
        param_space = {"grid": tune.choice(sorted(base)), "sampled": tune_domains(spec)}
        search_alg = OptunaSearch(points_to_evaluate=unfinished or None)
        num_samples = sampled_todo + len(unfinished)
    else:
        param_space = {"grid": tune.grid_search(list(grid))}
    units = plan_arrays.plan_units(spec, remaining, terminal.say)  # None: every trial solo, as before
    extra, resources = {}, {"cpu": _cpus(spec), "gpu": _gpus(spec)}
    if units is not None:  # arrays: a grid point per array or solo trial, each with its own resources
        extra, resources = _array_points(units, spec)
        param_space = {"grid": tune.grid_search([u.grid_point for u in units])}

    trainable = tune.with_resources(tune.with_parameters(_ray_trainable, ctx=ctx, grid=grid,
                                                         name_axes=spec.varying_axes(), **extra),
                                    resources)
    progress = progress_callback(client, ctx.experiment_id, grid, spec.varying_axes(),
                                 total=len(remaining) if not optuna else num_samples, sweep=spec.name,
                                 parent_run_id=ctx.parent_run_id, done_before=done_before,
                                 pending_ends=_pending_ends(storage, spec.name).root, fence=ctx.fence(), **extra)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=metric, mode=mode, search_alg=search_alg,
                                    scheduler=_scheduler(spec), num_samples=num_samples,
                                    max_concurrent_trials=spec.max_concurrent,
                                    # a new actor per trial re-imports torch and MLflow and reopens
                                    # the store: seconds per trial, the largest overhead measured
                                    reuse_actors=settings.REUSE_ACTORS.get(),
                                    trial_dirname_creator=lambda trial: trial.trial_id),
        run_config=tune.RunConfig(name=spec.name, storage_path=_storage_root(storage), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=int(spec.max_failures)),
                                  callbacks=[progress]),
    )
    with terminal.ray_output(terminal.log_path_for(_storage_root(storage), spec.name), ray_log):
        log.info("startup: Tune starts")
        results = tuner.fit()
    interrupted = progress.finished < len(results)  # Ray ends no trial it paused on Ctrl-C
    return progress.keys | {t.key for t in remaining if not optuna}, interrupted


def _write_run_index(client, experiment_id: str, parent_id: str, runs=None, read_at_ms: int | None = None) -> None:
    """The run index (sweeper.run_index) of this sweep, so that status and report read only what
    changed since. It only saves time: a failure to write it is not the sweep's failure."""
    try:
        with tracking.fast_fail_http():
            run_index.write_index(client, experiment_id, parent_id, runs, read_at_ms)
    except Exception as e:  # noqa: BLE001 - readers fall back to listing every run (logged)
        log.info("could not write the run index of parent run %s (%s); readers list every run", parent_id,
                 logs.cause(e))


def _close_parent(client, parent_id: str | None, code: int, experiment_id: str | None = None, runs=None,
                  read_at_ms: int | None = None) -> None:
    if parent_id is None:
        return
    if experiment_id is not None:  # the sweep's last word on its trials
        _write_run_index(client, experiment_id, parent_id, runs, read_at_ms)
    status = {EXIT_OK: "FINISHED", EXIT_INTERRUPTED: "KILLED"}.get(code, "FAILED")  # bad input too
    retrying.through_outage(lambda: client.set_terminated(parent_id, status), f"ending parent run {parent_id}",
                            settings.SETTLE_WAIT_S.get())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_command(sys.argv[1]))
