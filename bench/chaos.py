"""A chaos run, Jepsen-style: a sweep under random faults, then the invariants it must keep.

    .venv/bin/python bench/chaos.py [--duration 180] [--seed N] [--trials 12] [--epochs 15]
                                    [--json out.json] [--keep]

A sweep of ``--trials`` short digits trials (cifar_resnet depth 8 on 8x8 digits, one checkpoint per
epoch) runs with `sweeper run` processes (this tree, through the CLI) against a real `mlflow
server` (sqlite backend, artifacts served by it, on 127.0.0.1). For ``--duration`` seconds, at
random times drawn from ``--seed`` (printed: the same seed gives the same fault schedule), it
injects:

- ``kill_driver``: SIGKILL of a running driver (a crashed pod or machine);
- ``stop_driver``: SIGSTOP of a driver, SIGCONT after 2-24 s (a GC pause, a frozen VM); longer
  than the lease's stale time (here 15 s) the paused driver's claim goes stale while it sleeps;
- ``kill_worker``: SIGKILL of a trial worker (a Ray ``ImplicitFunc`` process of this sweep's
  drivers only: processes in the drivers' own sessions);
- ``stop_worker``: SIGSTOP of a trial worker, SIGCONT after 2-20 s;
- ``second_driver``: one more `sweeper run` of the same sweep, started while another runs;
- ``restart_tracking``: the tracking server stopped (SIGTERM to its process group), down for
  1-8 s, started again on the same port.

The first six faults are the six kinds in a random order, so a run of a minute or more injects
every kind; after that each fault is of a random kind, 6-14 s apart. A fault with nothing to hit
(no trial worker running yet, no driver alive) is tried again 2 s later, up to 10 times. Meanwhile a supervisor (a Kubernetes
restart policy, a user running the command again) starts a new `sweeper run` whenever none is
alive. When the duration is over, every paused process is continued, and `sweeper run` is run
again until one exits 0 (at most ``--reruns`` times, within ``--settle-s``); then every process left in the drivers'
sessions is killed and the invariants are checked against the server:

1. every trial finished: exactly one child run per trial key, status tag ``finished``, run FINISHED;
2. every epoch logged exactly once: each per-epoch metric has steps 1..epochs, no gap, no repeat;
3. no trial trained by two drivers at once: with one checkpoint per epoch, one trainer at a time
   logs a trial's epochs in increasing order (a resumed trainer starts after the last checkpoint,
   which is never behind the last logged epoch, and skips what the run holds); so, ordered by the
   time MLflow stamped them, a trial's ``epoch_s`` steps must strictly increase. Two trainers at
   once log overlapping epochs: a step repeated or going back in time order. It sees two trainers
   only where both logged epochs of the trial (a second trainer that found the first one's
   finished checkpoint trains nothing; one whose epochs the run already held logs nothing), so
   beside it the run prints how many drivers took the sweep while one that had taken it earlier
   was still alive (from the drivers' own output: the plan line is printed once the lease is held);
4. no parent run left RUNNING, and no lease claim left on it;
5. every finished trial's checkpoint (``<storage>/<sweep>/trials/<key>/``) holds epochs 1..epochs
   and its final metrics.

It prints the seed, the faults injected per kind (and those skipped for want of a target), how
each driver ended, and each invariant held or broken; it exits 1 when an invariant broke (2 when
the sweep never finished within its reruns). Everything it starts is its own: processes are
signalled by pid, from the sessions of the drivers it started, never by name.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SWEEPER = str(BIN / "sweeper")
MLFLOW = str(BIN / "mlflow")
NAME = "chaos"
KINDS = ("kill_driver", "stop_driver", "kill_worker", "stop_worker", "second_driver", "restart_tracking")
MODES = ("bn_only", "full", "output_only", "bn_output")
PER_EPOCH = ("train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "lr", "images_per_s", "epoch_s")
# The MLflow layout and the lease's tag prefix (docs/mlflow.md).
TAG_ROLE, TAG_TRIAL_KEY, TAG_STATUS, LEASE_PREFIX = "sweeper.role", "sweeper.trial_key", "status", "sweeper.lease."
LEASE_STALE_S = 15.0
RETRIES = 10  # a fault with nothing to hit is tried again 2 s later, this many times
DRIVER_ENV = {
    "SWEEPER_LEASE_STALE_S": str(LEASE_STALE_S),  # a paused driver is taken over within the run
    "SWEEPER_LEASE_HEARTBEAT_S": "2",
    "SWEEPER_LEASE_SETTLE_S": "1",
    # one host: clocks agree; the lease refuses a stale time not above heartbeat + this bound
    "SWEEPER_CLOCK_SKEW_S": "2",
    "SWEEPER_PROGRESS_EVERY_S": "10",
    "PYTHONUNBUFFERED": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(t0: float, message: str) -> None:
    print(f"[{time.monotonic() - t0:6.1f}s] {message}", flush=True)


# --- processes -------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, str] | None:
    """(session id, state letter) of ``pid``, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[3]), fields[0]  # fields 6 (session) and 3 (state) of proc(5)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pids_in_sessions(sessions: set[int]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[0] in sessions:
                found.append(int(entry.name))
    return found


