"""Fault injection and tracing for the end-to-end tests, kept out of production code.

A test puts this folder first on the PYTHONPATH of the processes it starts (the ``sweeper run``
driver and its Ray workers), so Python runs this file as each of them starts. Each hook below is
inert unless its variable is set, and patches its module only as that module is imported:

- ``FAULT_KILL_AT_EPOCH`` + ``FAULT_ONCE_FLAG`` (the ``worker_killed_once`` fixture): right after
  a trial's epoch is stored and logged (``sweeper.driver.tracked.TrackedTrial.log_epoch``), the first worker to
  reach that epoch creates the flag file (exclusively: exactly one trial dies, once) and SIGKILLs
  its own process.
- ``SWEEPER_TEST_STORE_FAILS_AT_STOP`` (tests/test_asha_e2e.py): in the driver, the write that
  records a scheduler's stop (``sweeper.record.trial_record.mark_stopped_early``) fails as a
  tracking store that went away would.
- ``SWEEPER_TEST_TRACE_CHECKPOINTS`` (tests/fencing.py): a folder where each trial appends
  ``<lease token> <epoch> <unix time>`` to a file named after its key whenever it has stored a
  checkpoint (the time: when the fence check that let the write through began), wrapping
  ``sweeper.driver.tracked.TrackedTrial.store_checkpoint``.
- ``SWEEPER_TEST_CLOCK_AHEAD_S`` (tests/test_clock_skew_e2e.py): the wall clock (``time.time``,
  ``time.time_ns``) of every process of this driver runs that many seconds ahead, as on a laptop
  whose clock is wrong; monotonic clocks are left alone (libfaketime, which fakes the wall clock
  for a whole process, breaks Python's sleeps and timed waits).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import signal
import sys
import time
from pathlib import Path

PATCHES = {}  # module name -> [function(module)]


def _kill_once(flag: str) -> None:
    try:
        fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_at_epoch(module) -> None:
    at, flag = int(os.environ["FAULT_KILL_AT_EPOCH"]), os.environ["FAULT_ONCE_FLAG"]
    logged = module.TrackedTrial.log_epoch

    def log_epoch(self, metrics):
        logged(self, metrics)
        if int(metrics["epoch"]) == at:
            _kill_once(flag)

    module.TrackedTrial.log_epoch = log_epoch


def _refuse_stops(module) -> None:
    def _refuse(client, run_id):
        raise ConnectionError("injected by tests/faults: the tracking store went away")

    module.mark_stopped_early = _refuse


def _trace_checkpoints(module) -> None:
    folder, stored = os.environ["SWEEPER_TEST_TRACE_CHECKPOINTS"], module.TrackedTrial.store_checkpoint

    def store_checkpoint(self, epoch):
        stored(self, epoch)
        at = self.fence.passed_at if self.fence is not None else time.time()  # the check that let the write through
        with open(Path(folder, self.trial.key), "a") as trace:  # one short line per write: appends stay whole
            trace.write(f"{self.ctx.lease_token} {epoch} {at:.3f}\n")

    module.TrackedTrial.store_checkpoint = store_checkpoint


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            return None
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            for patch in PATCHES[name]:
                patch(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("SWEEPER_TEST_CLOCK_AHEAD_S"):
    _ahead_s = float(os.environ["SWEEPER_TEST_CLOCK_AHEAD_S"])
    _real_time, _real_time_ns = time.time, time.time_ns
    time.time = lambda: _real_time() + _ahead_s
    time.time_ns = lambda: _real_time_ns() + int(_ahead_s * 1e9)
if os.environ.get("FAULT_KILL_AT_EPOCH") and os.environ.get("FAULT_ONCE_FLAG"):
    PATCHES.setdefault("sweeper.driver.tracked", []).append(_kill_at_epoch)
if os.environ.get("SWEEPER_TEST_STORE_FAILS_AT_STOP"):
    PATCHES.setdefault("sweeper.record.trial_record", []).append(_refuse_stops)
if os.environ.get("SWEEPER_TEST_TRACE_CHECKPOINTS"):
    PATCHES.setdefault("sweeper.driver.tracked", []).append(_trace_checkpoints)
if PATCHES:
    sys.meta_path.insert(0, _PatchOnImport())
