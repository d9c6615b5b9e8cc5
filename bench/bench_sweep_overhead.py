"""Overhead of the sweep layer: `sweeper run` on M small trials against the same trials run back
to back by `sweeper train` (each its own process, as a user would), as a ratio, plus the time from
the `sweeper run` command to the first trial's first epoch (read from the MLflow metric timestamp).

Where the time to the first epoch goes is printed as a split: the driver's ``startup:`` records
in its log file (``<storage>/<sweep>/ray-driver.log``: store and parent run ready, lease
held, runs read, Ray started, Tune starts), then from MLflow the first child run's creation (a
worker process started and imported the trainable) and its first ``test_acc`` point (data and
model built, one epoch trained and evaluated).

    .venv/bin/python bench/bench_sweep_overhead.py [--trials 4] [--epochs 1]

Each mode gets a fresh MLflow store and storage folder, so nothing is skipped as already done.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEPER = str(Path(sys.executable).parent / "sweeper")
MODES = ("bn_only", "full", "output_only", "random_params")


def write_spec(folder: Path, trials: int, epochs: int, max_concurrent: int | None = None) -> Path:
    """A digits study of ``trials`` trials: the four modes times as many seeds as it takes."""
    seeds = list(range((trials + len(MODES) - 1) // len(MODES)))
    path = folder / "bench.yaml"
    path.write_text(f"""\
name: bench
dataset: {{name: digits, image_size: 16}}
model: {{family: cifar_resnet, depth: 8}}
train: {{epochs: {epochs}, batch_size: 64, lr: 0.1, augment: false}}
grid: {{mode: [{", ".join(MODES[:min(trials, len(MODES))])}], seed: {seeds}}}
resources: {{cpu: 1}}
checkpoint: {{every_epochs: 1}}
""" + (f"max_concurrent: {max_concurrent}\n" if max_concurrent else ""))
    return path


def first_epoch_at(uri: str) -> float:
    """Wall-clock time (s since the epoch) of the earliest per-epoch metric point of any trial."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bench")
    runs = client.search_runs([experiment.experiment_id], "tags.`sweeper.role` = 'trial'")
    return min(m.timestamp for r in runs for m in client.get_metric_history(r.info.run_id, "test_acc")) / 1000


def startup_split(log_path: Path, uri: str, started: float) -> list[tuple[str, float]]:
    """(milestone, seconds after ``started``) in the order they happened."""
    from datetime import datetime

    from mlflow.tracking import MlflowClient

    points = []
    for line in log_path.read_text().splitlines():
        head, sep, what = line.partition(": startup: ")
        if sep:
            stamp = datetime.strptime(" ".join(head.split()[:2]), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            points.append((what, stamp - started))
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bench")
    runs = client.search_runs([experiment.experiment_id], "tags.`sweeper.role` = 'trial'")
    first = min(runs, key=lambda r: r.info.start_time)
    points.append(("first child run created (a worker started, trainable imported)", first.info.start_time / 1000 - started))
    history = client.get_metric_history(first.info.run_id, "test_acc")
    points.append(("its first epoch trained and evaluated (data and model built, one epoch, the test set)",
                   min(m.timestamp for m in history) / 1000 - started))
    return sorted(points, key=lambda p: p[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sweeper-bench-"))
    try:
        spec = write_spec(root, args.trials, args.epochs)
        n = args.trials

        train_dir = root / "train"
        train_dir.mkdir()
        uri = f"sqlite:///{train_dir / 'mlflow.db'}"
        started = time.time()
        for i in range(n):
            subprocess.run([SWEEPER, "train", str(spec), "--trial", str(i), "--tracking-uri", uri,
                            "--storage", str(train_dir / "results")], check=True, cwd=train_dir,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        train_s = time.time() - started
        train_first = first_epoch_at(uri) - started

        run_dir = root / "run"
        run_dir.mkdir()
        uri = f"sqlite:///{run_dir / 'mlflow.db'}"
        started = time.time()
        subprocess.run([SWEEPER, "run", str(spec), "--tracking-uri", uri, "--storage", str(run_dir / "results")],
                       check=True, cwd=run_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run_s = time.time() - started
        run_first = first_epoch_at(uri) - started
        split = startup_split(run_dir / "results" / "bench" / "ray-driver.log", uri, started)

        print(f"trials={n} epochs={args.epochs} (digits 16px, cifar_resnet d8, cpu 1 per trial)")
        print(f"sweeper train x{n}, back to back: {train_s:7.1f} s   first epoch after {train_first:5.1f} s")
        print(f"sweeper run:                      {run_s:7.1f} s   first epoch after {run_first:5.1f} s")
        print(f"ratio run / train:                {run_s / train_s:7.2f}")
        print("\nsweeper run, from the command to the first epoch (s after the command; step):")
        before = 0.0
        for what, at in split:
            print(f"  {at:6.1f}  +{at - before:5.1f}  {what}")
            before = at
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
