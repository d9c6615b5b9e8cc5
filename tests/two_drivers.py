"""Two `sweeper run` processes on one sweep, started a little apart, for the lease tests
(tests/test_lease_e2e.py on sqlite, tests/cluster/test_two_drivers.py on an MLflow server)."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Ended:
    pid: int
    code: int
    out: str
    err: str


def run_two_drivers(argv: list[str], cwd: Path, env: dict, stagger_s: float = 2.0,
                    timeout_s: float = 900) -> list[Ended]:
    """Start ``argv`` twice, ``stagger_s`` apart, and wait for both (output to files)."""
    procs = []
    for i in range(2):
        out, err = open(cwd / f"driver{i}.out", "w+"), open(cwd / f"driver{i}.err", "w+")
        procs.append((subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err,
                                       start_new_session=True), out, err))
        if i == 0:
            time.sleep(stagger_s)
    ended = []
    for proc, out, err in procs:
        code = proc.wait(timeout=timeout_s)
        out.seek(0)
        err.seek(0)
        ended.append(Ended(proc.pid, code, out.read(), err.read()))
        out.close()
        err.close()
    return ended


def assert_one_trained_and_one_named_the_holder(ended: list[Ended]) -> tuple[Ended, Ended]:
    codes = sorted(e.code for e in ended)
    assert codes == [0, 2], [(e.code, e.out[-2000:], e.err[-2000:]) for e in ended]
    winner = next(e for e in ended if e.code == 0)
    loser = next(e for e in ended if e.code == 2)
    # MLflow logs two INFO lines when this process is the one that builds a new store's schema
    lines = [line for line in loser.err.splitlines()
             if line.strip() and not re.match(r"^\d{4}/\d\d/\d\d [\d:]+ INFO mlflow\.store\.db\.utils", line)]
    assert len(lines) == 1 and "Traceback" not in loser.err, loser.err
    assert f"pid {winner.pid}," in lines[0] and "being run by another driver (host " in lines[0], lines[0]
    assert "[1/" not in loser.out  # the loser trained nothing
    return winner, loser