def signal_pid(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


class TrackingServer:
    """`mlflow server` on a fixed loopback port, sqlite store, artifacts served; restartable."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 300) -> None:
        from mlflow.tracking import MlflowClient

        db = self.root / "mlflow.db"
        if not db.exists():
            MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments(max_results=1)  # schema, once
        self.starts += 1
        out = open(self.root / f"server.{self.starts}.log", "w")
        self.proc = subprocess.Popen(
            [MLFLOW, "server", "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination",
             str(self.root / "artifacts"), "--serve-artifacts", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--uvicorn-opts", "--timeout-worker-healthcheck 120"],
            stdout=out, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True,
            env={**os.environ, "MLFLOW_TRACKING_URI": ""})
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                request = urllib.request.Request(f"{self.uri}/api/2.0/mlflow/experiments/search", method="POST",
                                                 data=b'{"max_results": 1}',
                                                 headers={"Content-Type": "application/json"})
                urllib.request.urlopen(request, timeout=30).read()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"mlflow server exited: see {self.root}/server.{self.starts}.log")
                time.sleep(0.5)
        raise SystemExit(f"mlflow server did not come up in {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=wait_s)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the port free again before a restart binds it
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.2)


@dataclass
class Driver:
    number: int
    role: str  # "supervised" (started because none was alive), "second" (a fault), "rerun"
    proc: subprocess.Popen
    log_path: Path
    started: float
    code: int | None = None
    ended: float | None = None

    def took_the_sweep(self) -> bool:
        """It printed its plan line, which `sweeper run` prints only once it holds the lease."""
        try:
            return re.search(rf"^{NAME}: \d+ trials, \d+ done", self.log_path.read_text(errors="replace"),
                             flags=re.M) is not None
        except OSError:
            return False


@dataclass
class Chaos:
    root: Path
    seed: int
    duration: float
    server: TrackingServer
    spec: Path
    storage: Path
    t0: float = field(default_factory=time.monotonic)
    drivers: list[Driver] = field(default_factory=list)
    injected: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    paused: dict[int, float] = field(default_factory=dict)  # pid -> when to SIGCONT
    restarting: threading.Thread | None = None

    def __post_init__(self):
        self.rng = random.Random(self.seed)
        self.sessions: set[int] = set()

    # drivers

    def argv(self) -> list[str]:
        return [SWEEPER, "run", str(self.spec), "--tracking-uri", self.server.uri, "--storage", str(self.storage)]

    def start_driver(self, role: str) -> Driver:
        number = len(self.drivers) + 1
        path = self.root / "drivers" / f"{number:03d}-{role}.log"
        path.parent.mkdir(exist_ok=True)
        with open(path, "w") as out:
            env = {**os.environ, **DRIVER_ENV, "PYTHONPATH": str(HERE), "RAY_TMPDIR": str(self.root / "ray")}
            env.pop("RAY_ADDRESS", None)
            proc = subprocess.Popen(self.argv(), cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.sessions.add(proc.pid)
        driver = Driver(number, role, proc, path, time.monotonic())
        self.drivers.append(driver)
        log(self.t0, f"driver {number} ({role}) started, pid {proc.pid}")
        return driver

    def reap(self) -> None:
        for d in self.drivers:
            if d.code is None and d.proc.poll() is not None:
                d.code, d.ended = d.proc.returncode, time.monotonic()
                self.paused.pop(d.proc.pid, None)
                log(self.t0, f"driver {d.number} ({d.role}) exited {d.code}")

    def alive(self) -> list[Driver]:
        return [d for d in self.drivers if d.code is None]

    def workers(self) -> list[int]:
        """Trial workers of this sweep: Ray's ImplicitFunc actors in our drivers' sessions."""
        return [pid for pid in pids_in_sessions(self.sessions) if _cmdline(pid).startswith("ray::ImplicitFunc")]

    # faults

    def schedule(self) -> list[tuple[float, str]]:
        """The fault times and kinds, from the seed alone: the six kinds first, in a random order."""
        faults, t = [], self.rng.uniform(8, 14)
        first = list(KINDS)
        self.rng.shuffle(first)
        while t < self.duration:
            kind = first.pop(0) if first else self.rng.choice(KINDS)
            faults.append((t, kind))
            t += self.rng.uniform(6, 14)
        return faults

    def inject(self, kind: str, final: bool = True) -> bool:
        """Inject one fault of ``kind``; False when there was nothing to hit (counted as skipped
        only when ``final``). A target is chosen from what is there now, drawn from the seeded
        generator."""
        rng = self.rng

        def skip() -> bool:
            if final:
                self.skipped[kind] += 1
            return False

        if kind in ("kill_driver", "stop_driver"):
            running = [d for d in self.alive() if d.proc.pid not in self.paused]
            if not running:
                return skip()
            d = rng.choice(running)
            if kind == "kill_driver":
                signal_pid(d.proc.pid, signal.SIGKILL)
                log(self.t0, f"FAULT kill_driver: SIGKILL driver {d.number} (pid {d.proc.pid})")
            else:
                pause = rng.uniform(2, 1.6 * LEASE_STALE_S)
                signal_pid(d.proc.pid, signal.SIGSTOP)
                self.paused[d.proc.pid] = time.monotonic() + pause
                log(self.t0, f"FAULT stop_driver: SIGSTOP driver {d.number} (pid {d.proc.pid}) for {pause:.1f} s")
        elif kind in ("kill_worker", "stop_worker"):
            workers = [pid for pid in self.workers() if pid not in self.paused]
            if not workers:
                return skip()
            pid = rng.choice(sorted(workers))
            if kind == "kill_worker":
                signal_pid(pid, signal.SIGKILL)
                log(self.t0, f"FAULT kill_worker: SIGKILL trial worker pid {pid}")
            else:
                pause = rng.uniform(2, 20)
                signal_pid(pid, signal.SIGSTOP)
                self.paused[pid] = time.monotonic() + pause
                log(self.t0, f"FAULT stop_worker: SIGSTOP trial worker pid {pid} for {pause:.1f} s")
        elif kind == "second_driver":
            if not self.alive():
                return skip()
            log(self.t0, "FAULT second_driver")
            self.start_driver("second")
        elif kind == "restart_tracking":
            if self.restarting is not None and self.restarting.is_alive():
                return skip()
            down = rng.uniform(1, 8)
            log(self.t0, f"FAULT restart_tracking: server down for {down:.1f} s")
            self.restarting = threading.Thread(target=self._restart, args=(down,), daemon=True)
            self.restarting.start()
        self.injected[kind] += 1
        return True

    def _restart(self, down: float) -> None:
        self.server.stop()
        time.sleep(down)
        self.server.start()
        log(self.t0, "tracking server is back")

    def continue_due(self, everything: bool = False) -> None:
        now = time.monotonic()
        for pid, until in list(self.paused.items()):
            if everything or now >= until:
                signal_pid(pid, signal.SIGCONT)
                del self.paused[pid]

    # the run

    def faults_phase(self) -> bool:
        """Faults for ``duration`` seconds; True when the sweep finished during them."""
        schedule = [(at, kind, 0) for at, kind in self.schedule()]
        end = self.t0 + self.duration
        self.start_driver("supervised")
        while time.monotonic() < end:
            self.reap()
            self.continue_due()
            if any(d.code == 0 for d in self.drivers):
                log(self.t0, "a driver finished the sweep: faults end early")
                return True
            if not self.alive() and (self.restarting is None or not self.restarting.is_alive()):
                self.start_driver("supervised")
            while schedule and time.monotonic() - self.t0 >= schedule[0][0]:
                at, kind, tries = schedule.pop(0)
                if not self.inject(kind, final=tries >= RETRIES) and tries < RETRIES:
                    schedule.append((at + 2.0, kind, tries + 1))  # nothing to hit now: again in 2 s
                    schedule.sort()
            time.sleep(0.2)
        return False

    def settle(self, reruns: int, bound_s: float) -> bool:
        """Continue everything, let the live drivers end, then `sweeper run` until one exits 0."""
        self.continue_due(everything=True)
        if self.restarting is not None:
            self.restarting.join()
        deadline = time.monotonic() + bound_s
        while self.alive() and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.5)
        if any(d.code == 0 for d in self.drivers):
            return True
        for _ in range(reruns):
            if time.monotonic() >= deadline:
                break
            d = self.start_driver("rerun")
            try:
                d.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_pid(d.proc.pid, signal.SIGTERM)
                d.proc.wait(timeout=60)
            self.reap()
            if d.code == 0:
                return True
            time.sleep(3)  # a driver that met a claim still live (exit 2) looks again later
        return False

    def cleanup(self) -> int:
        """SIGKILL whatever is left in our drivers' sessions (Ray agents outlive a killed driver)."""
        self.continue_due(everything=True)
        left = [pid for pid in pids_in_sessions(self.sessions) if pid != os.getpid()]
        for pid in left:
            signal_pid(pid, signal.SIGKILL)
        self.reap()
        return len(left)


# --- the sweep and its invariants ------------------------------------------------------------


def write_spec(folder: Path, trials: int, epochs: int) -> Path:
    modes = list(MODES[: min(len(MODES), max(1, trials // 3))]) if trials >= 3 else [MODES[0]]
    seeds = list(range(-(-trials // len(modes))))
    path = folder / f"{NAME}.yaml"
    path.write_text(f"""\
name: {NAME}
dataset: {{name: digits, image_size: 8, train_size: 192, test_size: 96}}
model: {{family: cifar_resnet, depth: 8}}
train: {{epochs: {epochs}, batch_size: 64, lr: 0.1, augment: false}}
grid: {{mode: [{", ".join(modes)}], seed: {seeds}}}
resources: {{cpu: 1}}
max_concurrent: 2
max_failures: 3
checkpoint: {{every_epochs: 1}}
""")
    return path


def planned_trials(spec: Path, uri: str, storage: Path, root: Path) -> dict[str, str]:
    """{trial key: name} as `sweeper run --dry-run` lists them (the CLI, not the modules)."""
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    out = subprocess.run([SWEEPER, "run", str(spec), "--tracking-uri", uri, "--storage", str(storage), "--dry-run"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"sweeper run --dry-run failed ({out.returncode}): {out.stderr.strip()}")
    rows = re.findall(r"^\s+\d+\s+(\S+)\s+([0-9a-f]{16})\s", out.stdout, flags=re.M)
    return {key: name for name, key in rows}


def check(uri: str, trials: dict[str, str], storage: Path, epochs: int) -> dict[str, list[str]]:
    """Each invariant's name -> what broke it (empty: held)."""
    from mlflow.tracking import MlflowClient

    sys.path.insert(0, str(HERE))
    from trainables.checkpoint import load_checkpoint

    client = MlflowClient(tracking_uri=uri)
    broken: dict[str, list[str]] = {name: [] for name in (
        "every trial finished", "every epoch logged exactly once", "no trial trained by two drivers at once",
        "no parent run left RUNNING (and no lease claim)", "every finished trial's checkpoint holds its last epoch")}
    experiment = client.get_experiment_by_name(NAME)
    if experiment is None:
        return {name: ["no experiment"] for name in broken}
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    parents = [r for r in runs if r.data.tags.get(TAG_ROLE) == "sweep"]
    by_key = defaultdict(list)
    for r in runs:
        if TAG_TRIAL_KEY in r.data.tags:
            by_key[r.data.tags[TAG_TRIAL_KEY]].append(r)

    for key, name in trials.items():
        found = by_key.get(key, [])
        if len(found) != 1:
            broken["every trial finished"].append(f"{name}: {len(found)} child runs")
            continue
        (run,) = found
        if run.data.tags.get(TAG_STATUS) != "finished" or run.info.status != "FINISHED":
            broken["every trial finished"].append(f"{name}: status {run.data.tags.get(TAG_STATUS)}, "
                                                  f"run {run.info.status}")
        for metric in PER_EPOCH:
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, metric))
            if steps != list(range(1, epochs + 1)):
                broken["every epoch logged exactly once"].append(f"{name}: {metric} steps {steps}")
        history = sorted(client.get_metric_history(run.info.run_id, "epoch_s"), key=lambda m: (m.timestamp, m.step))
        order = [m.step for m in history]
        if any(b <= a for a, b in zip(order, order[1:])):
            broken["no trial trained by two drivers at once"].append(f"{name}: epochs in logging order {order}")
        try:
            saved = load_checkpoint(storage / NAME / "trials" / key)
        except Exception as e:  # noqa: BLE001 - an unreadable checkpoint is what this invariant reports
            saved, why = None, f"unreadable ({e})"
        else:
            why = "no checkpoint"
        if saved is None:
            broken["every finished trial's checkpoint holds its last epoch"].append(f"{name}: {why}")
        else:
            epochs_saved = [int(h["epoch"]) for h in saved.get("history", [])]
            if epochs_saved != list(range(1, epochs + 1)) or not saved.get("final"):
                broken["every finished trial's checkpoint holds its last epoch"].append(
                    f"{name}: epochs {epochs_saved}, final {'yes' if saved.get('final') else 'no'}")
    extra = set(by_key) - set(trials)
    if extra:
        broken["every trial finished"].append(f"{len(extra)} child runs of keys the spec does not define")
    if not parents:
        broken["no parent run left RUNNING (and no lease claim)"].append("no parent run")
    for parent in parents:
        claims = [k for k in parent.data.tags if k.startswith(LEASE_PREFIX)]
        if parent.info.status == "RUNNING" or claims:
            broken["no parent run left RUNNING (and no lease claim)"].append(
                f"parent {parent.info.run_id}: {parent.info.status}, claims {claims}")
    return broken


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of fault injection")
    parser.add_argument("--seed", type=int, default=None, help="the fault schedule's seed (default: random)")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--reruns", type=int, default=6, help="`sweeper run`s at most after the faults")
    parser.add_argument("--settle-s", type=float, default=900.0,
                        help="seconds at most after the faults for the sweep to finish")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, store, checkpoints)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    print(f"chaos: seed {seed} (again: bench/chaos.py --seed {seed} --duration {args.duration:g} "
          f"--trials {args.trials} --epochs {args.epochs})", flush=True)

    root = Path(tempfile.mkdtemp(prefix="swc-", dir="/tmp"))  # short: Ray's unix sockets live below it
    server = TrackingServer(root)
    storage = root / "results"
    chaos = None
    early = done = interrupted = False
    faults_s = total_s = 0.0
    left, broken = 0, {}
    # SIGTERM (a timeout, a CI stop) ends the run as Ctrl-C does: cleaned up, figures printed
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.start()
        spec = write_spec(root, args.trials, args.epochs)
        trials = planned_trials(spec, server.uri, storage, root)
        print(f"chaos: {len(trials)} trials x {args.epochs} epochs; tracking {server.uri}; work folder {root}",
              flush=True)
        chaos = Chaos(root, seed, args.duration, server, spec, storage)
        try:
            early = chaos.faults_phase()
            faults_s = time.monotonic() - chaos.t0
            done = chaos.settle(args.reruns, bound_s=args.settle_s)
        except KeyboardInterrupt:
            interrupted = True
            faults_s = faults_s or time.monotonic() - chaos.t0
            print("chaos: interrupted; cleaning up, the invariants are not checked", flush=True)
        total_s = time.monotonic() - chaos.t0
        left = chaos.cleanup()
        if not interrupted:
            if server.proc is None:
                server.start()
            broken = check(server.uri, trials, storage, args.epochs)
    finally:
        if chaos is not None:
            chaos.cleanup()
        server.stop()
    if chaos is None:
        return 130

    exits = Counter(f"{d.role}:{d.code}" for d in chaos.drivers)
    took = [d for d in chaos.drivers if d.took_the_sweep()]
    # a driver that took the sweep while an earlier one that also took it was still alive
    overlaps = sum(1 for d in took for e in took
                   if e.number < d.number and (e.ended is None or e.ended > d.started) and e.started < d.started)
    print(f"\nchaos: seed {seed}, faults for {faults_s:.0f} s{' (the sweep finished first)' if early else ''}, "
          f"{total_s:.0f} s in all, sweep {'finished' if done else 'NOT finished'}")
    print("faults injected: " + ", ".join(f"{k} {chaos.injected[k]}" for k in KINDS)
          + f"  (skipped, no target: {dict(chaos.skipped) or 'none'})")
    print("drivers (role:exit code): " + ", ".join(f"{k} x{v}" for k, v in sorted(exits.items()))
          + f"; {len(took)} took the sweep, {overlaps} of them while a driver that had it was still alive; "
          f"tracking server started {server.starts} times; {left} leftover processes killed")
    for name, problems in broken.items():
        print(f"  {'held  ' if not problems else 'BROKEN'}  {name}")
        for problem in problems[:5]:
            print(f"            {problem}")
        if len(problems) > 5:
            print(f"            ... and {len(problems) - 5} more")
    if args.json:
        args.json.write_text(json.dumps({
            "seed": seed, "duration_s": args.duration, "faults_s": round(faults_s, 1), "total_s": round(total_s, 1),
            "finished_early": early, "sweep_done": done, "trials": len(trials), "epochs": args.epochs,
            "faults": {k: chaos.injected[k] for k in KINDS}, "skipped": dict(chaos.skipped),
            "driver_exits": dict(exits), "drivers_that_took_the_sweep": len(took), "takeovers_of_a_live_driver": overlaps,
            "tracking_starts": server.starts,
            "invariants": {name: {"held": not problems, "problems": problems} for name, problems in broken.items()},
        }, indent=2))
    if args.keep:
        print(f"work folder kept: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    if interrupted:
        return 130
    if any(broken.values()):
        return 1
    return 0 if done else 2


if __name__ == "__main__":
    sys.exit(main())
