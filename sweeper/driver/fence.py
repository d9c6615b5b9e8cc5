"""The fence: whether a lease token is still the sweep's, checked before every write (the protocol
and its safety argument are in sweeper.driver.lease's docstring). Imported by name from
sweeper.driver.lease too."""

from __future__ import annotations

import logging
import threading
import time

from sweeper.core import settings
from sweeper.driver.claims import clock_namespace, verdict, watch_clock
from sweeper.record.store import TrackingStore
from sweeper.driver.lease import LeaseLost, fence_retry_s, lost_error, trust_s

log = logging.getLogger(__name__)


class Fence:
    """Whether the lease ``token`` (a driver id) is still the sweep's: what a trial checks before
    it writes a checkpoint or logs an epoch, and the driver before it writes a trial's end.

    ``__call__`` blocks until verified and raises LeaseLost when another driver holds the sweep;
    ``verified`` is one try; ``holds`` never raises. Plain and picklable (the client is made on
    first use, in the process that checks; what it knows of times is this process's and is not
    carried). ``own_writes`` (the driver's own fences) maps each heartbeat it wrote to when it
    began writing it, on ``claims.watch_clock``."""

    def __init__(self, tracking_uri: str | TrackingStore, run_id: str, token: str, sweep: str = "", client=None,
                 own_writes: dict[float, float] | None = None):
        self.tracking_uri, self.run_id, self.token, self.sweep = tracking_uri, run_id, token, sweep
        self._client = client
        self.own_writes = own_writes if own_writes is not None else {}
        self._fresh_state()

    def _fresh_state(self) -> None:
        self.trusted_until = float("-inf")  # watch_clock: a frozen process finds it expired
        self.passed_at = float("-inf")  # wall clock: when the last check that let a write through began
        self._last: tuple[float, float] | None = None  # (heartbeat read last, when that read began)
        self._written_after = float("-inf")  # a moment before the heartbeat read last was written
        self._unreachable: str | None = None  # why the store did not answer, while it does not
        self._lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._called = float("-inf")  # watch_clock of the last check asked for (the poller stops when idle)

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k in ("tracking_uri", "run_id", "token", "sweep")}
        return {**state, "_client": None, "own_writes": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._fresh_state()

    @property
    def client(self):
        if self._client is None:
            self._client = TrackingStore.parse(self.tracking_uri).client(checked=False)
        return self._client

    def read(self) -> bool:
        """One read of the parent run: True when the lease is still ``token``'s, False when the
        store did not answer; LeaseLost when another driver has taken the sweep over. One read
        at a time (the poller's and a check's): an answer older than the last one recorded must
        not be taken for a change."""
        with self._lock:
            return self._read()

    def _read(self) -> bool:
        from sweeper.record import tracking

        began = watch_clock()
        try:
            with tracking.fast_fail_http():
                tags = self.client.get_run(self.run_id).data.tags
        except Exception as e:  # noqa: BLE001 - any failure: not verified; the caller decides
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            if self._unreachable is None:
                log.warning("sweep %r: cannot read its lease (%s); writes wait until it is verified", self.sweep, why)
            self._unreachable = why
            return False
        self._unreachable = None
        mine, taker, lost = verdict(tags, self.token)
        if lost:
            raise lost_error(self.sweep, taker)
        beat = mine.heartbeat
        if beat in self.own_writes:  # this process wrote it: it began then
            self._written_after = max(self._written_after, self.own_writes[beat])
        elif self._last is not None and self._last[0] != beat:  # written after that read began
            self._written_after = max(self._written_after, self._last[1])
        if mine.wrote is not None and mine.clock and mine.clock == clock_namespace():
            # the writer's clock is this process's (the driver's machine) and the claim says when the write
            # began on it: a trial there need not wait for the next heartbeat to learn a moment before this one
            self._written_after = max(self._written_after, mine.wrote)
        self._last = (beat, began)
        self.trusted_until = self._written_after + trust_s()
        return True

    def verified(self) -> bool:
        """One read (LeaseLost when another driver holds the sweep), then: is the heartbeat read
        last still too young for any driver to have found it stale, on this process's clock?
        Asked after the read: a process frozen while its read was in flight wakes up with an
        answer from before the freeze, and must not write on it."""
        self.read()  # when the store does not answer, the heartbeat read last is judged instead
        if watch_clock() < self.trusted_until:
            self.passed_at = time.time()
            return True
        return False

    def __call__(self) -> None:
        """Return once the lease is verified; raise LeaseLost when it is not the sweep's. Blocks
        while the store cannot be read or the heartbeat has not been seen to change lately, and
        says why every SWEEPER_PROGRESS_EVERY_S while it does."""
        self._called = watch_clock()
        self._start_polling()
        waiting_since = said = None
        while not self.verified():
            now = watch_clock()
            waiting_since = now if waiting_since is None else waiting_since
            if now - waiting_since >= settings.PROGRESS_EVERY_S.get() and (said is None or now - said >= settings.PROGRESS_EVERY_S.get()):
                log.warning("sweep %r: a write has waited %.0f s for the lease to be verified: %s", self.sweep,
                            now - waiting_since, self.why_waiting())
                said = now
            time.sleep(fence_retry_s())

    def why_waiting(self) -> str:
        if self._unreachable is not None:
            return f"the tracking store does not answer ({self._unreachable})"
        if self._last is None:
            return "the driver's claim has not been read yet"
        return (f"the driver's heartbeat has not been seen to change for {watch_clock() - self._written_after:.0f} s "
                "(the driver is frozen, overloaded or cut off from tracking; it is taken over once it stands "
                f"still for {settings.LEASE_STALE_S.get():.0f} s)")

    def _start_polling(self) -> None:
        """A trial's fence reads the claim every HEARTBEAT_S / 2 in the background, so that the
        moment it trusts the heartbeat from stays recent between two checks an epoch apart. It
        stops once no check was asked for STALE_S (a trial that ended, in an actor Ray reuses)."""
        if (self._poller is not None and self._poller.is_alive()) or self.own_writes:
            return
        every = max(0.5, settings.LEASE_HEARTBEAT_S.get() / 2)
        idle_s = settings.LEASE_STALE_S.get()

        def poll() -> None:
            while watch_clock() - self._called < idle_s:
                time.sleep(every)
                try:
                    self.read()
                except LeaseLost:
                    return  # the next check reads it again and raises
                except Exception:  # read() catches the store's errors; anything else is logged, the checks still read
                    log.debug("sweep %r: lease poll failed", self.sweep, exc_info=True)

        self._poller = threading.Thread(target=poll, name="sweeper-fence", daemon=True)
        self._poller.start()

    def holds(self) -> bool:
        try:
            return self.verified()
        except LeaseLost:
            return False
