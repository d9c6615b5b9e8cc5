"""A lease claim as the sweep's parent run holds it (tags ``sweeper.lease.<driver>`` and
``sweeper.holder``, sweeper.record.names), read back; and whether a claim's process is on this
machine and gone. The protocol that writes them is sweeper.driver.lease."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
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
                                                 str(data.get("pidns", "")))
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
