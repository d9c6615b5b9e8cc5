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

Stale: a claim whose heartbeat is older than ``STALE_S`` (90 s) is a dead driver (SIGKILL, lost
machine) and is removed by the next driver, so a dead holder blocks a sweep for at most 90 s. On
the same machine (same boot and pid namespace) a claim whose process is gone is dead at once.
This assumes host clocks agree to well within that (NTP) and that a live holder reaches the
tracking store at least once in ``STALE_S`` (it tries every ``HEARTBEAT_S`` = 15 s): a claim
judged on a clock ``SWEEPER_CLOCK_SKEW_S`` (60 s) ahead looks that much older, so a lease is only
taken while ``STALE_S > HEARTBEAT_S + CLOCK_SKEW_S`` (``check_times``).

Fencing (a driver that wakes up after a takeover must not write again): the winner writes
``sweeper.holder`` = {driver, host, pid, since} on the parent run right after it has won.
Its driver id is the fencing token: every trial gets it (``SweepContext.lease_token``) and a
``Fence`` checks it before each write (one read of the parent run): a holder tag naming another
driver, or this driver's claim gone, is ``LeaseLost``. The holder tag is never removed, so a
driver that wakes after the new holder has finished still finds it. The heartbeat makes the same
check before it rewrites its claim, and calls ``on_lost`` (the driver stops Tune and exits 2).
A check passes only while the claim it read cannot be stale yet for anyone (its heartbeat +
``TRUST_S`` = ``STALE_S`` / 2, half of the stale time left for clock skew), judged on this clock
after the read: so a process frozen while its read was in flight does not write on the old
answer, and when the store cannot be read a write goes through only until the claim read last
reaches that age; after that a check blocks until the store answers. Wall-clock time is used
throughout, so a process that was frozen (SIGSTOP, a suspended VM) finds its trust expired.
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
from sweeper.core.errors import SweepError
from sweeper.driver.claims import Claim, claims_in, pid_gone, pid_namespace, verdict

log = logging.getLogger(__name__)

TRIES = 5  # claims withdrawn because another driver claimed in the same settle, before giving up


def trust_s() -> float:
    """How long a claim read from the store is trusted when the store cannot be read again: a
    taker needs the claim to be STALE_S old on its own clock, which may run CLOCK_SKEW_S ahead
    (check_times keeps STALE_S above HEARTBEAT_S + CLOCK_SKEW_S, so this outlasts a heartbeat)."""
    stale = settings.LEASE_STALE_S.get()
    return min(stale / 2, stale - settings.CLOCK_SKEW_S.get())


def fence_retry_s() -> float:
    return min(2.0, settings.LEASE_HEARTBEAT_S.get())


class LeaseHeld(SweepError):
    """Another live driver holds this sweep."""


class ParentSuperseded(Exception):
    """The run this lease was claimed on is not the sweep's parent: ``parent_run_id`` is."""

    def __init__(self, parent_run_id: str):
        super().__init__(parent_run_id)
        self.parent_run_id = parent_run_id


class LeaseLost(SweepError):
    """The lease this driver (or trial) was started under is no longer the sweep's: another
    driver took it over. Whoever raises it stops without writing anything more."""


def _claims(client, run_id: str) -> dict[str, Claim]:
    return claims_in(client.get_run(run_id).data.tags)


def lost_error(sweep: str, taker: Claim | None) -> LeaseLost:
    who = (f"{taker.host}-{taker.pid} (since {taker.since_text()})" if taker is not None
           else "another driver (this driver's claim was removed as stale)")
    return LeaseLost(f"sweep {sweep!r} was taken over by {who}: this driver stopped without writing")


