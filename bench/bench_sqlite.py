"""sqlite under load: N digits trials at once, each its own process, writing to one sqlite MLflow
store the way a sweep's trials do (per-epoch batches, system metrics, final results, the driver's
lease and dashboard beside them), through a real `sweeper run`.

    .venv/bin/python bench/bench_sqlite.py [--trials 8 16] [--epochs 2] [--quick] [--keep DIR]

For each N: a fresh store and a spec of N trials (seeds of one configuration, digits at 8 px,
a small train set, `resources: {cpu: 0.1}` and `max_concurrent: N`, so Ray runs all N at once on
any machine), one `sweeper run`, then, read back from the store and the logs:

- wall time of the command, and how many trials were in fact running at once (their runs' start
  and end times);
- "database is locked": log lines that say it, in the driver's log, the command's output and
  every Ray worker's log (Ray keeps its files under its own temp folder, one per N);
- lost writes: metric points expected (every per-epoch metric at every epoch, and every point any
  trial of the sweep logged, for each trial; system metrics aside, whose count follows how long a
  trial ran) against those found in the store, and trials whose run did not end finished;
- late writes: batches MLflow did not take at first that the trial's logger kept ("deferred") and
  sent again later ("late", with the longest delay), calls the driver tried again ("retried"), and
  writes given up on.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from sweeper.record import names  # noqa: E402 - this tree's, after the path is set
from trainables.names import PER_EPOCH_METRICS  # noqa: E402

SWEEPER = str(Path(sys.executable).parent / "sweeper")
NAME = "sqlite_load"
SAMPLED = "system/"  # MLflow's system metrics: as many samples as the trial lasted, none expected
# What the trial's logger (sweeper.record.tracking.TrialLogger) and the retry helper say.
PATTERNS = {
    "locked": re.compile(r"database is locked", re.IGNORECASE),
    "deferred": re.compile(r"MLflow did not take the logs of run"),
    "late": re.compile(r"MLflow took the logs of run \w+ again after (\d+)s"),
    "retried": re.compile(r"the tracking store did not answer .*; trying again"),
    "gave_up": re.compile(r"MLflow refused a write to run|the tracking store did not answer .*; gave up after"),
}


def write_spec(folder: Path, trials: int, epochs: int) -> Path:
    path = folder / "load.yaml"
    path.write_text(f"""\
name: {NAME}
dataset: {{name: digits, image_size: 8, train_size: 256, test_size: 128}}
model: {{family: cifar_resnet, depth: 8}}
train: {{epochs: {epochs}, batch_size: 64, lr: 0.1, augment: false}}
grid: {{mode: [full], seed: {list(range(trials))}}}
resources: {{cpu: 0.1}}
max_concurrent: {trials}
checkpoint: {{every_epochs: 1}}
""")
    return path


def run_sweep(root: Path, spec: Path, timeout: float) -> tuple[int, float]:
    """`sweeper run` with Ray's temp folder inside ``root`` (its worker logs are read after);
    (exit code, seconds)."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="sqlb-", dir="/tmp"))  # short: Ray's socket paths are bounded
    (root / "ray_tmp").symlink_to(ray_tmp)
    env = {"RAY_TMPDIR": str(ray_tmp), "MLFLOW_TRACKING_URI": ""}
    started = time.monotonic()
    with open(root / "command.out", "w") as out:
        done = subprocess.run([SWEEPER, "run", str(spec), "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}",
                               "--storage", str(root / "results")], cwd=root, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, **env}, timeout=timeout)
    return done.returncode, time.monotonic() - started


def log_counts(root: Path) -> dict:
    """Lines matching each of PATTERNS over every log of the run, and the longest late delay."""
    files = [root / "command.out", root / "results" / NAME / "ray-driver.log"]
    files += (root / "ray_tmp").resolve().glob("ray/session_*/logs/**/*")
    counts = {k: 0 for k in PATTERNS}
    latest = 0
    for path in sorted({p.resolve() for p in files if p.is_file()}):  # session_latest links to the session
        for line in path.read_text(errors="replace").splitlines():
            for key, pattern in PATTERNS.items():
                found = pattern.search(line)
                if found:
                    counts[key] += 1
                    if key == "late":
                        latest = max(latest, int(found.group(1)))
    return {**counts, "late_max_s": latest}


def store_counts(root: Path, trials: int, epochs: int) -> dict:
    """Trials found, finished, at once; metric points expected and missing."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(NAME)
    runs = [] if experiment is None else client.search_runs(
        [experiment.experiment_id], f"tags.`{names.TAG_ROLE}` = '{names.ROLE_TRIAL}'", max_results=10_000)
    points = {}
    for run in runs:
        points[run.info.run_id] = {(key, m.step) for key in run.data.metrics if not key.startswith(SAMPLED)
                                   for m in client.get_metric_history(run.info.run_id, key)}
    expected = {(key, epoch) for key in PER_EPOCH_METRICS for epoch in range(1, epochs + 1)}
    expected |= set().union(*points.values())
    missing = sum(len(expected - found) for found in points.values()) + (trials - len(runs)) * len(expected)
    finished = sum(run.data.tags.get(names.TAG_STATUS) == "finished" for run in runs)
    spans = [(r.info.start_time, r.info.end_time or r.info.start_time) for r in runs]
    at_once = max((sum(s <= start < e for s, e in spans) for start, _ in spans), default=0)
    return {"runs": len(runs), "finished": finished, "at_once": at_once,
            "points_expected": trials * len(expected), "points_missing": missing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one epoch, N = 4 and 8")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per sweep before giving up")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep each N's store and logs in KEEP/<N>/ (Ray's, linked as ray_tmp, stay in /tmp/sqlb-*)")
    args = parser.parse_args()
    sizes, epochs = ([4, 8], 1) if args.quick else (args.trials, args.epochs)

    print(f"sqlite store, `sweeper run`, digits 8 px, cifar_resnet d8, {epochs} epochs, cpu 0.1 per trial")
    print(f"{'N':>3} {'rc':>3} {'wall s':>7} {'at once':>7} {'finished':>8} {'locked':>6} "
          f"{'points lost':>14} {'deferred':>8} {'late (max s)':>12} {'retried':>7} {'gave up':>7}")
    for n in sizes:
        if args.keep:
            root = args.keep.resolve() / str(n)
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
        else:
            root = Path(tempfile.mkdtemp(prefix=f"sweeper-sqlite-{n}-"))
        try:
            rc, seconds = run_sweep(root, write_spec(root, n, epochs), args.timeout)
            logs, store = log_counts(root), store_counts(root, n, epochs)
            print(f"{n:>3} {rc:>3} {seconds:>7.1f} {store['at_once']:>7} {store['finished']:>4}/{n:<3} "
                  f"{logs['locked']:>6} {store['points_missing']:>5}/{store['points_expected']:<8} "
                  f"{logs['deferred']:>8} {logs['late']:>5} ({logs['late_max_s']:>4}) "
                  f"{logs['retried']:>7} {logs['gave_up']:>7}", flush=True)
        finally:
            ray_tmp = (root / "ray_tmp").resolve()
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
                shutil.rmtree(ray_tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
