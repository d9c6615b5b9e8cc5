"""One driver per sweep: an exclusive lease kept in tags of the sweep's parent MLflow run.

MLflow has no compare-and-swap, but every store it has (sqlite, a database behind
``mlflow server``) shows a write to every later read. The lease is built on that alone:

1. A driver writes its OWN tag ``sweeper.lease.<driver id>`` = {host, pid, since, heartbeat}.
2. It waits ``SETTLE_S``, then reads all lease tags again.
3. If another live claim is there, it removes its own tag, waits a random time and looks again:
   a claim still there then is a holder, and the driver stops with LeaseHeld (exit 2, naming
   host, pid and since). Two drivers that started together both withdraw; the random wait lets
   one through first (a few tries). A claim seen before writing stops the driver at once.
4. Otherwise it holds the sweep; a background thread refreshes ``heartbeat`` every
   ``HEARTBEAT_S``, and the tag is removed when the driver ends.

Why two drivers never both proceed: say A proceeds after writing at wA and reading at rA, and B
after wB and rB (w < r for each). A saw no B, so wB came after rA; B saw no A, so wA came after
rB. Then wA < rA < wB < rB < wA: impossible. A claim only disappears when its driver withdraws
(it then does not train) or when it is stale.

Stale: a claim whose heartbeat has not CHANGED for ``STALE_S`` (90 s), as the next driver measures
it on its own monotonic clock (``claims.ClaimWatch``: read, watch, read again), is a dead driver
(SIGKILL, lost machine) and is removed by it, so a dead holder blocks a sweep for at most about
90 s after a driver starts watching it. On the same machine (same boot and pid namespace) a claim
whose process is gone is dead at once. No host's timestamp is subtracted from another's to take a
sweep over: the claim's ``heartbeat`` (the writer's wall clock) is only compared with this host's
to refuse at once, without watching, a claim that looks fresh (refusing is always safe). A claim
that looks old is watched: a change means a live driver whose clock disagrees with this one (the
driver says so in one line and stops, LeaseHeld), no change for STALE_S means a dead one.

Fencing (a driver that wakes up after a takeover must not write again): the winner writes
``sweeper.holder`` = {driver, host, pid, since} on the parent run right after it has won.
Its driver id is the fencing token: every trial gets it (``SweepContext.lease_token``) and a
``Fence`` checks it before each write (one read of the parent run): a holder tag naming another
driver, or this driver's claim gone, is ``LeaseLost``. The holder tag is never removed, so a
driver that wakes after the new holder has finished still finds it. The heartbeat makes the same
check before it rewrites its claim, and calls ``on_lost`` (the driver stops Tune and exits 2).
A check passes only while the heartbeat it read is younger than ``TRUST_S`` = ``STALE_S`` / 2 on
the checker's own clock: a taker needs a value to stand still for STALE_S from when it first saw
it, so from when the value was written. The checker knows a moment before that write without
comparing two clocks: its own write (the driver), the start of its last read that still returned
the previous value (a trial; ``Fence`` polls so that moment stays recent), or, for a trial on the
driver's own machine, the moment the claim says its write began (``wrote``: a reading of the one
clock both processes read, the same boot and time namespace, ``claims.clock_namespace``; so a new
trial there need not wait a heartbeat; elsewhere it is ignored). A process
frozen while its read was in flight wakes up with an answer from before the freeze: the moment
it trusts from is from before the freeze too, so the trust has expired; when the store cannot be
read a write goes through only until that moment is TRUST_S old; after that a check blocks (and
says why every ``SWEEPER_PROGRESS_EVERY_S``) until the store answers.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from typing import Callable

from sweeper.core import settings
from sweeper.record import names
from sweeper.record.store import TrackingStore
from sweeper.core.errors import SweepError, SweeperError
from sweeper.core.states import EXIT_LEASE_LOST
from sweeper.driver.claims import (Claim, ClaimWatch, claims_in, clock_namespace, pid_gone, pid_namespace,
                                   watch_clock)

log = logging.getLogger(__name__)

TRIES = 5  # claims withdrawn because another driver claimed in the same settle, before giving up


def trust_s() -> float:
    """How long after its write a heartbeat is trusted, on the checker's clock: a taker needs it
    to stand still for STALE_S on its own; the other half is margin for the two clocks' rates and
    the requests in flight."""
    return settings.LEASE_STALE_S.get() / 2


def fence_retry_s() -> float:
    return min(2.0, settings.LEASE_HEARTBEAT_S.get())


class LeaseHeld(SweepError):
    """Another live driver holds this sweep."""


class ParentSuperseded(SweeperError):
    """The run this lease was claimed on is not the sweep's parent: ``parent_run_id`` is (the
    driver's hold takes that one instead; never shown to a user)."""

    def __init__(self, parent_run_id: str):
        super().__init__(parent_run_id)
        self.parent_run_id = parent_run_id


class LeaseLost(SweepError):
    """The lease this driver (or trial) was started under is no longer the sweep's: another
    driver took it over. Whoever raises it stops without writing anything more."""

    exit_code = EXIT_LEASE_LOST


