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
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sweeper.core import settings
from sweeper.record import names
from sweeper.core.errors import SweepError

# The three times are settings (core.settings: SWEEPER_LEASE_STALE_S, _HEARTBEAT_S, _SETTLE_S),
# read when a lease is taken; SWEEPER_CLOCK_SKEW_S bounds how far host clocks disagree.
TRIES = 5


@dataclass(frozen=True)
class Claim:
    driver: str
    host: str
    pid: int
    since: float
    heartbeat: float
    pidns: str = ""

    def age(self, now: float) -> float:
        return now - self.heartbeat

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.since, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"host {self.host}, pid {self.pid}, since {since}"


def _pid_namespace() -> str:
    """Boot and pid namespace of this process: two claims with the same one can check each
    other's pid directly (a hostname alone is shared by host-network containers)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


class LeaseHeld(SweepError):
    """Another live driver holds this sweep."""


def _claims(client, run_id: str) -> dict[str, Claim]:
    tags = client.get_run(run_id).data.tags
    found = {}
    for key, value in tags.items():
        if not key.startswith(names.TAG_LEASE_PREFIX):
            continue
        try:
            data = json.loads(value)
            found[key[len(names.TAG_LEASE_PREFIX):]] = Claim(key[len(names.TAG_LEASE_PREFIX):], str(data["host"]), int(data["pid"]),
                                                 float(data["since"]), float(data["heartbeat"]),
                                                 str(data.get("pidns", "")))
        except (ValueError, KeyError, TypeError):
            continue  # not ours to read; never blocks a sweep
    return found


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
    """The claim of this driver on one sweep; ``acquire`` or LeaseHeld, ``release`` at the end."""

    def __init__(self, client, run_id: str, sweep: str):
        self.stale_s, self.heartbeat_s, self.settle_s = check_times()
        self.client = client
        self.run_id = run_id
        self.sweep = sweep
        self.driver = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.since = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def tag(self) -> str:
        return names.TAG_LEASE_PREFIX + self.driver

    def _write(self) -> None:
        self.client.set_tag(self.run_id, self.tag, self._claim_json())

    def _claim_json(self) -> str:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": self.since,
                           "heartbeat": time.time(), "pidns": _pid_namespace()})

    def _others(self) -> dict[str, Claim]:
        now = time.time()
        live = {}
        for driver, claim in _claims(self.client, self.run_id).items():
            if driver == self.driver:
                continue
            here = bool(claim.pidns) and claim.pidns == _pid_namespace()
            if claim.age(now) > self.stale_s or (here and _pid_gone(claim.pid)):
                self._drop(names.TAG_LEASE_PREFIX + driver)  # a dead driver's claim
                continue
            live[driver] = claim
        return live

    def _drop(self, tag: str) -> None:
        try:
            self.client.delete_tag(self.run_id, tag)
        except Exception:  # noqa: BLE001 - already gone (another driver removed it)
            pass

    def acquire(self) -> "Lease":
        for attempt in range(TRIES):
            before = self._others()
            if before:
                raise self._held(before)
            self._write()
            time.sleep(self.settle_s)
            after = self._others()
            if not after:
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

    def _start_heartbeat(self) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.client.tracking_uri)  # its own, for its thread

        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    client.set_tag(self.run_id, self.tag, self._claim_json())
                except Exception:  # noqa: BLE001 - a tracking outage: try again next beat
                    pass

        self._thread = threading.Thread(target=beat, name="sweeper-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._drop(self.tag)
