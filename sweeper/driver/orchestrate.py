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

import os
import sys
from pathlib import Path

import click

from sweeper.driver import cluster_address, driver_exit
from sweeper.record import child_run, dashboard, links, preflight, run_index, tracking, versions
from sweeper.views import terminal
from sweeper.core.errors import SpecError
from sweeper.driver.hold import DriverHold
from sweeper.plan import arrays as plan_arrays
from sweeper.plan.planning import (algorithm, expected_payloads, optuna_samples_left, payload_from_config, payload_of,
                              tune_domains, unfinished_optuna_points)
from sweeper.core.states import DONE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, FAILED, INTERRUPTED, PENDING, RUNNING
from sweeper.driver.trial_events import progress_callback
from sweeper.record.trial_record import mark_failed, mark_interrupted, state_of
from sweeper.driver.worker import SweepContext, run_tracked_trial
from sweeper.plan.payload import TrialPayload, payload_dict


# --- tracking set-up shared by run and train -------------------------------------------------


def _prepare_tracking(spec, tracking_uri: str | None, *, create: bool):
    uri = tracking.resolve_tracking_uri(tracking_uri, _spec_tracking_uri(spec))
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


def _cpus(spec) -> float:
    return float(spec.resources.cpu)


def _gpus(spec) -> float:
    return float(spec.resources.gpu)


# --- sweeper run ---------------------------------------------------------------------------


def run_command(spec_path: str, *, address: str | None = None, tracking_uri: str | None = None,
                storage: str = "./sweeper_results", dry_run: bool = False) -> int:
    with DriverHold() as hold:  # one driver per sweep; the parent run never stays RUNNING
        return _run_held(hold, spec_path, address=address, tracking_uri=tracking_uri, storage=storage,
                         dry_run=dry_run)


def _run_held(hold: DriverHold, spec_path: str, *, address: str | None, tracking_uri: str | None,
              storage: str, dry_run: bool) -> int:
    from sweeper.spec import load_spec

    spec = load_spec(spec_path)
    trials = expected_payloads(spec)
    if not dry_run:  # refuses what the cluster cannot reach, then probes a ray:// head
        cluster_address.check_address(address, storage, tracking_uri, _spec_tracking_uri(spec))
    preflight.check_tracking_location(tracking.resolve_tracking_uri(tracking_uri, _spec_tracking_uri(spec)))
    preflight.check_storage(storage, create=not dry_run)  # before Ray, before MLflow is written
    if not dry_run:
        preflight.create_sqlite_store_once(tracking.resolve_tracking_uri(tracking_uri, _spec_tracking_uri(spec)))
    uri, client, experiment_id, parent_id = _prepare_tracking(spec, tracking_uri, create=not dry_run)
    if not dry_run:
        parent_id = hold.take(client, experiment_id, parent_id, spec.name)
    # read after the lease: from here on no other driver changes these runs
    read_at_ms = run_index.now_ms()
    runs = run_index.child_runs(client, experiment_id, parent_id) if experiment_id is not None else []
    by_key = run_index.by_trial_key(runs)
    if not dry_run:
        change = versions.apply(client, parent_id, spec, trials, by_key)
        for line in change.lines(spec.name):
            click.echo(line)
        _write_run_index(client, experiment_id, parent_id, runs, read_at_ms)  # with the version tags just written
    states = {key: state_of(run) for key, run in by_key.items()}
    remaining = [t for t in trials if states.get(t.key) not in DONE]
    optuna = algorithm(spec) == "optuna"
    sampled_todo = optuna_samples_left(spec, trials, states) if optuna else 0

    done = len(trials) - len(remaining)
    click.echo(f"{spec.name}: {len(trials)} trials, {done} done, {len(remaining)} to run"
               + (f", {sampled_todo} optuna samples to draw" if optuna else "")
               + f"; tracking {uri}; storage {_storage_root(storage)}")
    for line in links.lines(uri, experiment_id, parent_id):
        click.echo(line)
    if dry_run:
        if not optuna:
            for i, t in enumerate(trials):
                click.echo(f"  {i:>4}  {t.name:<40} {t.key}  {states.get(t.key, PENDING)}")
        return EXIT_OK
    if not remaining and not (optuna and sampled_todo):
        _close_parent(client, parent_id, EXIT_OK)  # the index was written a moment ago
        click.echo("nothing to do: every trial is finished")
        return EXIT_OK

    ctx = SweepContext(tracking_uri=uri, experiment_id=experiment_id, parent_run_id=parent_id,
                       trials_root=f"{_storage_root(storage)}/{spec.name}/trials",
                       cpus_per_trial=_cpus(spec), tracking_env=tracking.credentials_from_env())
    client.update_run(parent_id, status="RUNNING")
    signals = driver_exit.DriverSignals().install()
    try:
        with terminal.to_log(terminal.log_path_for(_storage_root(storage), spec.name)):
            started_ray = _init_ray(address)
        signals.install()  # ray.init put a SIGTERM handler of its own in place
        try:
            keys, interrupted = _fit_here_or_on_head(address, signals, spec, ctx, client, remaining,
                                                     sampled_todo, storage)
        finally:
            if started_ray:
                import ray

                ray.shutdown()
        code = _exit_code(client, experiment_id, keys, interrupted, signalled=signals.received)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every end of the driver gets its name
        code = driver_exit.failure_exit(e, signals)
        _kill_running_children(client, experiment_id)
    finally:
        signals.restore()
    _close_parent(client, parent_id, code, experiment_id)
    return code


