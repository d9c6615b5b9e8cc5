"""Fault injection for tests/test_asha_e2e.py, loaded by every Python process started with this
folder on PYTHONPATH (the `sweeper run` driver and its Ray workers). Inert unless
SWEEPER_TEST_STORE_FAILS_AT_STOP is set: then, in the process that imports sweeper.record.trial_record
(the driver), the write that records a scheduler's stop fails as a tracking store that went away
would. Nothing is imported here until sweeper.record.trial_record is, so other processes are unchanged."""

import importlib.abc
import importlib.machinery
import os
import sys

TARGET = "sweeper.record.trial_record"


def _refuse(client, run_id):
    raise ConnectionError("injected by tests/faults: the tracking store went away")


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.mark_stopped_early = _refuse

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("SWEEPER_TEST_STORE_FAILS_AT_STOP"):
    sys.meta_path.insert(0, _PatchOnImport())
