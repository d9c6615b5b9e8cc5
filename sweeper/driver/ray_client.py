"""Ray Client (`--address ray://HOST:PORT`): a driver outside the cluster.

Under Ray Client this process is not a Ray driver: every Ray call is relayed to a server on the
head. Ray Tune copes by moving its experiment loop into an actor on the head, so callbacks run
there and whatever they record (here: which trials ended, and how) never comes back, nor does
what they print; paths on this machine mean nothing there; large objects are slow or refused.
The sweep is therefore split:

- here, on the laptop: the spec, the checks, the sweep's experiment and parent run, the final
  exit code and the parent run's end; every MLflow call the driver makes before and after the fit.
- on the head, in one Ray task (``num_cpus=0``, pinned to the head node by its
  ``node:__internal_head__`` resource, no retries): the whole ``tuner.fit()`` with its callbacks,
  as a driver on the cluster would run it. It returns a small summary (the trial keys it settled,
  whether it was stopped) and nothing else crosses the connection but the spec, the remaining
  trials and the lines the fit prints.
- the lines the fit prints (the progress view) come back through a ``ray.util.queue.Queue`` on
  the head and are printed here as they arrive; a Ctrl-C here goes the other way through a second
  queue and stops Tune on the head through its SIGUSR1 handler, the same graceful stop as a
  Ctrl-C given to a local driver.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

from sweeper.core.errors import SweepError

HEAD_RESOURCE = "node:__internal_head__"  # every Ray head carries this resource (Ray >= 2.8)
POLL_S = 0.5
CONNECT_TRIES = 3
SESSION_NOT_STARTED = "Initialization failure from server"  # Ray Client's words (util/client/worker.py)

log = logging.getLogger(__name__)


def connect(address: str) -> None:
    """``ray.init`` through Ray Client; anything that stops it is one line (SweepError).

    A session the head's client server could not start (its per-client server process failed or
    was slow to come up: seen on a busy head) is tried again, ``CONNECT_TRIES`` times in all, each
    retry logged; what still fails is one line carrying the head's own reason."""
    import ray

    for attempt in range(1, CONNECT_TRIES + 1):
        try:
            _init(address)
            return
        except Exception as e:  # noqa: BLE001 - every failure here means "cannot use this cluster"
            reason = failure_reason(e)
            if attempt < CONNECT_TRIES and SESSION_NOT_STARTED in str(e):
                wait_s = 2.0 * attempt
                log.warning("ray: %s did not start a session (%s); trying again in %.0f s (%d of %d)",
                            address, reason, wait_s, attempt + 1, CONNECT_TRIES)
                ray.shutdown()
                time.sleep(wait_s)
                continue
            hint = ""
            if "timeout" in str(e).lower():
                # seen with a wrong RAY_AUTH_TOKEN: the port answers, the session never starts
                hint = (" (the port answers but no session started: check that this machine runs the "
                        "cluster's Ray version and, if the cluster uses token auth, its RAY_AUTH_TOKEN)")
            raise SweepError(f"ray: cannot connect to {address}: {reason}{hint}") from None


def _init(address: str) -> None:
    import logging
    import warnings

    import ray

    with warnings.catch_warnings():
        # Ray warns on stderr before it raises; the one line of connect() says it all
        warnings.simplefilter("ignore", UserWarning)
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)


def failure_reason(e: BaseException) -> str:
    """``Type: message`` in one line. Ray's "Initialization failure from server:" puts the head's
    traceback below its first line; the traceback's last line (the head's exception) is the
    reason, so it is kept."""
    from sweeper.driver.driver_exit import one_line

    line = one_line(e)
    below = [text.strip() for text in str(e).splitlines()[1:] if text.strip()]
    if below:
        line = f"{line} {below[-1]}"
    return line[:400]


