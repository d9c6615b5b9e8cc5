"""The stack itself, before any sweep: each service does what the sweep tests rely on."""

from __future__ import annotations

import os
import subprocess

import pytest
from cluster_sweeps import ARTIFACT_BUCKET, env_vars

from cluster_services import VENV_BIN

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_mlflow_server_keeps_runs_in_postgres_and_artifacts_in_s3(cluster, tmp_path):
    client = cluster.mlflow.client()
    experiment_id = client.create_experiment("stack-smoke")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "x", 0.5, step=3)
    (tmp_path / "note.txt").write_text("hello")
    client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))

    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "x")] == [(3, 0.5)]
    with cluster.postgres.connect("mlflow") as conn, conn.cursor() as cur:
        cur.execute("SELECT step, value FROM metrics WHERE run_uuid = %s AND key = 'x'", (run.info.run_id,))
        assert cur.fetchall() == [(3, 0.5)]
    key = f"{experiment_id}/{run.info.run_id}/artifacts/note.txt"
    assert key in cluster.s3.keys(ARTIFACT_BUCKET, f"{experiment_id}/")
    assert cluster.s3.read(ARTIFACT_BUCKET, key) == b"hello"


def test_auth_server_admits_the_user_and_refuses_a_wrong_password(cluster):
    client = cluster.auth_mlflow.client()
    with env_vars(MLFLOW_TRACKING_USERNAME=cluster.auth_user, MLFLOW_TRACKING_PASSWORD=cluster.auth_password):
        assert client.search_experiments(max_results=1) is not None
    with env_vars(MLFLOW_TRACKING_USERNAME=cluster.auth_user, MLFLOW_TRACKING_PASSWORD="wrong-password-123"), \
            pytest.raises(Exception, match="401|nauthorized|credentials"):
        client.search_experiments(max_results=1)


def test_a_ray_task_runs_on_each_node(cluster):
    script = (
        "import ray, sys\n"
        "ray.init(address=sys.argv[1], log_to_driver=False)\n"
        "@ray.remote(num_cpus=1)\n"
        "def where():\n"
        "    import time; time.sleep(2)\n"
        "    return ray.get_runtime_context().get_node_id()\n"
        "print(' '.join(sorted(set(ray.get([where.remote() for _ in range(2)])))))\n"
    )
    out = subprocess.run([str(VENV_BIN / "python"), "-c", script, cluster.ray.address],
                         capture_output=True, text=True, timeout=180, env={**os.environ, **cluster.ray.client_env})
    assert out.returncode == 0, out.stderr[-3000:]
    assert set(out.stdout.split()) == {cluster.ray.head.node_id, cluster.ray.worker.node_id}
