"""Real services on loopback for the cluster tests: PostgreSQL, an S3 endpoint (moto's server),
the MLflow tracking server (plain and basic-auth) and a 2-node Ray cluster.

Every service is a process group this module started (``start_new_session=True``); stopping it
signals that group only, with a timeout before SIGKILL. Ray is never stopped with ``ray stop``
(it would take down every Ray instance on the machine): we kill the groups of our own
``ray start --block`` processes, then any straggler whose command line names our own unique
temp dir.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"
# Dummy credentials: moto accepts any; the region must be set for pyarrow and boto3.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "sweeper-test-key",
    "AWS_SECRET_ACCESS_KEY": "sweeper-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # no 1 s metadata probe per client
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2, proc: "Service | None" = None):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` (and the log tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{what}: {proc.name} exited with {proc.proc.returncode}\n{proc.log_tail()}")
        time.sleep(interval)
    tail = f"\n{proc.log_tail()}" if proc is not None else ""
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s{tail}")


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return True
    except OSError:
        return False


class Service:
    """One long-running process in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None,
                 cwd: Path | None = None, user: str | None = None, stop_signal: int = signal.SIGTERM):
        self.name, self.argv, self.log_path = name, [str(a) for a in argv], Path(log_path)
        self.env = {**os.environ, **(env or {})}
        self.cwd, self.user, self.stop_signal = cwd, user, stop_signal
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Service":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        extra = _as_user(self.user)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **extra)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """Signal our process group, wait, then SIGKILL whatever of the group is left."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the child leads its own group
        _signal_group(pgid, self.stop_signal)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(pgid, signal.SIGKILL)  # members that outlived the leader
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _as_user(user: str | None) -> dict:
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


# --- PostgreSQL --------------------------------------------------------------------------------


def find_postgres_bindir() -> Path:
    """The directory holding initdb and postgres: PATH first, then Debian's versioned layout."""
    for name in ("postgres", "initdb"):
        found = shutil.which(name)
        if found:
            real = Path(found).resolve().parent
            if (real / "initdb").exists() and (real / "postgres").exists():
                return real
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0), reverse=True)
    for bindir in versions:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    raise FileNotFoundError("PostgreSQL server binaries not found (run .ci/setup_services.sh)")


