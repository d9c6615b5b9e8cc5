"""Fixtures for the cluster tests: every service is a real process on 127.0.0.1.

One session stack is shared by every cluster test (starting it is most of the cost): PostgreSQL,
an S3 endpoint (moto) with two buckets, the MLflow tracking server (PostgreSQL store, artifacts
proxied to S3), a second MLflow server running the basic-auth app, and a 2-node Ray cluster
(head + worker, 1 CPU each, their own temp dirs). They start once and stop at the end of the
session; only processes started here are ever signalled.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cluster_services import MlflowServer, Postgres, RayCluster, S3Server
from cluster_sweeps import ARTIFACT_BUCKET, STORAGE_BUCKET, Stack


@pytest.fixture(scope="session")
def stack():
    # Short, top-level paths: Ray's unix sockets live under its temp dirs (108-byte limit).
    root = Path(tempfile.mkdtemp(prefix="swr-", dir="/tmp"))
    started: list = []
    try:
        postgres = Postgres().start()
        started.append(postgres)
        s3 = S3Server(root).start()
        started.append(s3)
        s3.create_bucket(ARTIFACT_BUCKET)
        s3.create_bucket(STORAGE_BUCKET)
        mlflow = MlflowServer(root / "mlflow", postgres.create_database("mlflow"), s3, ARTIFACT_BUCKET)
        auth = MlflowServer(root / "mlflow-auth", postgres.create_database("mlflow_auth"), s3, ARTIFACT_BUCKET,
                            admin_password="admin-" + secrets.token_hex(12))
        ray = RayCluster(root / "ray", env=s3.env)
        started += [mlflow, auth, ray]
        # Ray first, on its own: `ray start` gives a raylet a fixed 30 s to register, which a
        # machine busy importing two MLflow servers can miss. The two servers then overlap.
        ray.start()
        with ThreadPoolExecutor(2) as pool:
            for future in [pool.submit(mlflow.start), pool.submit(auth.start)]:
                future.result()
        user, password = "researcher", "pw-" + secrets.token_hex(16)
        auth.create_user(user, password)
        auth.warm_up(user, password)
        yield Stack(root, postgres, s3, mlflow, auth, user, password, ray)
    finally:
        # Clients first (Ray, MLflow) in parallel, then the stores they wrote to.
        clients = [s for s in started if not isinstance(s, (Postgres, S3Server))]
        with ThreadPoolExecutor(max(1, len(clients))) as pool:
            list(pool.map(_stop_quietly, clients))
        for service in reversed([s for s in started if s not in clients]):
            _stop_quietly(service)
        shutil.rmtree(root, ignore_errors=True)


def _stop_quietly(service) -> None:
    try:
        service.stop()
    except Exception as e:  # noqa: BLE001 - stop the rest whatever one of them did
        print(f"teardown of {type(service).__name__}: {e}", file=sys.stderr)


@pytest.fixture
def cluster(stack) -> Stack:
    """The stack with both Ray nodes alive (a test before may have killed the worker) and the
    plain MLflow server up (a test before may have stopped it)."""
    stack.ray.ensure_two_nodes()
    if stack.mlflow.service is None or not stack.mlflow.service.alive():
        stack.mlflow.start()
    return stack
