"""A stale driver that wakes up after a takeover, with real processes: driver A trains, is cut
off (its whole process tree frozen with SIGSTOP, or its tracking connection cut by a TCP proxy)
past the stale time, driver B takes the sweep over, A comes back. Shared by
tests/test_fencing_e2e.py (a local `mlflow server` on sqlite) and tests/cluster/test_fencing.py
(the cluster stack's server on PostgreSQL)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sweeper.core.states import EXIT_LEASE_LOST
from sweeper.record.names import TAG_LEASE_HOLDER as HOLDER_TAG

SWEEPER = str(Path(sys.executable).parent / "sweeper")
LOOPBACK = "127.0.0.1"
STALE_S = 6  # short, so that B takes over a few seconds after A goes quiet
EPOCHS = 25
# What the drivers need to be quick about the lease (every other setting is the default).
LEASE_ENV = {"SWEEPER_LEASE_STALE_S": str(STALE_S), "SWEEPER_LEASE_HEARTBEAT_S": "1", "SWEEPER_LEASE_SETTLE_S": "1",
             "SWEEPER_CLOCK_SKEW_S": "2",
             "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def write_spec(folder: Path, name: str) -> Path:
    """Four digits trials (2 modes x 2 seeds), 2 at a time, many short epochs, a checkpoint each."""
    path = folder / f"{name}.yaml"
    path.write_text(f"""\
name: {name}
dataset: {{name: digits, image_size: 8, train_size: 128, test_size: 64}}
model: {{family: cifar_resnet, depth: 8}}
train: {{epochs: {EPOCHS}, batch_size: 64, lr: 0.1, augment: false}}
grid: {{mode: [bn_only, full], seed: [0, 1]}}
resources: {{cpu: 1}}
max_concurrent: 2
max_failures: 1
checkpoint: {{every_epochs: 1}}
""")
    return path


# --- processes -----------------------------------------------------------------------------


def session_pids(sid: int) -> list[int]:
    """Every process of the session ``sid``: a driver started with start_new_session and the Ray
    processes it started (see test_sweep_e2e.kill_session)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


