"""Fault injection and tracing for the end-to-end tests, kept out of production code.

A test puts this folder first on the PYTHONPATH of the processes it starts (the ``sweeper run``
driver and its Ray workers), so Python runs this file as each of them starts. Each hook below is
inert unless its variable is set, and patches its module only as that module is imported:

- ``FAULT_KILL_AT_EPOCH`` + ``FAULT_ONCE_FLAG`` (the ``worker_killed_once`` fixture): right after
  a trial's epoch is stored and logged (``sweeper.driver.worker._log_epoch``), the first worker to
  reach that epoch creates the flag file (exclusively: exactly one trial dies, once) and SIGKILLs
  its own process.
- ``SWEEPER_TEST_STORE_FAILS_AT_STOP`` (tests/test_asha_e2e.py): in the driver, the write that
  records a scheduler's stop (``sweeper.record.trial_record.mark_stopped_early``) fails as a
  tracking store that went away would.
- ``SWEEPER_TEST_TRACE_CHECKPOINTS`` (tests/fencing.py): a folder where each trial appends
  ``<lease token> <epoch> <unix time>`` to a file named after its key whenever it has stored a
  checkpoint (the time: when the fence check that let the write through began), through the
  worker's ``_checkpoint_stored`` hook.
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
    at, flag, logged = int(os.environ["FAULT_KILL_AT_EPOCH"]), os.environ["FAULT_ONCE_FLAG"], module._log_epoch

    def _log_epoch(logger, metrics):
        logged(logger, metrics)
        if int(metrics["epoch"]) == at:
            _kill_once(flag)

    module._log_epoch = _log_epoch


def _refuse_stops(module) -> None:
    def _refuse(client, run_id):
        raise ConnectionError("injected by tests/faults: the tracking store went away")

    module.mark_stopped_early = _refuse


def _trace_checkpoints(module) -> None:
    folder = os.environ["SWEEPER_TEST_TRACE_CHECKPOINTS"]

    def _checkpoint_stored(ctx, payload, epoch, fence):
        at = fence.passed_at if fence is not None else time.time()  # the check that let the write through
        with open(Path(folder, payload.key), "a") as trace:  # one short line per write: appends stay whole
            trace.write(f"{ctx.lease_token} {epoch} {at:.3f}\n")

    module._checkpoint_stored = _checkpoint_stored


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


if os.environ.get("FAULT_KILL_AT_EPOCH") and os.environ.get("FAULT_ONCE_FLAG"):
    PATCHES.setdefault("sweeper.driver.worker", []).append(_kill_at_epoch)
if os.environ.get("SWEEPER_TEST_STORE_FAILS_AT_STOP"):
    PATCHES.setdefault("sweeper.record.trial_record", []).append(_refuse_stops)
if os.environ.get("SWEEPER_TEST_TRACE_CHECKPOINTS"):
    PATCHES.setdefault("sweeper.driver.worker", []).append(_trace_checkpoints)
if PATCHES:
    sys.meta_path.insert(0, _PatchOnImport())
