"""Trying a tracking call again for a bounded time: ``retry`` (an attempt that says whether it
succeeded) and ``through_outage`` (a call with a value, the last error raised).

Why a module of its own: the trial's logger, the trial-state records and the driver's reads after
training all ride out the same kind of outage (a tracking server restarting), and one loop keeps
their deadlines and pacing alike.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from sweeper.core.errors import one_line

log = logging.getLogger(__name__)
T = TypeVar("T")


def retry(attempt: Callable[[], bool], wait_s: float, every_s: float) -> bool:
    """Call ``attempt`` until it returns True, every ``every_s`` seconds for at most ``wait_s``
    (once when 0); whether it succeeded in time."""
    deadline = time.monotonic() + wait_s
    while True:
        if attempt():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(every_s, max(0.0, deadline - time.monotonic())))


def through_outage(call: Callable[[], T], what: str, wait_s: float, every_s: float = 2.0) -> T:
    """``call()``, tried again (``retry``) every ``every_s`` seconds for ``wait_s`` while the store
    does not answer (a tracking server restarting; another thread's fast-fail block open at that
    moment); each failed try logged, the last error raised."""
    result: list[T] = []
    errors: list[BaseException] = []
    deadline = time.monotonic() + wait_s  # not after retry's own: "trying again" is only said when it will

    def attempt() -> bool:
        try:
            result.append(call())
            return True
        except Exception as e:  # noqa: BLE001 - any tracking failure: tried again, the last one raised (logged)
            errors.append(e)
            if time.monotonic() < deadline:
                log.warning("%s: the tracking store did not answer (%s); trying again in %.0f s", what,
                            one_line(e), every_s)
            else:
                log.warning("%s: the tracking store did not answer (%s); gave up after %.0f s", what,
                            one_line(e), wait_s)
            return False

    if retry(attempt, wait_s, every_s):
        return result[0]
    raise errors[-1]
