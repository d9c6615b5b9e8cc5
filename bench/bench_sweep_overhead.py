"""Overhead of the sweep layer: `sweeper run` on M small trials against the same trials run back
to back by `sweeper train` (each its own process, as a user would), as a ratio, plus the time from
the `sweeper run` command to the first trial's first epoch (read from the MLflow metric timestamp).

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


def write_spec(folder: Path, trials: int, epochs: int) -> Path:
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
""")
    return path


def first_epoch_at(uri: str) -> float:
    """Wall-clock time (s since the epoch) of the earliest per-epoch metric point of any trial."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bench")
    runs = client.search_runs([experiment.experiment_id], "tags.`sweeper.role` = 'trial'")
    return min(m.timestamp for r in runs for m in client.get_metric_history(r.info.run_id, "test_acc")) / 1000


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

        print(f"trials={n} epochs={args.epochs} (digits 16px, cifar_resnet d8, cpu 1 per trial)")
        print(f"sweeper train x{n}, back to back: {train_s:7.1f} s   first epoch after {train_first:5.1f} s")
        print(f"sweeper run:                      {run_s:7.1f} s   first epoch after {run_first:5.1f} s")
        print(f"ratio run / train:                {run_s / train_s:7.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
