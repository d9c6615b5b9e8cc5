"""Shared fixtures: one torch thread, a tmp MLflow store, a tmp work folder, local Ray; and how
the suite runs side by side under pytest-xdist (`make test`: ``-n 2 --dist loadgroup``)."""

from __future__ import annotations

import functools
import os
import re
import secrets
import sys
from pathlib import Path

import pytest

# MLflow's usage telemetry, off in every process the tests start: no test is about it, it calls
# out to the network, and its background thread sets and unsets an environment variable that a
# request being built at that moment reads (KeyError '_MLFLOW_TELEMETRY_SESSION_ID', seen under load).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Every `mlflow server` the tests start would also start MLflow's job runner (huey consumers for
# its GenAI jobs: 14 processes, 3.3 GB resident for two servers, measured here): sweeper runs no
# MLflow job, so the servers start without it.
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")

# --- side by side (pytest-xdist) -----------------------------------------------------------------
# `make test` runs two workers with `--dist loadgroup`, scheduled by SharedFixtureScheduling: the
# tests that share a fixture beyond one test stay on one worker, so it is built once. (xdist's own
# loadgroup reads `xdist_group` marks into node ids, which pytest 9 no longer lets it change.)
SHARED_FIXTURE = re.compile(r"""scope=["'](session|package|module)["']""")


@pytest.hookimpl(optionalhook=True)  # a hook of xdist: absent under -p no:xdist
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        """Work units: a directory whose conftest shares a fixture (tests/cluster: the stack, all
        its tests one unit), a module that shares one (module-scoped), else each test alone. The
        largest units go first."""

        def _split_scope(self, nodeid: str) -> str:
            return xdist_unit(config.rootpath, nodeid)

    return SharedFixtureScheduling(config, log)


@functools.cache
def shares_fixtures(path: Path) -> bool:
    return path.is_file() and SHARED_FIXTURE.search(path.read_text()) is not None


def xdist_unit(root: Path, nodeid: str) -> str:
    module = nodeid.split("::")[0]
    tests = root / "tests"
    folder = (root / module).parent
    while folder != tests and tests in folder.parents:  # tests/conftest.py's fixtures are per worker
        if shares_fixtures(folder / "conftest.py"):
            return str(folder.relative_to(root))
        folder = folder.parent
    return module if shares_fixtures(root / module) else nodeid


# Tests that time a driver against another (lease, fencing, clock skew, a frozen or cut-off
# driver) or inject faults on a clock: marked `serial`, and `make test` runs them one at a time,
# with nothing beside them, so a busy second core never decides their outcome.
SERIAL = ("tests/test_lease_e2e.py", "tests/test_fencing_e2e.py", "tests/test_clock_skew_e2e.py",
          "tests/test_driver_gone_e2e.py", "tests/test_chaos.py", "tests/test_rayjob_e2e.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.split("::")[0] in SERIAL:
            item.add_marker(pytest.mark.serial)
    if hasattr(config, "workerinput"):
        # Single tests are handed out in this order: the slow ones first, so that the many short
        # ones even out the workers' ends instead of one long test running alone at the end.
        # Every worker sorts alike (xdist requires the same order).
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_configure(config):
    # once, in the process that starts the xdist workers, before they start
    if config.getoption("numprocesses", None) and not hasattr(config, "workerinput"):
        ray_auth_token_before_any_worker()


def ray_auth_token_before_any_worker() -> None:
    """Ray 2.60's first local ray.init() on a machine writes ~/.ray/auth_token (a token as
    ``secrets.token_hex(32)``), and every later Ray process reads it. Two workers' first ray.init()
    at once would each write a token of their own and one Ray's processes could read the other's:
    the file is written here, once, before the workers start."""
    path = Path.home() / ".ray" / "auth_token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """Tiny models in the test process: one intra-op thread is faster than two fighting over a
    busy 2-core machine (Ray workers set their own from the trial's cpu count)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    """A fresh working folder, made current, with no tracking settings leaking in."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for var in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    return folder


@pytest.fixture(scope="session")
def _migrated_mlflow_db(tmp_path_factory) -> Path:
    """One empty MLflow sqlite store, created once: building its schema takes seconds."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@pytest.fixture
def tracking_uri(tmp_path: Path, _migrated_mlflow_db: Path) -> str:
    """A real, empty MLflow store: sqlite in tmp_path (absolute, so Ray workers agree on it)."""
    import shutil

    path = tmp_path / "mlflow.db"
    shutil.copyfile(_migrated_mlflow_db, path)
    return f"sqlite:///{path}"


@pytest.fixture
def mlflow_client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


@pytest.fixture
def ray_local():
    """Ray on this machine with 2 CPUs. It stays up for the next test of this process that asks
    for it too (starting Ray takes seconds); a test that does not ask for it finds none running
    (ray_only_where_asked), and the session's end stops it."""
    import ray

    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        _SHARED_RAY["up"] = True
    return ray


_SHARED_RAY = {"up": False}  # whether the Ray running in this process is ray_local's


@pytest.fixture(autouse=True)
def ray_only_where_asked(request):
    """No Ray left from an earlier test where this one did not ask for ray_local: such a test
    starts its own (with its own environment for the workers) or checks that none runs. Only
    ray_local's Ray is stopped: a module's own cluster (a fixture of wider scope) stays up."""
    if "ray_local" not in request.fixturenames and _SHARED_RAY["up"]:
        stop_ray()
        _SHARED_RAY["up"] = False


def stop_ray() -> None:
    ray = sys.modules.get("ray")  # not imported: no Ray of this process to stop
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        ray.shutdown()


def pytest_sessionfinish(session):
    stop_ray()


@pytest.fixture
def worker_killed_once(monkeypatch, tmp_path: Path):
    """Call with an epoch before starting Ray: the first trial worker to log that epoch SIGKILLs
    itself, once (tests/faults/sitecustomize.py, put first on the PYTHONPATH the Ray workers
    inherit). Returns the flag file the dying worker creates."""

    def arm(epoch: int) -> Path:
        flag = tmp_path / "worker-killed-once"
        faults = Path(__file__).resolve().parent / "faults"
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(faults), os.environ.get("PYTHONPATH")) if p))
        monkeypatch.setenv("FAULT_KILL_AT_EPOCH", str(epoch))
        monkeypatch.setenv("FAULT_ONCE_FLAG", str(flag))
        return flag

    return arm