def fit_on_head(fit: Callable, signals, *, spec, ctx, remaining: list, sampled_todo: int,
                storage_root: str, done_before: list = (), epochs_done: dict | None = None) -> tuple[set[str], bool]:
    """Run ``fit(spec, ctx, client, remaining, sampled_todo, storage_root, done_before, epochs_done=...)``
    in a Ray task on the head, relaying its output here; returns what ``fit`` returns."""
    import ray
    from ray.util.queue import Queue

    on_head = {"num_cpus": 0, "resources": {HEAD_RESOURCE: 0.001}}
    lines, stop = Queue(actor_options=on_head), Queue(maxsize=1, actor_options=on_head)
    task = ray.remote(max_retries=0, **on_head)(_fit_task).options(name="sweeper_fit_on_head")
    ref = task.remote(fit, spec, ctx, remaining, sampled_todo, storage_root, done_before, lines, stop, epochs_done)
    signals.graceful = lambda: None  # the loop below forwards the stop to the head
    stop_sent = False
    try:
        while True:
            try:
                done, _ = ray.wait([ref], timeout=POLL_S)
            except KeyboardInterrupt:  # no handler of ours (sweeper.run): Python's own Ctrl-C
                if stop_sent:
                    raise
                signals.signum, done = signals.signum or signal.SIGINT, []  # stop the head gracefully
            if (signals.received or signals.stop_requested) and not stop_sent:
                stop.put_nowait("stop")
                stop_sent = True
            _print_lines(lines)
            if done:
                break
        _print_lines(lines)
        return _result(ref)
    finally:
        signals.graceful = None
        for queue in (lines, stop):
            try:
                queue.shutdown(force=True)
            except Exception:  # noqa: BLE001 - the connection may be the thing that failed
                pass


def _print_lines(queue) -> None:
    from sweeper.views.terminal import say

    size = queue.size()
    for stream, line in (queue.get_nowait_batch(size) if size else []):
        say(line, err=stream == "err")


def _result(ref) -> Any:
    import ray
    from ray.exceptions import RayTaskError

    try:
        return ray.get(ref)
    except RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None  # the fit's own error (SweepError, a Tune error...), not Ray's wrapper
        raise
    except ray.exceptions.RayError as e:
        from sweeper.driver.driver_exit import DriverFailure, one_line

        raise DriverFailure(f"the sweep's Tune loop on the head was lost: {one_line(e)}") from None


# --- what runs on the head ---------------------------------------------------------------------


def _fit_task(fit: Callable, spec, ctx, remaining: list, sampled_todo: int, storage_root: str, done_before: list,
              lines, stop, epochs_done: dict | None = None) -> tuple[set[str], bool]:
    import logging

    from sweeper.core import settings
    from sweeper.core.logs import NAMESPACE, UserLines

    logging.getLogger("ray").setLevel(logging.WARNING)  # as ray.init(logging_level=...) in a driver
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # Tune passes it on to the trials
    os.environ.update(ctx.tracking_env)  # the callbacks log with the driver's MLflow credentials
    settings.apply(ctx.settings)  # the user's SWEEPER_* settings, not the head's (core.settings)
    # Until Tune installs its SIGUSR1 handler, a stop request waits (the default would kill us).
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    finished = threading.Event()
    watcher = threading.Thread(target=_forward_stop, args=(stop, finished), daemon=True)
    watcher.start()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Relay(lines, "out", saved[0]), _Relay(lines, "err", saved[1])
    warnings = UserLines(sys.stderr)  # the callbacks' warnings reach the user's stderr, as in a local driver
    logging.getLogger(NAMESPACE).addHandler(warnings)
    try:
        client = ctx.store.client()
        # ray_log=False: Ray's output stays in the head's own logs; a driver log file here would land
        # in the head's working directory, and its path mean nothing on the user's machine
        return fit(spec, ctx, client, remaining, sampled_todo, storage_root, done_before, ray_log=False,
                   epochs_done=epochs_done)
    finally:
        logging.getLogger(NAMESPACE).removeHandler(warnings)
        sys.stdout, sys.stderr = saved
        finished.set()


def _forward_stop(stop, finished: threading.Event) -> None:
    from ray.util.queue import Empty

    while not finished.is_set():
        try:
            stop.get(timeout=1.0)
        except Empty:
            continue
        except Exception:  # noqa: BLE001 - the queue went away: the driver is gone or done
            return
        while not finished.is_set():
            if signal.getsignal(signal.SIGUSR1) not in (signal.SIG_IGN, signal.SIG_DFL, None):
                os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop
                return
            time.sleep(0.2)
        return


class _Relay:
    """A text stream that sends each complete line to the driver's queue (and keeps a copy in
    the worker's own log)."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, queue, stream: str, copy_to):
        self.queue, self.stream, self.copy_to = queue, stream, copy_to
        self.partial = ""

    def write(self, text: str) -> int:
        self.copy_to.write(text)
        self.partial += text
        *complete, self.partial = self.partial.split("\n")
        for line in complete:
            try:
                self.queue.put_nowait((self.stream, line))
            except Exception:  # noqa: BLE001 - output must never stop the sweep
                pass
        return len(text)

    def flush(self) -> None:
        self.copy_to.flush()

    def isatty(self) -> bool:
        return False
