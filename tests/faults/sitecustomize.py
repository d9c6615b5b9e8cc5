"""Fault injection for the tests that kill a trial's worker, kept out of production code.

A test puts this folder first on PYTHONPATH of the Ray it starts (the ``worker_killed_once``
fixture in tests/conftest.py), so Python runs this file as every Ray worker starts. With
``FAULT_KILL_AT_EPOCH`` and ``FAULT_ONCE_FLAG`` set, it wraps ``sweeper.driver.worker._log_epoch``
as that module is imported: right after the epoch's checkpoint is stored and its metrics logged,
the first worker to reach that epoch creates the flag file (exclusively, so exactly one trial dies,
once) and SIGKILLs its own process. Without both variables this file does nothing.
"""

from __future__ import annotations

import importlib.abc
import os
import signal
import sys

TARGET = "sweeper.driver.worker"


def _kill_once(flag: str) -> None:
    try:
        fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(module, at: int, flag: str) -> None:
    logged = module._log_epoch

    def _log_epoch(logger, metrics):
        logged(logger, metrics)
        if int(metrics["epoch"]) == at:
            _kill_once(flag)

    module._log_epoch = _log_epoch


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def __init__(self, at: int, flag: str):
        self.at, self.flag = at, flag

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _wrap(module, self.at, self.flag)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("FAULT_KILL_AT_EPOCH") and os.environ.get("FAULT_ONCE_FLAG"):
    sys.meta_path.insert(0, _PatchOnImport(int(os.environ["FAULT_KILL_AT_EPOCH"]), os.environ["FAULT_ONCE_FLAG"]))