class Fence:
    """Whether the lease ``token`` (a driver id) is still the sweep's: what a trial checks before
    it writes a checkpoint or logs an epoch, and the driver before it writes a trial's end.

    ``__call__`` blocks until verified and raises LeaseLost when another driver holds the sweep;
    ``verified`` is one try; ``holds`` never raises. Plain and picklable (the client is made on
    first use, in the process that checks)."""

    def __init__(self, tracking_uri: str, run_id: str, token: str, sweep: str = "", client=None):
        self.tracking_uri, self.run_id, self.token, self.sweep = tracking_uri, run_id, token, sweep
        self._client = client
        self.trusted_until = float("-inf")  # wall clock: a frozen process finds it expired
        self.passed_at = float("-inf")  # when the last check that let a write through began
        self._unreachable = False

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None}

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def read(self) -> bool:
        """One read of the parent run: True when the lease is still ``token``'s, False when the
        store did not answer; LeaseLost when another driver has taken the sweep over."""
        from sweeper.record import tracking

        try:
            with tracking.fast_fail_http():
                tags = self.client.get_run(self.run_id).data.tags
        except Exception as e:  # noqa: BLE001 - any failure: not verified; the caller decides
            if not self._unreachable:
                log.warning("sweep %r: cannot read its lease (%s: %s); writes wait until it is verified",
                            self.sweep, type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
            self._unreachable = True
            return False
        self._unreachable = False
        mine, taker, lost = verdict(tags, self.token)
        if lost:
            raise lost_error(self.sweep, taker)
        self.trusted_until = mine.heartbeat + trust_s()
        return True

    def verified(self) -> bool:
        """One read (LeaseLost when another driver holds the sweep), then: is the claim read last
        still too young for any driver to have found it stale (its heartbeat + TRUST_S)? Asked
        after the read, on this clock: a process frozen while its read was in flight wakes up
        with an answer from before the freeze, and must not write on it."""
        self.read()  # when the store does not answer, the claim read last is judged instead
        now = time.time()
        if now < self.trusted_until:
            self.passed_at = now
            return True
        return False

    def __call__(self) -> None:
        """Return once the lease is verified; raise LeaseLost when it is not the sweep's. Blocks
        while the store cannot be read and the last claim read is no longer trusted."""
        while not self.verified():
            time.sleep(fence_retry_s())

    def holds(self) -> bool:
        try:
            return self.verified()
        except LeaseLost:
            return False


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
        self.fence = Fence(client.tracking_uri, run_id, self.driver, sweep, client=client)

    @property
    def tag(self) -> str:
        return names.TAG_LEASE_PREFIX + self.driver

    def _write(self) -> None:
        self.client.set_tag(self.run_id, self.tag, self._claim_json())

    def _claim_json(self) -> str:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": self.since,
                           "heartbeat": time.time(), "pidns": pid_namespace()})

    def _others(self) -> dict[str, Claim]:
        now = time.time()
        live = {}
        for driver, claim in _claims(self.client, self.run_id).items():
            if driver == self.driver:
                continue
            here = bool(claim.pidns) and claim.pidns == pid_namespace()
            if claim.age(now) > self.stale_s or (here and pid_gone(claim.pid)):
                self._drop(names.TAG_LEASE_PREFIX + driver)  # a dead driver's claim
                continue
            live[driver] = claim
        return live

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
            before = self._others()
            if before:
                raise self._held(before)
            self._write()
            time.sleep(self.settle_s)
            if agree_on_parent is not None and attempt == 0 and (parent := agree_on_parent()) != self.run_id:
                self._drop(self.tag)
                raise ParentSuperseded(parent)
            after = self._others()
            if not after:
                # the token: from now on trials and stale drivers check against it
                self.client.set_tag(self.run_id, names.TAG_LEASE_HOLDER, json.dumps(
                    {"driver": self.driver, "host": socket.gethostname(), "pid": os.getpid(), "since": self.since}))
                self.fence.trusted_until = time.time() + trust_s() - self.settle_s
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
        age = max(0.0, time.time() - holder.heartbeat)
        return LeaseHeld(f"sweep {self.sweep!r} is being run by another driver ({holder.describe()}, "
                         f"alive {age:.0f} s ago); not starting a second one (a driver silent for "
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
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.client.tracking_uri)  # its own, for its thread
        fence = Fence(self.client.tracking_uri, self.run_id, self.driver, self.sweep, client=client)

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

    def _beat(self, client, fence: Fence) -> None:
        """Rewrite the claim only after reading that it is still this driver's: a driver that
        wakes up after a takeover must find out, not put its claim back."""
        try:
            asked = time.time()
            if not fence.read():
                return  # the store did not answer (logged once by the fence): next beat
            now = time.time()
            if now >= fence.trusted_until and now - asked >= self.settle_s / 2:
                # an old claim and a slow answer: this process may have been frozen while the
                # read was in flight, its answer older than it looks; read again next beat
                return
            client.set_tag(self.run_id, self.tag, self._claim_json())
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
