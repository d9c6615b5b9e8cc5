"""What a user sees while a real `sweeper run` works: its terminal (a pseudo-terminal and a
pipe), `sweeper status --watch` from another process, and the parent run in MLflow, checked while
the sweep is still running. Real Ray (started by the driver, 2 CPUs), real MLflow (sqlite)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from sweeper.record import names
from sweeper.record import dashboard, run_index, tracking

pytestmark = pytest.mark.slow

SWEEPER = str(Path(sys.executable).parent / "sweeper")
# What Ray Tune and ray.init print on their own; none of it may reach the user's terminal.
RAY_NOISE = ("Tuner.restore", "tensorboard", "TensorBoard", "Configuration for experiment",
             "View detailed results", "Token authentication", "Search algorithm", "Trial status")
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def spec_file(folder: Path, name: str, modes: tuple[str, ...], epochs: int, concurrent: int = 2) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"""\
name: {name}
description: progress output under test
dataset: {{name: digits, image_size: 8, train_size: 192, test_size: 96}}
model: {{family: cifar_resnet, depth: 8}}
train: {{epochs: {epochs}, batch_size: 64, lr: 0.1, augment: false}}
grid: {{mode: [{", ".join(modes)}], seed: [0]}}
resources: {{cpu: 1}}
max_concurrent: {concurrent}
checkpoint: {{every_epochs: 1}}
""")
    return path


def driver_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def parent_run(client, name: str):
    experiment = client.get_experiment_by_name(name)
    return tracking.find_parent_run(client, experiment.experiment_id) if experiment else None


def test_on_a_terminal_the_sweep_is_one_live_view_and_rays_output_is_in_a_log_file(workdir, tracking_uri):
    spec = spec_file(workdir, "tty", ("bn_only", "full"), epochs=2)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))  # 40 rows, 100 columns
    driver = subprocess.Popen([SWEEPER, "run", str(spec), "--tracking-uri", tracking_uri,
                               "--storage", str(workdir / "results")],
                              cwd=workdir, env=driver_env(TERM="xterm-256color"), stdin=slave, stdout=slave,
                              stderr=slave, start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + 400
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed: the driver is gone
                break
            if not data:
                break
            chunks.append(data)
        elif driver.poll() is not None:
            break
    assert driver.wait(timeout=60) == 0
    os.close(master)
    raw = b"".join(chunks).decode("utf-8", "replace")
    screen = ESCAPE.sub("", raw)

    assert "\x1b[1A" in raw and "\x1b[2K" in raw  # the view is redrawn in place
    assert re.search(r"(bn_only|full)-d8-w1-lr0\.1-s0  epoch 1/2  test_acc \d\.\d{3}  [\d,]+ img/s", screen)
    assert re.search(r"\[1/2\] (bn_only|full)-d8-w1-lr0\.1-s0: finished  test_acc=\d\.\d{3}", screen)
    assert re.search(r"2/2 done, 0 failed, 0 diverged, 0 running\s+best test_acc \d\.\d{3}", screen)
    log = workdir / "results" / "tty" / "ray-driver.log"
    assert screen.count(f"Ray's own output: {log}") == 1
    assert "  trials: http://127.0.0.1:5000/#/experiments/" in screen
    for noise in RAY_NOISE:
        assert noise not in screen, noise
    assert "Configuration for experiment" in log.read_text()  # it went to the log instead


def test_in_a_pipe_progress_is_plain_lines_and_the_parent_run_counts_trials_while_they_run(
        workdir, tracking_uri, mlflow_client):
    """Three trials, one at a time (so that some are finished while another runs): while the sweep runs, the parent run shows trials running
    and not all finished; Ctrl-C leaves Ray's resume hint in the log, not on the terminal;
    `status --watch` in another process shows the running trials; the next run completes."""
    spec = spec_file(workdir, "piped", ("bn_only", "full", "output_only"), epochs=20, concurrent=1)
    storage = str(workdir / "results")
    env = driver_env(SWEEPER_DASHBOARD_EVERY_S="1", SWEEPER_PROGRESS_EVERY_S="1")
    out, err = workdir / "driver.out", workdir / "driver.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        driver = subprocess.Popen([SWEEPER, "run", str(spec), "--tracking-uri", tracking_uri, "--storage", storage],
                                  cwd=workdir, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
    watch_out = workdir / "watch.out"
    watcher = None
    seen_running = None
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and driver.poll() is None:
            parent = parent_run(mlflow_client, "piped")
            metrics = parent.data.metrics if parent else {}
            if watcher is None and metrics.get("trials_running", 0) >= 1:  # the driver's view is live
                with open(watch_out, "w") as wout:
                    watcher = subprocess.Popen([SWEEPER, "status", str(spec), "--watch", "--every", "1",
                                                "--tracking-uri", tracking_uri],
                                               cwd=workdir, env=env, stdout=wout, stderr=subprocess.STDOUT)
            if metrics.get("trials_running", 0) >= 1 and metrics.get("trials_finished", 0) >= 1:
                seen_running = parent
                break
            time.sleep(0.5)
        assert seen_running is not None, "the parent run never showed a running and a finished trial"
        # the watcher's first frames take seconds (its imports, its first read): Ctrl-C once it has
        # drawn a running trial, or at the deadline (the assertions below then say what it missed)
        while time.monotonic() < deadline and driver.poll() is None and not re.search(
                r"^  \w+-d8-w1-lr0\.1-s0  (epoch \d+(/20)?|starting)", watch_out.read_text(), re.M):
            time.sleep(0.5)
        driver.send_signal(signal.SIGINT)  # Ctrl-C: Ray writes its Tuner.restore hint
        assert driver.wait(timeout=180) == 130
        assert watcher is not None and watcher.wait(timeout=120) == 0
    finally:
        for proc in (driver, watcher):
            if proc is not None and proc.poll() is None:
                proc.kill()

    metrics = seen_running.data.metrics
    assert metrics["trials_total"] == 3 and metrics["trials_finished"] < 3 and metrics["trials_failed"] == 0
    assert metrics["best_test_acc_so_far"] > 0 and metrics["elapsed_s"] > 0
    note = seen_running.data.tags[names.TAG_NOTE]
    assert note.startswith("**progress output under test**") and "Running now:" in note
    assert dashboard.read_state(seen_running).running

    text, errors = out.read_text(), err.read_text()
    assert not ESCAPE.search(text + errors)
    assert re.search(r"^\[progress\] piped: \d/3 done, 0 failed, 0 diverged, \d running", text, re.M)
    assert re.search(r"^  \w+-d8-w1-lr0\.1-s0  epoch \d+/20  test_acc \d\.\d{3}", text, re.M)
    assert re.search(r"^\[1/3\] \w+-d8-w1-lr0\.1-s0: finished  test_acc=\d\.\d{3}$", text, re.M)
    for noise in RAY_NOISE:
        assert noise not in text + errors, noise
    log = Path(storage) / "piped" / "ray-driver.log"
    assert "Tuner.restore" in log.read_text()
    assert "run the same command again to resume" in errors

    watched = watch_out.read_text()
    assert re.search(r"^\[progress\] piped: \d/3 done", watched, re.M)
    assert re.search(r"^  \w+-d8-w1-lr0\.1-s0  (epoch \d+(/20)?|starting)", watched, re.M)

    resumed = subprocess.run([SWEEPER, "run", str(spec), "--tracking-uri", tracking_uri, "--storage", storage],
                             cwd=workdir, env=env, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr
    final = parent_run(mlflow_client, "piped")
    children = run_index.trial_runs(mlflow_client, final.info.experiment_id)
    best = max(r.data.metrics["final_test_acc"] for r in children.values())
    assert final.data.metrics["trials_finished"] == 3 and final.data.metrics["trials_running"] == 0
    assert final.data.metrics["best_test_acc_so_far"] == pytest.approx(best)
    assert final.data.metrics["eta_s"] == 0
    assert "[progress] piped: 3/3 done, 0 failed, 0 diverged, 0 running" in resumed.stdout
