"""Fencing with real processes (sweeper/driver/lease.py): driver A trains a 4-trial digits study, is cut
off past the stale time (its whole process tree frozen with SIGSTOP, or its connection to the
tracking server cut by a TCP proxy), driver B takes the sweep over, then A comes back. A must
stop without writing anything more: one line naming B, exit 3 (EXIT_LEASE_LOST), no trial marked by it, no
checkpoint stored after the takeover; every epoch is trained and logged by one driver only.

The tracking store is a real `mlflow server` (sqlite behind it): with a bare sqlite file, a
process frozen inside a write transaction would hold the database lock and block every other
process (not a lease matter: see docs/architecture.md)."""

from __future__ import annotations

import pytest
from fencing import (MlflowServer, TcpProxy, assert_a_stopped_without_writing_and_b_trained_every_epoch_once,
                     freeze, run_takeover, thaw)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        server.stop()


def test_a_driver_frozen_past_the_stale_time_stops_without_writing_when_it_wakes(server, workdir):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=server.uri)
    taken = run_takeover(workdir, "frozen", a_uri=server.uri, b_uri=server.uri, read_client=client,
                         cut=freeze, restore=thaw)
    assert_a_stopped_without_writing_and_b_trained_every_epoch_once(taken, client, "frozen")


def test_a_driver_cut_off_from_tracking_stops_without_writing_when_it_is_back(server, workdir):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=server.uri)
    proxy = TcpProxy(server.port)  # A reaches the server only through it
    try:
        taken = run_takeover(workdir, "partitioned", a_uri=proxy.uri, b_uri=server.uri, read_client=client,
                             cut=lambda a: proxy.cut(), restore=lambda a: proxy.restore())
    finally:
        proxy.close()
    assert proxy.refused > 0  # A really was cut off
    assert_a_stopped_without_writing_and_b_trained_every_epoch_once(taken, client, "partitioned")
