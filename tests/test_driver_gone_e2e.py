"""`sweeper status` knows a dead driver: a real `sweeper run` is SIGKILLed while its trials train,
and status, status --watch and load_results show them `running (driver gone since ...)` instead
of plain running (real Ray, a real sqlite store)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sweeper
from sweeper.record import claims, tracking
from sweeper.views import status as status_view
from sweeper.views import watch
from test_lease_e2e import lease_tags
from test_sweep_e2e import children, kill_session, write_spec

pytestmark = pytest.mark.slow

SWEEPER = str(Path(sys.executable).parent / "sweeper")
STALE_S = 8
TIMES = {"SWEEPER_LEASE_STALE_S": str(STALE_S), "SWEEPER_LEASE_HEARTBEAT_S": "1", "SWEEPER_CLOCK_SKEW_S": "2"}


def test_trials_of_a_sigkilled_driver_show_it_is_gone(workdir, tracking_uri, mlflow_client, monkeypatch):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **TIMES}
    spec = write_spec(workdir, "orphaned", modes=("bn_only", "full"), epochs=200)
    argv = [SWEEPER, "run", str(spec), "--tracking-uri", tracking_uri, "--storage", str(workdir / "results")]
    log = workdir / "driver.log"
    with open(log, "w") as out:
        driver = subprocess.Popen(argv, cwd=workdir, env=env, start_new_session=True, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 300
        while not any(r.info.status == "RUNNING" and "test_acc" in r.data.metrics
                      for r in children(mlflow_client, "orphaned").values()):
            assert driver.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        # alive: running, nothing gone
        for var, value in TIMES.items():
            monkeypatch.setenv(var, value)
        _, _, rows = status_view.sweep_status("orphaned", tracking_uri)
        assert any(r.state == "running" for r in rows) and all(r.driver_gone_since is None for r in rows)
    finally:
        kill_session(driver.pid)
        driver.wait(timeout=60)
    (claim,) = lease_tags(mlflow_client, "orphaned").values()  # the SIGKILLed driver's claim is left
    running = {r.info.run_name for r in children(mlflow_client, "orphaned").values() if r.info.status == "RUNNING"}
    assert running

    # on this machine the pid is seen gone at once: the real CLI says so
    shown = subprocess.run([SWEEPER, "status", "orphaned", "--tracking-uri", tracking_uri], cwd=workdir, env=env,
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    gone = claims.gone_text(claim["heartbeat"])
    for name in running:
        assert any(name in line and gone in line for line in shown.stdout.splitlines()), shown.stdout
    df = sweeper.load_results("orphaned", tracking_uri=tracking_uri)
    assert set(df[df["driver_gone_since"].notna()]["name"]) == running
    assert (df["driver_gone_since"].dropna().map(lambda t: t.timestamp()) - claim["heartbeat"]).abs().max() < 1e-3

    # from another machine (the pid cannot be seen): status --watch finds the heartbeat standing
    # still for the stale time on its own clock, and its view ends instead of waiting forever
    monkeypatch.setattr(claims, "pid_namespace", lambda: "another-machine")
    cache: dict = {}
    started = time.monotonic()
    state, rows, _ = watch.read("orphaned", tracking_uri, cache)
    while watch._open(rows, cache["driver_live"]):
        assert time.monotonic() - started < 120, "the watch never saw the driver gone"
        time.sleep(1.0)
        state, rows, _ = watch.read("orphaned", tracking_uri, cache)
    assert {r.name for r in rows if r.driver_gone_since is not None} == running
    assert all(gone in line.name for line in state.running.values())
    parent = tracking.find_parent_run(mlflow_client, mlflow_client.get_experiment_by_name("orphaned").experiment_id)
    assert claims.sweep_driver_claim(parent.data.tags).pid == driver.pid