def _claims(client, run_id: str) -> dict[str, Claim]:
    return claims_in(client.get_run(run_id).data.tags)


def lost_error(sweep: str, taker: Claim | None) -> LeaseLost:
    who = (f"{taker.host}-{taker.pid} (since {taker.since_text()})" if taker is not None
           else "another driver (this driver's claim was removed as stale)")
    return LeaseLost(f"sweep {sweep!r} was taken over by {who}: this driver stopped without writing")


def check_times() -> tuple[float, float, float]:
    """(stale, heartbeat, settle) seconds, refused (SweepError) when a live holder could look
    stale: its heartbeat may be HEARTBEAT_S old, and seen on a clock CLOCK_SKEW_S ahead."""
    stale, beat = settings.LEASE_STALE_S.get(), settings.LEASE_HEARTBEAT_S.get()
    skew = settings.CLOCK_SKEW_S.get()
    if stale <= beat + skew:
        raise SweepError(f"SWEEPER_LEASE_STALE_S ({stale:g} s) must exceed SWEEPER_LEASE_HEARTBEAT_S ({beat:g} s) "
                         f"+ SWEEPER_CLOCK_SKEW_S ({skew:g} s), or a live driver's claim could be taken over")
    return stale, beat, settings.LEASE_SETTLE_S.get()


