"""Environment variables set for the length of a block and put back as they were after it: the
one way sweeper changes what MLflow, Ray and Tune read from the environment for a while."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator, Mapping


@contextlib.contextmanager
def temporarily(values: Mapping[str, str], *, users_win: bool) -> Iterator[None]:
    """``values`` in ``os.environ`` while the block runs; afterwards each variable is as before
    (removed if it was unset). ``users_win``: a variable the user already set keeps its value."""
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if not (users_win and k in os.environ):
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_shared_lock = threading.Lock()
_shared: dict[frozenset, list] = {}  # the variables of a shared block -> [open blocks, saved values]


@contextlib.contextmanager
def shared_temporarily(values: Mapping[str, str], *, users_win: bool) -> Iterator[None]:
    """``temporarily`` for blocks that threads open at once (the lease heartbeat, the dashboard,
    a trial's logger, the driver's own calls): os.environ is one for the process, so the first
    block to open sets ``values`` and the last to close puts the environment back. With
    ``temporarily`` an overlap (A opens, B opens, A closes, B closes) would clear the values
    while B runs and then leave them set for good. Blocks on the same variables share the
    values of the block that opened first."""
    keys = frozenset(values)
    with _shared_lock:
        entry = _shared.setdefault(keys, [0, {}])
        if entry[0] == 0:
            entry[1] = {k: os.environ.get(k) for k in values}
            for k, v in values.items():
                if not (users_win and k in os.environ):
                    os.environ[k] = v
        entry[0] += 1
    try:
        yield
    finally:
        with _shared_lock:
            entry[0] -= 1
            if entry[0] == 0:
                for k, v in entry[1].items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