class Postgres:
    """A throwaway cluster: initdb in ``root``, loopback TCP on a free port, socket in ``root``.

    PostgreSQL refuses to run as root, so under root (CI) it runs as ``nobody`` with ``root``
    chowned to it. Authentication is ``trust`` on loopback: the tests are about MLflow, not
    about PostgreSQL passwords.
    """

    superuser = "postgres"

    def __init__(self):
        # Its own top-level temp dir: the unprivileged user must be able to reach it, and
        # pytest's tmp dirs are private to root.
        self.root = Path(tempfile.mkdtemp(prefix="swr-pg-", dir="/tmp"))
        self.bindir = find_postgres_bindir()
        self.user = "nobody" if os.geteuid() == 0 else None
        self.port = free_port()
        self.data = self.root / "data"
        self.service: Service | None = None

    def start(self) -> "Postgres":
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            init = subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.superuser,
                                   "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"],
                                  cwd=self.root, capture_output=True, text=True, timeout=120, **_as_user(self.user))
            if init.returncode != 0:
                raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout}{init.stderr}")
        self.service = Service("postgres", [
            self.bindir / "postgres", "-D", self.data, "-p", self.port, "-k", self.root,
            "-c", f"listen_addresses={LOOPBACK}", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "shared_buffers=32MB", "-c", "max_connections=60",
        ], self.root / "postgres.log", cwd=self.root, user=self.user, stop_signal=signal.SIGINT).start()
        wait_until(self._accepts_connections, 120, "postgres", proc=self.service)
        return self

    def _accepts_connections(self) -> bool:
        try:
            self.connect("postgres").close()
            return True
        except Exception:  # noqa: BLE001 - any failure means "not accepting connections yet"
            return False

    def connect(self, dbname: str):
        import psycopg2

        return psycopg2.connect(host=LOOPBACK, port=self.port, user=self.superuser, dbname=dbname, connect_timeout=3)

    def create_database(self, name: str) -> str:
        conn = self.connect("postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.uri(name)

    def uri(self, dbname: str) -> str:
        # The driver is named: SQLAlchemy 2.1 defaults postgresql:// to psycopg 3, not psycopg2.
        return f"postgresql+psycopg2://{self.superuser}@{LOOPBACK}:{self.port}/{dbname}"

    def stop(self) -> None:
        if self.service:
            self.service.stop(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


# --- S3 (moto's server mode) -------------------------------------------------------------------


class S3Server:
    """moto's S3 API on a loopback port, as its own process (state lives in that process)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.port = free_port()
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self.service: Service | None = None

    def start(self) -> "S3Server":
        self.service = Service("moto", [VENV_BIN / "python", "-m", "moto.server", "-H", LOOPBACK, "-p", self.port],
                               self.root / "moto.log", env=AWS_ENV).start()
        wait_until(lambda: http_ok(f"{self.endpoint}/moto-api/data.json"), 120, "moto S3 server", proc=self.service)
        return self

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=AWS_ENV["AWS_DEFAULT_REGION"],
                            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"])

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return [obj["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
                for obj in page.get("Contents", [])]

    def read(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    @property
    def env(self) -> dict:
        """What a client process needs to reach this endpoint (boto3, pyarrow, MLflow)."""
        return {**AWS_ENV, "AWS_ENDPOINT_URL": self.endpoint, "AWS_ENDPOINT_URL_S3": self.endpoint,
                "MLFLOW_S3_ENDPOINT_URL": self.endpoint}

    def stop(self) -> None:
        if self.service:
            self.service.stop()


# --- MLflow tracking server --------------------------------------------------------------------


class MlflowServer:
    """``mlflow server`` with a PostgreSQL store and artifacts proxied to S3; restartable on its port.

    With ``admin_password`` it runs MLflow's basic-auth app (admin user ``admin``, users in a
    sqlite file under ``root``).
    """

    admin_user = "admin"

    def __init__(self, root: Path, backend_uri: str, s3: S3Server, bucket: str, admin_password: str | None = None):
        self.root = Path(root)
        self.backend_uri, self.s3, self.bucket = backend_uri, s3, bucket
        self.admin_password = admin_password
        self.port = free_port()
        self.uri = f"http://{LOOPBACK}:{self.port}"
        self.service: Service | None = None
        self.starts = 0
        self.secret_key = secrets.token_hex(16)

    def _argv_env(self) -> tuple[list, dict]:
        argv = [VENV_BIN / "mlflow", "server", "--backend-store-uri", self.backend_uri,
                "--artifacts-destination", f"s3://{self.bucket}/", "--serve-artifacts",
                "--host", LOOPBACK, "--port", self.port, "--workers", "1"]
        env = {**self.s3.env, "MLFLOW_TRACKING_URI": "", "MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": ""}
        if self.admin_password is not None:
            config = self.root / "basic_auth.ini"
            config.write_text(
                "[mlflow]\n"
                "default_permission = READ\n"
                f"database_uri = sqlite:///{self.root / 'basic_auth.db'}\n"
                f"admin_username = {self.admin_user}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                # Without it every request pays a PBKDF2 check, seconds each on a busy 2-core box.
                "auth_cache_ttl_seconds = 600\n"
            )
            argv += ["--app-name", "basic-auth"]
            # The admin password reaches the server by environment only, never a file or argv.
            env.update(MLFLOW_AUTH_CONFIG_PATH=str(config), MLFLOW_AUTH_ADMIN_PASSWORD=self.admin_password,
                       MLFLOW_FLASK_SERVER_SECRET_KEY=self.secret_key)  # CSRF key, kept across restarts
        return argv, env

    def start(self, timeout: float = 300) -> "MlflowServer":
        self.root.mkdir(parents=True, exist_ok=True)
        argv, env = self._argv_env()
        self.starts += 1
        self.service = Service("mlflow", argv, self.root / f"mlflow-server.{self.starts}.log",
                               env=env, cwd=self.root).start()
        wait_until(lambda: http_ok(f"{self.uri}/health"), timeout, "mlflow server", interval=0.5, proc=self.service)
        self.warm_up()
        return self

    def stop(self) -> None:
        if self.service:
            self.service.stop(timeout=20)
            self.service = None
        wait_until(lambda: not tcp_open(self.port), 20, "mlflow server port released")

    def warm_up(self, username: str | None = None, password: str | None = None, timeout: float = 120) -> None:
        """One real API call (as ``username`` on the auth server): the first request of a fresh
        server imports and connects lazily, which a client with a short timeout must not pay;
        on the auth server it also puts the user's credentials in the auth cache."""
        headers = {"Content-Type": "application/json"}
        if self.admin_password is not None:
            headers["Authorization"] = _basic(username or self.admin_user, password or self.admin_password)
        request = urllib.request.Request(f"{self.uri}/api/2.0/mlflow/experiments/search",
                                         data=b'{"max_results": 1}', method="POST", headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as r:
            assert r.status == 200, r.read()

    def create_user(self, username: str, password: str) -> None:
        body = json.dumps({"username": username, "password": password}).encode()
        request = urllib.request.Request(f"{self.uri}/api/2.0/mlflow/users/create", data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": _basic(self.admin_user, self.admin_password)})
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.status == 200, r.read()

    def client(self):
        """An MlflowClient on this server. On the auth server, wrap calls in
        ``env_vars(**server.admin_env())``: MLflow reads credentials from the environment."""
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def admin_env(self) -> dict:
        return {"MLFLOW_TRACKING_USERNAME": self.admin_user, "MLFLOW_TRACKING_PASSWORD": self.admin_password}


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- Ray: a head and a worker node on this machine ---------------------------------------------

# Faster node-death detection than Ray's defaults (about 15 s), so the node-loss test is short.
RAY_FAST_FAILURE_ENV = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_USAGE_STATS_ENABLED": "0",
}


class RayNode:
    """One ``ray start --block`` in its own process group, its own temp dir, 1 CPU."""

    def __init__(self, name: str, temp_dir: Path, argv_tail: list, env: dict):
        self.name, self.temp_dir = name, Path(temp_dir)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        ports = {flag: free_port() for flag in (
            "--node-manager-port", "--object-manager-port", "--metrics-export-port",
            "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port")}
        argv = [VENV_BIN / "ray", "start", "--block", "--num-cpus=1", "--num-gpus=0",
                f"--temp-dir={self.temp_dir}", f"--node-ip-address={LOOPBACK}",
                "--object-store-memory=200000000", "--disable-usage-stats"]
        argv += [f"{flag}={port}" for flag, port in ports.items()] + argv_tail
        self.service = Service(f"ray-{name}", argv, self.temp_dir.parent / f"ray-{name}.log", env=env)
        self.node_id: str | None = None

    def raylet_pid(self) -> int | None:
        root = self.service.proc.pid if self.service.proc else None
        return next((pid for pid in _descendants(root) if _comm(pid) == "raylet"), None)


# Process tables from /proc (Linux only, as are the services above): no psutil needed.


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _parents() -> dict[int, int]:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            table[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: ppid
    return table


def _descendants(pid: int | None) -> list[int]:
    if pid is None:
        return []
    parents, found, frontier = _parents(), [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


class RayCluster:
    """A head node (with a GCS on ``port`` and a Ray Client server on ``client_port``) and one
    worker node, each 1 CPU, on loopback.

    ``env`` reaches every process of the cluster (the trial workers included): the S3
    credentials and endpoint, as a real cluster's nodes have in their environment. A driver
    needs ``client_env`` (the cluster's auth token) in its environment to attach.
    """

    def __init__(self, root: Path, env: dict):
        self.root = Path(root)
        # Ray 2.60 turns token auth on by itself when ~/.ray/auth_token exists (shared by every
        # Ray on the machine); this cluster always uses token auth, with a token of its own.
        self.client_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.env = {**env, **RAY_FAST_FAILURE_ENV, **self.client_env}
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        # The head's Ray Client server, for a driver outside the cluster (`--address ray://`).
        # Always a free port: left unset, `ray start --head` takes 10001 whenever ray[client] is
        # installed, and a second cluster on the machine then fails to start.
        self.client_port = free_port()
        self.client_address = f"ray://{LOOPBACK}:{self.client_port}"
        self.head = RayNode("head", self.root / "h", [
            "--head", f"--port={self.port}", "--include-dashboard=false",
            f"--dashboard-port={free_port()}", f"--ray-client-server-port={self.client_port}",
        ], self.env)
        self.worker: RayNode | None = None
        self.workers_started = 0

    def start(self) -> "RayCluster":
        self.head.node_id = self._start_node(self.head)
        self.start_worker()
        return self

    def start_worker(self) -> RayNode:
        """A fresh worker node (with a fresh temp dir) joined to the head."""
        self.workers_started += 1
        self.worker = RayNode(f"worker{self.workers_started}", self.root / f"w{self.workers_started}",
                              [f"--address={self.address}"], self.env)
        self.worker.node_id = self._start_node(self.worker)
        return self.worker

    def _start_node(self, node: RayNode, attempts: int = 3) -> str:
        """Start ``node`` and return its id. ``ray start`` gives a raylet a fixed 30 s to register
        and exits when a loaded machine is slower than that; such a start is simply retried."""
        for attempt in range(1, attempts + 1):
            node.service.start()
            try:
                return self._wait_for_node(node)
            except RuntimeError:  # the `ray start` process exited
                self._stop_node(node)
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _wait_for_node(self, node: RayNode, timeout: float = 240) -> str:
        """The node's id, once the cluster lists it alive (matched by its own temp dir)."""
        def registered():
            for info in self.nodes():
                if info.get("alive") and str(node.temp_dir) in json.dumps(info):
                    return info["node_id"]
            return None

        return wait_until(registered, timeout, f"ray {node.name} node", interval=1.0, proc=node.service)

    def nodes(self) -> list[dict]:
        """The cluster's node table, read from the GCS by a short-lived helper process."""
        script = (
            "import json, sys\n"
            "from ray._raylet import GcsClient\n"
            "client = GcsClient(address=sys.argv[1])\n"
            "infos = client.get_all_node_info(timeout=10)\n"
            "out = []\n"
            "for node_id, info in infos.items():\n"
            "    out.append({'node_id': node_id.hex(), 'alive': info.state == 0,\n"
            "                'raylet_socket': info.raylet_socket_name, 'is_head': info.is_head_node})\n"
            "print(json.dumps(out))\n"
        )
        result = subprocess.run([str(VENV_BIN / "python"), "-c", script, self.address], capture_output=True,
                                text=True, timeout=60, env={**os.environ, **self.env})
        if result.returncode != 0:
            return []
        return json.loads(result.stdout.strip().splitlines()[-1])

    def alive_node_ids(self) -> set[str]:
        return {n["node_id"] for n in self.nodes() if n["alive"]}

    def kill_worker_raylet(self) -> int:
        """SIGKILL the worker node's raylet, by pid: the node dies as a crashed machine would."""
        pid = self.worker.raylet_pid()
        assert pid is not None, f"no raylet under {self.worker.service.proc.pid}"
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_node_dead(self, node_id: str, timeout: float = 60) -> None:
        wait_until(lambda: node_id not in self.alive_node_ids(), timeout, f"node {node_id[:8]} marked dead",
                   interval=1.0)

    def ensure_two_nodes(self) -> None:
        """Restart the worker if an earlier test killed it."""
        if self.worker is None or self.worker.node_id not in self.alive_node_ids():
            if self.worker is not None:
                self._stop_node(self.worker)
            self.start_worker()

    def log_dirs(self) -> list[Path]:
        return [self.root]

    def client_server_logs(self, chars: int = 3000) -> str:
        """The tails of the head's Ray Client server logs (the proxier's and each session's): where
        the head says why a `ray://` session did not start."""
        logs = sorted({p.resolve() for p in self.head.temp_dir.glob("session_*/logs/ray_client_server*")})
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}"
                         for path in logs if path.stat().st_size)

    def stop(self) -> None:
        for node in [self.worker, self.head]:
            if node is not None:
                self._stop_node(node)

    def _stop_node(self, node: RayNode) -> None:
        node.service.stop(timeout=8)
        _kill_stragglers(str(node.temp_dir))


def _kill_stragglers(marker: str) -> None:
    """SIGKILL processes whose command line names ``marker`` (our unique temp dir) and so are ours."""
    me = os.getpid()
    for pid in _parents():
        if pid != me and any(marker in part for part in _cmdline(pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
