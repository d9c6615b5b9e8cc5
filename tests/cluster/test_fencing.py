"""Fencing against the cluster stack's `mlflow server` (PostgreSQL store, artifacts in S3): the
two scenarios of tests/test_fencing_e2e.py, driver A frozen with SIGSTOP or cut off from the
server by a TCP proxy past the stale time, driver B taking over, A coming back. The drivers start
Ray on this machine each (a frozen process tree must hold A's Ray, not the shared cluster's)."""

from __future__ import annotations

import pytest
from fencing import TcpProxy, assert_a_stopped_without_writing_and_b_trained_every_epoch_once, freeze, run_takeover, thaw

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_a_frozen_driver_stops_without_writing_against_the_mlflow_server(cluster, tmp_path):
    client = cluster.mlflow.client()
    taken = run_takeover(tmp_path, "cluster_fence_frozen", a_uri=cluster.mlflow.uri, b_uri=cluster.mlflow.uri,
                         read_client=client, cut=freeze, restore=thaw)
    assert_a_stopped_without_writing_and_b_trained_every_epoch_once(taken, client, "cluster_fence_frozen")


def test_a_partitioned_driver_stops_without_writing_against_the_mlflow_server(cluster, tmp_path):
    client = cluster.mlflow.client()
    proxy = TcpProxy(cluster.mlflow.port)
    try:
        taken = run_takeover(tmp_path, "cluster_fence_cut", a_uri=proxy.uri, b_uri=cluster.mlflow.uri,
                             read_client=client, cut=lambda a: proxy.cut(), restore=lambda a: proxy.restore())
    finally:
        proxy.close()
    assert proxy.refused > 0
    assert_a_stopped_without_writing_and_b_trained_every_epoch_once(taken, client, "cluster_fence_cut")