class Lease:
    """The claim of this driver on one sweep; ``acquire`` or LeaseHeld, ``release`` at the end.

    After ``acquire`` the heartbeat thread checks the lease before each beat; when another driver
    has taken it over, ``lost`` holds the LeaseLost to show and ``on_lost`` is called (then at
    every later beat, until ``release``)."""

    def __init__(self, client, run_id: str, sweep: str):
        self.stale_s, self.heartbeat_s, self.settle_s = check_times()
        self.client = client
        self.run_id = run_id
        self.sweep = sweep
        self.driver = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.since = time.time()
        self._stop = threading.Event()
        self._released = False
        self._thread: threading.Thread | None = None
        self.lost: LeaseLost | None = None
        self.on_lost: Callable[[], None] | None = None
        self.own_writes: dict[float, float] = {}  # heartbeat written -> watch_clock when its write began
        self.watch = ClaimWatch()  # the other drivers' claims, watched while this one decides
        from sweeper.driver.fence import Fence

        self.fence = Fence(client.tracking_uri, run_id, self.driver, sweep, client=client, own_writes=self.own_writes)

    @property
    def tag(self) -> str:
        return names.TAG_LEASE_PREFIX + self.driver

    def _write(self, client=None) -> float:
        """Write this driver's claim with a new heartbeat; when the write began (watch_clock),
        which this driver's fences trust the heartbeat from."""
        began, beat = watch_clock(), time.time()
        self.own_writes[beat] = began
        for old in sorted(self.own_writes)[:-8]:  # the last few are all a read can still return
            del self.own_writes[old]
        (client or self.client).set_tag(self.run_id, self.tag, json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "since": self.since, "heartbeat": beat,
             "pidns": pid_namespace(), "clock": clock_namespace(), "wrote": began}))
        return began

    def _others(self) -> dict[str, Claim]:
        """The other drivers' claims that may be alive; the dead ones are removed: a process gone
        on this machine, or a heartbeat this driver watched stand still for STALE_S."""
        claims = {d: c for d, c in _claims(self.client, self.run_id).items() if d != self.driver}
        self.watch.observe(claims)
        live = {}
        for driver, claim in claims.items():
            here = bool(claim.pidns) and claim.pidns == pid_namespace()
            if self.watch.unchanged_for(driver) > self.stale_s or (here and pid_gone(claim.pid)):
                self._drop(names.TAG_LEASE_PREFIX + driver)  # a dead driver's claim
                continue
            live[driver] = claim
        return live

    def _looks_old(self, claim: Claim) -> bool:
        return time.time() - claim.heartbeat > self.stale_s

    def _watched_others(self) -> dict[str, Claim]:
        """``_others``, watched until each claim is decided: one that looks fresh on this clock
        is refused at once (refusing needs no agreement of clocks); one that looks old is read
        again every few seconds until it changes (alive: its clock disagrees with this one) or
        has stood still for STALE_S (dead: removed)."""
        live, said = self._others(), False
        while live and all(self._looks_old(c) and not self.watch.alive(d) for d, c in live.items()):
            if not said:
                holder = min(live.values(), key=lambda c: c.since)
                log.warning("sweep %r: the claim of %s-%s looks %.0f s old by this host's clock; watching its "
                            "heartbeat for up to %.0f s before taking the sweep over", self.sweep, holder.host,
                            holder.pid, time.time() - holder.heartbeat, self.stale_s)
                said = True
            time.sleep(fence_retry_s())
            live = self._others()
        for driver, claim in live.items():
            self._say_clock(claim, self.watch.clock_offset(driver))
        return live

    def _say_clock(self, claim: Claim, offset: float | None) -> None:
        bound = settings.CLOCK_SKEW_S.get()
        if offset is not None and abs(offset) > bound:
            log.warning("this host's clock is %.0f s %s that of %s (pid %s), more than SWEEPER_CLOCK_SKEW_S "
                        "(%.0f s): the lease does not rely on it, but times shown and the run index do; set "
                        "both clocks by NTP", abs(offset), "behind" if offset > 0 else "ahead of", claim.host,
                        claim.pid, bound)

    def _drop(self, tag: str) -> None:
        try:
            self.client.delete_tag(self.run_id, tag)
        except Exception:  # noqa: BLE001 - already gone (another driver removed it)
            pass

    def acquire(self, agree_on_parent: Callable[[], str] | None = None) -> "Lease":
        """``agree_on_parent`` (hold.take, for a parent run made a moment ago) is asked once,
        after the first settle, which then also covers the other drivers' parent creations: when
        the parent every driver agrees on is another run, the claim is withdrawn (ParentSuperseded)."""
        for attempt in range(TRIES):
            before = self._watched_others()
            if before:
                raise self._held(before)
            wrote = self._write()
            time.sleep(self.settle_s)
            if agree_on_parent is not None and attempt == 0 and (parent := agree_on_parent()) != self.run_id:
                self._drop(self.tag)
                raise ParentSuperseded(parent)
            after = self._others()
            if not after:
                # the token: from now on trials and stale drivers check against it
                self.client.set_tag(self.run_id, names.TAG_LEASE_HOLDER, json.dumps(
                    {"driver": self.driver, "host": socket.gethostname(), "pid": os.getpid(), "since": self.since}))
                self.fence.trusted_until = wrote + trust_s()
                self._start_heartbeat()
                return self
            # Someone wrote while we settled. We withdraw either way: if it already holds the
            # sweep, the next look finds it and we stop; if it is withdrawing too, the random
            # wait lets one of us through first.
            self._drop(self.tag)
            time.sleep(random.uniform(self.settle_s, 3 * self.settle_s))
            self.since = time.time()
        raise self._held(self._others())

    def _held(self, claims: dict[str, Claim]) -> LeaseHeld:
        if not claims:
            return LeaseHeld(f"sweep {self.sweep!r}: other drivers kept starting at the same time; "
                             "run it again")
        holder = min(claims.values(), key=lambda c: c.since)
        alive = ("its heartbeat changed while this driver watched" if self.watch.alive(holder.driver) else
                 f"alive {max(0.0, time.time() - holder.heartbeat):.0f} s ago by this host's clock")
        return LeaseHeld(f"sweep {self.sweep!r} is being run by another driver ({holder.describe()}, "
                         f"{alive}); not starting a second one (a driver whose heartbeat stands still for "
                         f"{self.stale_s:.0f} s is taken over)")

    def holds(self) -> bool:
        """Whether this driver may still write to the sweep: one read of the parent run (which
        sets ``lost`` when another driver took over); unreachable, whether its claim is trusted."""
        if self.lost is not None:
            return False
        try:
            return self.fence.verified()
        except LeaseLost as e:
            self.lost = e
            return False

    def _start_heartbeat(self) -> None:
        from sweeper.driver.fence import Fence

        client = TrackingStore.parse(self.client.tracking_uri).client(checked=False)  # its own, for its thread
        fence = Fence(self.client.tracking_uri, self.run_id, self.driver, self.sweep, client=client,
                      own_writes=self.own_writes)

        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                if self.lost is None:
                    self._beat(client, fence)
                if self.lost is not None and self.on_lost is not None:
                    try:
                        self.on_lost()
                    except Exception:  # tried again at the next beat
                        log.exception("sweep %r: stopping after the lease was lost failed", self.sweep)

        self._thread = threading.Thread(target=beat, name="sweeper-lease", daemon=True)
        self._thread.start()

    def _beat(self, client, fence) -> None:
        """Rewrite the claim only after reading that it is still this driver's: a driver that
        wakes up after a takeover must find out, not put its claim back."""
        try:
            asked = watch_clock()
            if not fence.read():
                return  # the store did not answer (logged once by the fence): next beat
            now = watch_clock()
            if now >= fence.trusted_until and now - asked >= self.settle_s / 2:
                # an old claim and a slow answer: this process may have been frozen while the
                # read was in flight, its answer older than it looks; read again next beat
                return
            self._write(client)
        except LeaseLost as e:
            self.lost = e
        except Exception as e:  # noqa: BLE001 - a tracking outage: try again next beat
            log.warning("sweep %r: lease heartbeat not written (%s); trying again in %.0f s",
                        self.sweep, type(e).__name__, self.heartbeat_s)

    def release(self) -> None:
        """Once (a SIGTERM's close and the driver's end may both ask); the heartbeat stops first,
        so that a beat in flight cannot put the claim back."""
        if self._released:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._drop(self.tag)  # this driver's claim only; the holder tag stays (see Fence)
        self._released = True