def signal_session(sid: int, sig: int) -> None:
    for pid in session_pids(sid):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class Driver:
    """``sweeper run`` in its own session, output in files."""

    def __init__(self, label: str, argv: list[str], cwd: Path, env: dict):
        self.label, self.cwd = label, cwd
        self.out_path, self.err_path = cwd / f"{label}.out", cwd / f"{label}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True)

    @property
    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def output(self) -> str:
        return f"--- {self.label} stdout\n{self.out[-3000:]}\n--- {self.label} stderr\n{self.err[-5000:]}"

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.label} did not end within {timeout:.0f} s\n{self.output()}") from None

    def kill(self) -> None:
        signal_session(self.proc.pid, signal.SIGCONT)
        signal_session(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass


class MlflowServer:
    """``mlflow server`` on a sqlite store in ``root``, artifacts served from ``root``, one worker."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.uri = f"http://{LOOPBACK}:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.log = open(root / "mlflow-server.log", "wb")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
             f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
             "--serve-artifacts", "--host", LOOPBACK, "--port", str(self.port), "--workers", "1"],
            cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        wait_for(self._answers, 300, "mlflow server", interval=1.0)

    def _answers(self) -> bool:
        assert self.proc.poll() is None, (self.root / "mlflow-server.log").read_text()[-3000:]
        try:
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri=self.uri).search_experiments(max_results=1)
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def stop(self) -> None:
        signal_session(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            signal_session(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()


class TcpProxy:
    """127.0.0.1:port -> upstream, in threads of this process. ``cut()`` closes every connection
    and refuses new ones (a partition between one driver and its tracking server);
    ``restore()`` forwards again."""

    def __init__(self, upstream_port: int):
        self.upstream = (LOOPBACK, upstream_port)
        self.server = socket.create_server((LOOPBACK, 0))
        self.port = self.server.getsockname()[1]
        self.uri = f"http://{LOOPBACK}:{self.port}"
        self.cut_off = False
        self.refused = 0
        self.lock = threading.Lock()
        self.live: set[socket.socket] = set()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.cut_off:
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.live |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self.cut_off:
                data = src.recv(65536)
                if not data or self.cut_off:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                self._close(s)

    def _close(self, s: socket.socket) -> None:
        with self.lock:
            self.live.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def cut(self) -> None:
        self.cut_off = True
        with self.lock:
            live = list(self.live)
        for s in live:
            self._close(s)

    def restore(self) -> None:
        self.cut_off = False

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.server.close()


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- reading the sweep back ----------------------------------------------------------------


def parent_tags(client, name: str) -> dict[str, str]:
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            return {}
        runs = client.search_runs([experiment.experiment_id], "tags.`sweeper.role` = 'sweep'")
        return dict(runs[0].data.tags) if runs else {}
    except Exception:  # noqa: BLE001 - polling while the store may be busy
        return {}


def holder(client, name: str) -> dict | None:
    text = parent_tags(client, name).get(HOLDER_TAG)
    return json.loads(text) if text else None


def last_heartbeat(client, name: str) -> float:
    """The newest heartbeat among the claims on the parent run (0 when there is none)."""
    claims = [json.loads(v) for k, v in parent_tags(client, name).items() if k.startswith("sweeper.lease.")]
    return max((c["heartbeat"] for c in claims), default=0.0)


def trial_runs(client, name: str) -> list:
    experiment = client.get_experiment_by_name(name)
    return client.search_runs([experiment.experiment_id], "tags.`sweeper.role` = 'trial'", max_results=100)


def most_epochs(client, name: str) -> int:
    try:
        return max((len(client.get_metric_history(r.info.run_id, "test_acc")) for r in trial_runs(client, name)),
                   default=0)
    except Exception:  # noqa: BLE001 - polling while the store may be busy
        return 0


def trace(folder: Path) -> dict[str, list[tuple[str, int, float]]]:
    """The checkpoint writes each trial recorded (SWEEPER_TEST_TRACE_CHECKPOINTS, tests/faults): key -> [(token, epoch, time)],
    in epoch order. Not in the file's order: a driver frozen between storing a checkpoint and appending its line appends
    it on waking, after its successor's lines (seen in CI: A's epoch 1 after B's epochs 2 and 3)."""
    found = {}
    for path in folder.iterdir():
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        found[path.name] = sorted(((token, int(epoch), float(at)) for token, epoch, at in lines), key=lambda w: w[1])
    return found


# --- the scenario ----------------------------------------------------------------------------


@dataclass
class Takeover:
    a: Driver
    b: Driver
    a_code: int
    b_code: int
    a_token: str
    b_holder: dict
    resumed_at: float
    traces: dict = field(default_factory=dict)


def run_takeover(workdir: Path, name: str, *, a_uri: str, b_uri: str, read_client, cut: Callable[[Driver], None],
                 restore: Callable[[Driver], None], env: dict | None = None, storage: Path | None = None) -> Takeover:
    """A trains; once it has logged a few epochs, ``cut(A)``; B starts and takes the sweep over
    (A's claim goes stale); once B has stored a checkpoint, ``restore(A)``; both run to their end."""
    spec = write_spec(workdir, name)
    traces = workdir / "trace"
    traces.mkdir()
    storage = storage or workdir / "results"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "RAY_ADDRESS"))}
    faults = Path(__file__).resolve().parent / "faults"  # its sitecustomize traces the checkpoint writes
    env = {**base, **LEASE_ENV, "SWEEPER_TEST_TRACE_CHECKPOINTS": str(traces), **(env or {}),
           "PYTHONPATH": os.pathsep.join(p for p in (str(faults), base.get("PYTHONPATH")) if p)}

    def argv(uri: str) -> list[str]:
        return [SWEEPER, "run", str(spec), "--tracking-uri", uri, "--storage", str(storage)]

    a = Driver("a", argv(a_uri), workdir, env)
    b = None
    try:
        first = wait_for(lambda: holder(read_client, name), 300, "driver A to take the lease")
        assert first["pid"] == a.proc.pid, first
        wait_for(lambda: most_epochs(read_client, name) >= 2 or a.proc.poll() is not None, 300,
                 "driver A to train two epochs")
        assert a.proc.poll() is None, a.output()
        cut(a)
        # B is started once A's claim is stale: before that it would name A and exit 2, by design
        wait_for(lambda: time.time() - last_heartbeat(read_client, name) > STALE_S + 1, 120,
                 "driver A's claim to go stale")
        b = Driver("b", argv(b_uri), workdir, env)

        def b_holds():
            assert b.proc.poll() is None, b.output()
            h = holder(read_client, name)
            return h if h and h["pid"] == b.proc.pid else None

        b_holder = wait_for(b_holds, 300, "driver B to take the sweep over")
        wait_for(lambda: any(t == b_holder["driver"] for lines in trace(traces).values() for t, _, _ in lines)
                 or b.proc.poll() is not None, 300, "driver B to store a checkpoint")
        resumed_at = time.time()
        restore(a)
        b_code = b.wait(600)
        a_code = a.wait(300)
        return Takeover(a, b, a_code, b_code, first["driver"], b_holder, resumed_at, trace(traces))
    finally:
        restore(a)
        for driver in (a, b):
            if driver is not None and driver.proc.poll() is None:
                driver.kill()


