"""What the sweep layer costs per trial: the same N small trials three ways, in one run.

(a) floor: the trials' own training (``trainables.loop.run_trial``, each with its checkpoint folder, as
    a worker calls it; one torch thread each, as a worker with ``resources.cpu: 1`` sets) back to
    back in this one process. Reported as wall / 2: under the other two, two trials train at
    once on the two cores.
(b) plain Ray Tune: a ``tune.Tuner`` over the same configurations, a function trainable calling
    the same ``run_trial`` and reporting each epoch, Ray's ``MLflowLoggerCallback`` to a fresh
    sqlite store, ``reuse_actors=True``, two trials at a time, one cpu each; a Python process of
    its own (this script, ``--plain-tune``), as a user would run it.
(c) `sweeper run` of the same study (a subprocess, a fresh sqlite store and storage folder).

(b) and (c) are timed alike, from starting their process to its exit: Python's start, the
imports, Ray's start and stop, the store's creation; (c) its parent run and lease as well. The
sweep layer's cost per trial is (c - a) / N * 2 (seconds of one of the two slots), and the same
against (b).

    .venv/bin/python bench/bench_sweep_layer.py [--trials 24] [--epochs 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_sweep_overhead import SWEEPER, write_spec  # the same study, run with the same command

CONCURRENT = 2  # trials at once under (b) and (c): one per core of the build machine


def study_configs(spec_path: Path, trials: int) -> list[dict]:
    """The resolved trial configurations, as the plan hands them to the workers (``Trial.config``)."""
    from sweeper.spec import load_spec

    return [t.config for t in load_spec(spec_path).trials()[:trials]]


def floor(configs: list[dict], root: Path) -> float:
    """Wall seconds of every trial trained back to back in this process (one thread, as a worker)."""
    import torch

    from trainables import run_trial

    torch.set_num_threads(1)
    started = time.perf_counter()
    for i, config in enumerate(configs):
        run_trial(config, None, root / f"t{i}")
    return time.perf_counter() - started


def _tune_trainable(config: dict) -> None:
    import torch
    from ray import tune

    from trainables import run_trial

    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="bench-tune-"))
    try:
        run_trial(config["trial"], lambda metrics, _: tune.report(metrics), folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def plain_tune(spec: Path, trials: int, root: Path) -> float:
    """Wall seconds of Ray Tune with MLflow's own callback over the same configurations, in a
    process of its own from its start to its exit, as (c) is timed."""
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--plain-tune", str(root), "--spec", str(spec), "--trials", str(trials)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def run_plain_tune(configs: list[dict], root: Path) -> None:
    """(b) itself, in the process ``plain_tune`` starts."""
    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    ray.init(num_cpus=CONCURRENT, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            tune.with_resources(_tune_trainable, {"cpu": 1}),
            param_space={"trial": tune.grid_search(configs)},
            tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=CONCURRENT),
            run_config=tune.RunConfig(name="bench", storage_path=str(root / "ray"), verbose=0,
                                      callbacks=[MLflowLoggerCallback(
                                          tracking_uri=f"sqlite:///{root / 'mlflow.db'}", experiment_name="bench",
                                          save_artifact=False)]),
        )
        results = tuner.fit()
        if results.errors:
            raise RuntimeError(f"{len(results.errors)} plain Tune trials failed: {results.errors[0]}")
    finally:
        ray.shutdown()


def sweeper_run(spec: Path, root: Path) -> float:
    """Wall seconds of `sweeper run` of the study, from the command to its exit."""
    started = time.perf_counter()
    subprocess.run([SWEEPER, "run", str(spec), "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}",
                    "--storage", str(root / "results")], check=True, cwd=root,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--keep", action="store_true",
                        help="keep the stores and storage (their folder is printed), to read the driver's log")
    parser.add_argument("--plain-tune", type=Path, help=argparse.SUPPRESS)  # (b)'s own process: its folder
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_tune is not None:
        run_plain_tune(study_configs(args.spec, args.trials), args.plain_tune)
        return
    root = Path(tempfile.mkdtemp(prefix="sweeper-bench-layer-"))
    try:
        spec = write_spec(root, args.trials, args.epochs, CONCURRENT)
        configs = study_configs(spec, args.trials)
        n = len(configs)
        dirs = {what: root / what for what in ("floor", "tune", "run")}
        for folder in dirs.values():
            folder.mkdir()
        load_before = os.getloadavg()[0]
        floor_s = floor(configs, dirs["floor"]) / CONCURRENT
        tune_s = plain_tune(spec, n, dirs["tune"])
        run_s = sweeper_run(spec, dirs["run"])

        print(f"trials={n} epochs={args.epochs} (digits 16px, cifar_resnet d8, batch 64, cpu 1, "
              f"{CONCURRENT} at a time); load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
        print(f"(a) floor, run_trial back to back / {CONCURRENT}: {floor_s:7.1f} s")
        print(f"(b) plain Ray Tune + MLflowLoggerCallback:  {tune_s:7.1f} s   "
              f"{(tune_s - floor_s) / n * CONCURRENT:5.2f} s per trial over the floor")
        print(f"(c) sweeper run:                            {run_s:7.1f} s   "
              f"{(run_s - floor_s) / n * CONCURRENT:5.2f} s per trial over the floor, "
              f"{(run_s - tune_s) / n * CONCURRENT:+5.2f} s over plain Tune")
        print(f"ratios: c/a {run_s / floor_s:5.2f}   c/b {run_s / tune_s:5.2f}   b/a {tune_s / floor_s:5.2f}")
    finally:
        if args.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