def _fit_here_or_on_head(address, signals, spec, ctx, client, remaining, sampled_todo, storage):
    """Tune's loop here, or, through Ray Client, in a task on the head (sweeper.ray_client)."""
    if cluster_address.is_ray_client(address):
        from sweeper.driver import ray_client

        return ray_client.fit_on_head(_fit, signals, spec=spec, ctx=ctx, remaining=remaining,
                                      sampled_todo=sampled_todo, storage_root=_storage_root(storage))
    with signals.stopping_tune_here():
        return _fit(spec, ctx, client, remaining, sampled_todo, storage)


def _kill_running_children(client, experiment_id) -> None:
    """After a driver failure: child runs it left RUNNING become KILLED (they resume next time)."""
    try:
        with tracking.fast_fail_http():
            for run in run_index.trial_runs(client, experiment_id).values():
                if state_of(run) == RUNNING:
                    mark_interrupted(client, run.info.run_id)
    except Exception:  # noqa: BLE001 - tracking may be what failed; the next run sorts it out
        pass


def _init_ray(address: str | None) -> bool:
    """Attach to ``address`` when given, else start Ray here. True when we started it."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # trials use absolute paths only
    if cluster_address.is_ray_client(address):
        from sweeper.driver import ray_client

        ray_client.connect(address)
    elif address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
    return True


def _ray_trainable(config: dict, ctx: SweepContext, grid: dict, name_axes: list[str], arrays=None) -> None:
    """The function trainable: a grid point (or an Optuna sample on one) -> one tracked trial, or
    an array's grid point -> its members trained as one array (sweeper.driver.array_worker)."""
    import ray
    from ray import tune

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
         storage: str) -> tuple[set[str], bool]:
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
    units = plan_arrays.plan_units(spec, remaining, click.echo)  # None: every trial solo, as before
    extra, resources = {}, {"cpu": _cpus(spec), "gpu": _gpus(spec)}
    if units is not None:  # arrays: a grid point per array or solo trial, each with its own resources
        extra, resources = _array_points(units, spec)
        param_space = {"grid": tune.grid_search([u.grid_point for u in units])}

    trainable = tune.with_resources(tune.with_parameters(_ray_trainable, ctx=ctx, grid=grid,
                                                         name_axes=spec.varying_axes(), **extra),
                                    resources)
    progress = progress_callback(client, ctx.experiment_id, grid, spec.varying_axes(),
                                 total=len(remaining) if not optuna else num_samples, sweep=spec.name,
                                 parent_run_id=ctx.parent_run_id, **extra)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=metric, mode=mode, search_alg=search_alg,
                                    scheduler=_scheduler(spec), num_samples=num_samples,
                                    max_concurrent_trials=spec.max_concurrent,
                                    # a new actor per trial re-imports torch and MLflow and reopens
                                    # the store: seconds per trial, the largest overhead measured
                                    reuse_actors=os.environ.get("SWEEPER_REUSE_ACTORS", "1") == "1",
                                    trial_dirname_creator=lambda trial: trial.trial_id),
        run_config=tune.RunConfig(name=spec.name, storage_path=_storage_root(storage), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=int(spec.max_failures)),
                                  callbacks=[progress]),
    )
    with terminal.to_log(terminal.log_path_for(_storage_root(storage), spec.name)):
        results = tuner.fit()
    interrupted = progress.finished < len(results)  # Ray ends no trial it paused on Ctrl-C
    return progress.keys | {t.key for t in remaining if not optuna}, interrupted