def the_lines_a_printed_on_stderr(a: Driver) -> list[str]:
    """A's stderr without MLflow's INFO lines (it may be the process that migrates a store) and
    without the warnings sweeper logged while the store was out of reach ("cannot read its lease")."""
    return [line for line in a.err.splitlines()
            if line.strip() and not re.match(r"^\d{4}/\d\d/\d\d [\d:]+ INFO ", line)
            and not line.startswith("sweeper: warning: ")]


def assert_a_stopped_without_writing_and_b_trained_every_epoch_once(t: Takeover, client, name: str) -> None:
    out = t.a.output() + t.b.output()
    assert t.b_code == 0, out
    assert t.a_code == EXIT_LEASE_LOST == 3, out
    assert "[4/4]" in t.b.out, out
    lines = the_lines_a_printed_on_stderr(t.a)
    b_name = f"{t.b_holder['host']}-{t.b_holder['pid']}"
    assert len(lines) == 1, out
    assert re.fullmatch(rf"sweep '{name}' was taken over by {re.escape(b_name)} \(since \d{{4}}-\d\d-\d\d "
                        r"[\d:]+ UTC\): this driver stopped without writing", lines[0]), lines[0]
    assert "[4/4]" not in t.a.out and not re.search(r"^\[\d+/4\] .*: (failed|interrupted)", t.a.out, re.M), out

    # every trial trained to the end, each epoch once in MLflow, no trial marked by A
    runs = trial_runs(client, name)
    assert len(runs) == 4
    for run in runs:
        assert run.data.tags.get("status") == "finished" and run.info.status == "FINISHED", run.data.tags
        assert "sweeper.last_error" not in run.data.tags, run.data.tags["sweeper.last_error"]
        for key in ("test_acc", "train_loss", "epoch_s"):
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert steps == list(range(1, EPOCHS + 1)), f"{run.info.run_name}: {key} at steps {steps}"

    # each epoch's checkpoint stored by one driver only, A's all before B took over
    taken_at = t.b_holder["since"]
    assert set(t.traces) == {r.data.tags["sweeper.trial_key"] for r in runs}
    for key, writes in t.traces.items():
        assert [epoch for _, epoch, _ in writes] == list(range(1, EPOCHS + 1)), (key, writes)
        assert {token for token, _, _ in writes} <= {t.a_token, t.b_holder["driver"]}, writes
        for token, epoch, at in writes:
            if token == t.a_token:
                assert at < taken_at, f"{key}: A stored epoch {epoch} after B took over"
            else:
                assert at > taken_at, (key, writes)

    # the parent run is B's: ended FINISHED by B, holder B, no claim left
    tags = parent_tags(client, name)
    assert json.loads(tags[HOLDER_TAG])["driver"] == t.b_holder["driver"]
    assert not any(k.startswith("sweeper.lease.") for k in tags), tags
    experiment = client.get_experiment_by_name(name)
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`sweeper.role` = 'sweep'")
    assert parent.info.status == "FINISHED"


def freeze(driver: Driver) -> None:
    signal_session(driver.proc.pid, signal.SIGSTOP)


def thaw(driver: Driver) -> None:
    signal_session(driver.proc.pid, signal.SIGCONT)
