"""A lease claim as the sweep's parent run holds it (tags ``sweeper.lease.<driver>`` and
``sweeper.holder``, sweeper.record.names), read back; whether a claim's process is on this
machine and gone; and whether its heartbeat still changes, watched on this process's own clock.
The protocol that writes them is sweeper.driver.lease; `sweeper status` and `load_results` read
them here to say that a running trial's driver is gone.

A claim's ``heartbeat`` is the writer's wall-clock time, and two hosts' clocks may disagree by
minutes: a reader never subtracts it from its own time to decide liveness. It watches the value
instead (``ClaimWatch``): a heartbeat that has not changed for the stale time, measured on the
reader's monotonic clock from the moment it first saw that value, belongs to a dead driver."""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sweeper.record import names


@dataclass(frozen=True)
class Claim:
    driver: str
    host: str
    pid: int
    since: float
    heartbeat: float
    pidns: str = ""
    clock: str = ""  # the writer's clock_namespace(), where it has one
    wrote: float | None = None  # watch_clock when the writer began writing this heartbeat, on ``clock``

    def age(self, now: float) -> float:
        return now - self.heartbeat

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}, since {self.since_text()}"

    def since_text(self) -> str:
        return datetime.fromtimestamp(self.since, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def pid_namespace() -> str:
    """Boot and pid namespace of this process: two claims with the same one can check each
    other's pid directly (a hostname alone is shared by host-network containers)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def clock_namespace() -> str:
    """Boot and time namespace of this process: two processes with the same one read the same
    ``watch_clock`` (CLOCK_BOOTTIME is one clock per boot, offset only by a time namespace), so a
    moment one of them took is a moment on the other's clock too. Empty where that is not known."""
    if getattr(time, "CLOCK_BOOTTIME", None) is None:
        return ""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
    try:
        timens = str(os.stat("/proc/self/ns/time").st_ino)
    except FileNotFoundError:  # a kernel without time namespaces: every process shares the boot's clock
        timens = "none"
    except OSError:
        return ""
    return f"{boot}:{timens}"


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def claims_in(tags: dict[str, str]) -> dict[str, Claim]:
    found = {}
    for key, value in tags.items():
        if not key.startswith(names.TAG_LEASE_PREFIX):
            continue
        try:
            data = json.loads(value)
            found[key[len(names.TAG_LEASE_PREFIX):]] = Claim(key[len(names.TAG_LEASE_PREFIX):], str(data["host"]), int(data["pid"]),
                                                 float(data["since"]), float(data["heartbeat"]),
                                                 str(data.get("pidns", "")), str(data.get("clock", "")),
                                                 float(data["wrote"]) if data.get("wrote") is not None else None)
        except (ValueError, KeyError, TypeError):
            continue  # not ours to read; never blocks a sweep
    return found


def holder_in(tags: dict[str, str]) -> Claim | None:
    """The driver that last won the lease, from the holder tag (None: no driver has, or unreadable)."""
    try:
        data = json.loads(tags[names.TAG_LEASE_HOLDER])
        return Claim(str(data["driver"]), str(data["host"]), int(data["pid"]), float(data["since"]),
                     float(data["since"]))
    except (KeyError, ValueError, TypeError):
        return None


def verdict(tags: dict[str, str], token: str) -> tuple[Claim | None, Claim | None, bool]:
    """(the claim of driver ``token``, the driver that took over, lost) as the parent run's tags
    show them. Lost: the holder tag names another driver, or ``token``'s claim is gone (a driver
    found it stale and removed it; its taker is then the newest other claim, if any is there)."""
    claims = claims_in(tags)
    mine, holder = claims.get(token), holder_in(tags)
    if holder is not None and holder.driver != token:
        return mine, holder, True
    if mine is None:
        others = [c for driver, c in claims.items() if driver != token]
        return None, max(others, key=lambda c: c.since) if others else None, True
    return mine, None, False


def watch_clock() -> float:
    """This process's clock for watching: monotonic, and counting a suspended machine's sleep
    (CLOCK_BOOTTIME where there is one), so a process that was frozen or suspended finds the
    time it was away already spent."""
    boot = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(boot) if boot is not None else time.monotonic()


@dataclass
class ClaimWatch:
    """Claims watched over several reads: for each driver, the heartbeat value seen last and
    when (``watch_clock``) this watcher first saw it. ``unchanged_for`` is how long that value
    has stood as far as this watcher knows: a lower bound on its age, on one clock."""

    seen: dict[str, tuple[float, float]] = field(default_factory=dict)  # driver -> (heartbeat, first seen)
    changed: dict[str, tuple[float, float]] = field(default_factory=dict)  # driver -> (heartbeat, seen change at)

    def observe(self, claims: dict[str, Claim], at: float | None = None) -> None:
        at = watch_clock() if at is None else at
        for driver, claim in claims.items():
            before = self.seen.get(driver)
            if before is None or before[0] != claim.heartbeat:
                self.seen[driver] = (claim.heartbeat, at)
                if before is not None:
                    self.changed[driver] = (claim.heartbeat, at)
        for driver in set(self.seen) - set(claims):
            del self.seen[driver]
            self.changed.pop(driver, None)

    def unchanged_for(self, driver: str, now: float | None = None) -> float:
        now = watch_clock() if now is None else now
        return now - self.seen[driver][1] if driver in self.seen else 0.0

    def alive(self, driver: str) -> bool:
        """Seen to change while watched: a live driver whatever its clock says."""
        return driver in self.changed

    def clock_offset(self, driver: str) -> float | None:
        """How far the driver's wall clock is ahead of this one's (seconds), measured from a
        heartbeat seen to change: it was written between two reads, so the error is about one
        watching interval. None until a change was seen."""
        if driver not in self.changed:
            return None
        heartbeat, at = self.changed[driver]
        return heartbeat - (time.time() - (watch_clock() - at))


def sweep_driver_claim(tags: dict[str, str]) -> Claim | None:
    """The claim of the driver that holds the sweep now (the holder tag's, else the newest)."""
    claims = claims_in(tags)
    holder = holder_in(tags)
    if holder is not None and holder.driver in claims:
        return claims[holder.driver]
    return max(claims.values(), key=lambda c: c.since) if claims else None


def driver_gone_since(tags: dict[str, str], stale_s: float, skew_s: float,
                      watch: ClaimWatch | None = None) -> float | None:
    """When the sweep's driver was last alive (its last heartbeat, Unix seconds), if it is gone;
    None when it may be alive or no driver holds a claim. Gone: its process is gone on this
    machine, or ``watch`` saw its heartbeat stand still for ``stale_s``; without a watch (a
    one-shot `sweeper status`) a heartbeat that looks older than ``stale_s`` plus the clock-skew
    bound ``skew_s`` on this clock: a display, never a decision to take the sweep over."""
    claim = sweep_driver_claim(tags)
    if claim is None:
        return None
    if claim.pidns and claim.pidns == pid_namespace() and pid_gone(claim.pid):
        return claim.heartbeat
    if watch is not None:
        watch.observe({claim.driver: claim})
        if watch.alive(claim.driver):
            return None if watch.unchanged_for(claim.driver) <= stale_s else claim.heartbeat
        if watch.unchanged_for(claim.driver) > stale_s:
            return claim.heartbeat
    return claim.heartbeat if time.time() - claim.heartbeat > stale_s + skew_s else None


def gone_text(since: float) -> str:
    return f"running (driver gone since {datetime.fromtimestamp(since, timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')})"