def _array_points(units, spec):
    """The ``arrays`` dict (trainable and callback) and the resources per grid point: an array
    asks for its own (sweeper.plan.arrays.array_resources), a solo trial for the spec's."""
    import ray
    from ray.tune.execution.placement_groups import resource_dict_to_pg_factory

    arrays = plan_arrays.tune_arrays(units, _cpus(spec), _gpus(spec), plan_arrays.largest_node(ray.nodes()))
    solo = {"cpu": _cpus(spec), "gpu": _gpus(spec)}

    def resources(config: dict):
        chosen = arrays.get(config.get("grid"))
        return resource_dict_to_pg_factory({"cpu": chosen["cpu"], "gpu": chosen["gpu"]} if chosen else solo)

    return {"arrays": arrays}, resources


def _scheduler(spec):
    section = spec.scheduler
    if section.name != "asha":  # fifo: the spec's schema admits no other
        return None
    from ray.tune.schedulers import ASHAScheduler

    max_t = section.max_t or max(int(t.config["train"]["epochs"]) for t in spec.trials())
    return ASHAScheduler(time_attr="epoch", max_t=max_t,
                         grace_period=section.grace_period, reduction_factor=section.reduction_factor)


def _exit_code(client, experiment_id: str, keys: set[str], interrupted: bool, signalled: bool = True) -> int:
    runs = run_index.trial_runs(client, experiment_id)
    states = {key: state_of(runs.get(key)) for key in keys}
    for key, state in states.items():
        run = runs.get(key)
        if run is not None and state == RUNNING:
            # left open by a stop (Ctrl-C): mark it so, it resumes from its checkpoint next time
            mark_interrupted(client, run.info.run_id)
            states[key] = INTERRUPTED
    unfinished = sum(1 for s in states.values() if s in (INTERRUPTED, PENDING))
    if (interrupted or unfinished) and not signalled:  # "interrupted" only after a real signal
        click.echo(driver_exit.unfinished_line(unfinished), err=True)
        return EXIT_FAILED
    if interrupted or unfinished:
        click.echo("interrupted: run the same command again to resume", err=True)
        return EXIT_INTERRUPTED
    if any(s == FAILED for s in states.values()):
        return EXIT_FAILED
    return EXIT_OK


def _write_run_index(client, experiment_id: str, parent_id: str, runs=None, read_at_ms: int | None = None) -> None:
    """The run index (sweeper.run_index) of this sweep, so that status and report read only what
    changed since. It only saves time: a failure to write it is not the sweep's failure."""
    try:
        with tracking.fast_fail_http():
            run_index.write_index(client, experiment_id, parent_id, runs, read_at_ms)
    except Exception:  # noqa: BLE001 - readers fall back to listing every run
        pass


def _close_parent(client, parent_id: str | None, code: int, experiment_id: str | None = None) -> None:
    if parent_id is None:
        return
    if experiment_id is not None:
        _write_run_index(client, experiment_id, parent_id)  # the sweep's last word on its trials
    status = {EXIT_OK: "FINISHED", EXIT_INTERRUPTED: "KILLED"}.get(code, "FAILED")  # bad input too
    client.set_terminated(parent_id, status)


# --- sweeper train -------------------------------------------------------------------------


def train_command(spec_path: str, index: int, *, tracking_uri: str | None = None,
                  storage: str = "./sweeper_results") -> int:
    """One trial of the sweep in this process, no Ray, tracked exactly as under `sweeper run`."""
    import socket

    from sweeper.spec import load_spec

    spec = load_spec(spec_path)
    trials = expected_payloads(spec)
    if not 0 <= index < len(trials):
        raise SpecError("--trial", None, f"{index} is out of range: the spec has trials 0..{len(trials) - 1}")
    payload = child_run.presented(trials[index], spec.varying_axes())
    uri, client, experiment_id, parent_id = _prepare_tracking(spec, tracking_uri, create=True)
    ctx = SweepContext(tracking_uri=uri, experiment_id=experiment_id, parent_run_id=parent_id,
                       trials_root=f"{_storage_root(storage)}/{spec.name}/trials",
                       cpus_per_trial=_cpus(spec))
    click.echo(f"{payload.name} ({payload.key}): training in this process; tracking {uri}")
    try:
        final = run_tracked_trial(ctx, payload, node_id=f"local:{socket.gethostname()}")
    except KeyboardInterrupt:
        run = tracking.find_child_run(client, experiment_id, payload.key)
        if run is not None:
            mark_interrupted(client, run.info.run_id)
        click.echo("interrupted: run the same command again to resume", err=True)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - a trial that crashed is a result, not a traceback
        run = tracking.find_child_run(client, experiment_id, payload.key)
        if run is not None:
            mark_failed(client, run.info.run_id)
        click.echo(f"{payload.name}: failed: {type(e).__name__}: {e}", err=True)
        return EXIT_FAILED
    click.echo(f"{payload.name}: {final['status']}  test_acc={final.get('final_test_acc', float('nan')):.3f}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_command(sys.argv[1]))
