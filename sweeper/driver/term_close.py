"""On SIGTERM the sweep's record is put right first, Tune's graceful stop after.

A SIGTERM has a SIGKILL behind it: `ray job stop` (what deleting a KubeRay RayJob does) sends
SIGKILL 3 s later by default, Kubernetes after the pod's grace period, systemd after its stop
timeout. Tune's graceful stop takes longer than 3 s on a busy head, and a driver killed in it
would leave its parent run and trials RUNNING and its lease claim behind. So at the first
SIGTERM, in a thread beside the stop, the driver marks its running trials and its parent run
KILLED (they resume next time), releases its lease, and prints the interrupted line; from then on
it writes nothing more (``done``), and what Tune's stop still does is fenced: the trials' fences
and the driver's own trial-end fence find the lease released and write nothing.

A failure here (the store down at that moment) is logged and leaves the ordinary end in charge:
the driver then closes its runs after Tune's stop, as it does after a Ctrl-C.
"""

from __future__ import annotations

import logging
import threading

from sweeper.core.logs import cause
from sweeper.record import tracking
from sweeper.record.run_index import trial_runs
from sweeper.record.trial_record import mark_interrupted, state_of
from sweeper.core.states import RUNNING
from sweeper.views import terminal

log = logging.getLogger(__name__)
WAIT_S = 30.0  # how long the driver's end waits for a close in flight before it takes over


class TermClose:
    def __init__(self, client, experiment_id: str, parent_run_id: str, lease, interrupted_line: str):
        self.client, self.experiment_id, self.parent_run_id = client, experiment_id, parent_run_id
        self.lease, self.interrupted_line = lease, interrupted_line
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        """From the signal handler: the close runs in its own thread, once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._close, name="sweeper-term-close", daemon=True)
            self._thread.start()

    def done(self) -> bool:
        """Whether a SIGTERM closed the sweep's record (then the driver writes nothing more);
        waits for a close still in flight."""
        if self._thread is None:
            return False
        self._thread.join(WAIT_S)
        return self._closed

    def _close(self) -> None:
        try:
            with tracking.fast_fail_http():
                interrupt_running(self.client, self.experiment_id, self.parent_run_id)
                self.client.set_terminated(self.parent_run_id, "KILLED")
            # last: once released another driver may take the sweep, and this one must be done
            self.lease.release()
        except Exception as e:  # noqa: BLE001 - the ordinary end closes the runs after Tune's stop (logged)
            log.warning("SIGTERM: could not mark the sweep interrupted at once (%s); it is marked when "
                        "Tune has stopped", cause(e))
            return
        self._closed = True
        log.info("SIGTERM: running trials and the parent run marked KILLED, lease released")
        terminal.say(self.interrupted_line, err=True)


def interrupt_running(client, experiment_id: str, parent_run_id: str | None = None) -> None:
    """Child runs left RUNNING become KILLED, without a status tag: the next run resumes them."""
    for run in trial_runs(client, experiment_id, parent_run_id).values():
        if state_of(run) == RUNNING:
            mark_interrupted(client, run.info.run_id)
