"""The lease does not trust clocks, with real processes: driver A trains a 4-trial digits study;
driver B runs the same study with its wall clock 5 minutes ahead (tests/faults/sitecustomize.py,
``SWEEPER_TEST_CLOCK_AHEAD_S``), as a laptop whose clock runs ahead would. A's heartbeat looks 5 minutes old to B, so B
watches it, sees it change and is refused (exit 2, one line naming A, one line naming the clock
disagreement) while A is healthy; once A is SIGKILLed, B takes the sweep over and finishes it:
every epoch logged once, no trial left waiting (real Ray, a real sqlite store).

Debian's libfaketime (`faketime -f +300s`) was tried first: with the monotonic clock faked too,
Python's timed waits never return (the lease heartbeat never beat); with only the wall clock
faked, time.sleep fails with EINVAL. So the wall clock is moved in Python itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeper.record import names
from test_lease_e2e import lease_tags
from test_sweep_e2e import assert_no_duplicate_steps, children, kill_session, metric_points, write_spec

pytestmark = pytest.mark.slow

SWEEPER = str(Path(sys.executable).parent / "sweeper")
EPOCHS = 12
LEASE_ENV = {"SWEEPER_LEASE_STALE_S": "8", "SWEEPER_LEASE_HEARTBEAT_S": "1", "SWEEPER_LEASE_SETTLE_S": "1",
             "SWEEPER_CLOCK_SKEW_S": "2", "PYTHONUNBUFFERED": "1"}


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines()
            if line.strip() and not re.match(r"^\d{4}/\d\d/\d\d [\d:]+ INFO ", line)]


def test_a_driver_five_minutes_ahead_is_refused_by_a_live_holder_and_takes_over_a_dead_one(
        workdir, tracking_uri, mlflow_client):
    env = {**{k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}, **LEASE_ENV}
    spec = write_spec(workdir, "skewed", modes=("bn_only", "full"), seeds=(0, 1), epochs=EPOCHS)
    argv = [SWEEPER, "run", str(spec), "--tracking-uri", tracking_uri, "--storage", str(workdir / "results")]
    faults = str(Path(__file__).resolve().parent / "faults")
    ahead_env = {**env, "SWEEPER_TEST_CLOCK_AHEAD_S": "300",
                 "PYTHONPATH": os.pathsep.join(p for p in (faults, env.get("PYTHONPATH")) if p)}
    with open(workdir / "a.log", "w") as out:
        a = subprocess.Popen(argv, cwd=workdir, env=env, start_new_session=True, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 300
        while not any(len(metric_points(mlflow_client, r.info.run_id, "test_acc")) >= 1
                      for r in children(mlflow_client, "skewed").values()):
            assert a.poll() is None and time.monotonic() < deadline, (workdir / "a.log").read_text()
            time.sleep(0.5)

        refused = subprocess.run(argv, cwd=workdir, env=ahead_env, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert a.poll() is None, (workdir / "a.log").read_text()  # the healthy holder was not evicted
        lines = _lines(refused.stderr)
        errors = [line for line in lines if not line.startswith("sweeper: warning: ")]
        assert len(errors) == 1 and f"pid {a.pid}," in errors[0] and "being run by another driver" in errors[0], lines
        assert "its heartbeat changed while this driver watched" in errors[0]
        clock = [line for line in lines if "clock is" in line]
        assert len(clock) == 1 and re.search(r"this host's clock is 3\d\d s ahead of that of ", clock[0]), lines
        assert "[1/" not in refused.stdout  # it trained nothing
    finally:
        kill_session(a.pid)
        a.wait(timeout=60)
    assert lease_tags(mlflow_client, "skewed")  # the killed holder's claim is left behind

    taker = subprocess.run(argv, cwd=workdir, env=ahead_env, capture_output=True, text=True, timeout=900)
    assert taker.returncode == 0, taker.stdout[-3000:] + taker.stderr[-3000:]
    runs = children(mlflow_client, "skewed")
    assert len(runs) == 4
    for run in runs.values():  # every trial finished: none left waiting in a fence or at starting
        assert run.data.tags.get(names.TAG_STATUS) == "finished" and run.info.status == "FINISHED", run.info.run_name
        assert metric_points(mlflow_client, run.info.run_id, "test_acc") == list(range(1, EPOCHS + 1))
    assert_no_duplicate_steps(mlflow_client, runs)
    assert lease_tags(mlflow_client, "skewed") == {}
