"""The driver's preflight with real Ray: a trial no node can hold, a node without the data set,
storage and tracking seen from the nodes; `sweeper validate --check-data` on this machine. Each
check is one line before any MLflow run or trial exists (the driver calls them first)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.core.errors import SpecError
from sweeper.driver import preflight
from sweeper.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta")


def _spec(resources: str = "{cpu: 1, gpu: 0}", dataset: str = "{name: cifar10, root: ~/data/cifar10}"):
    return parse_spec(f"name: p\ndataset: {dataset}\nmodel: {{family: cifar_resnet, depth: 8}}\n"
                      f"train: {{epochs: 1}}\ngrid: {{mode: [bn_only, full]}}\nresources: {resources}\n", "p.yaml")


def _fake_cifar(home: Path) -> None:
    folder = home / "data" / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR:
        (folder / name).write_bytes(b"x")


def test_a_gpu_trial_on_a_cpu_only_ray_is_refused_in_one_line(ray_local, monkeypatch):
    monkeypatch.delenv("SWEEPER_WAIT_FOR_RESOURCES", raising=False)
    with pytest.raises(SpecError) as e:
        preflight.preflight_resources(_spec("{cpu: 1, gpu: 0.5}"))
    assert str(e.value) == "resources.gpu: 0.5 per trial, but no node of this Ray cluster has a GPU (1 node: 2 CPU, 0 GPU)"
    with pytest.raises(SpecError, match=r"^resources.cpu: 4 per trial, but no node of this Ray cluster has more "
                                        r"than 2 CPU \(1 node: 2 CPU, 0 GPU\)$"):
        preflight.preflight_resources(_spec("{cpu: 4, gpu: 0}"))
    assert preflight.preflight_resources(_spec("{cpu: 2, gpu: 0}")) is None
    # waiting anyway is a setting: the run then says why it waits
    monkeypatch.setenv("SWEEPER_WAIT_FOR_RESOURCES", "1")
    reason = preflight.preflight_resources(_spec("{cpu: 1, gpu: 0.5}"))
    assert reason.startswith("resources.gpu: 0.5 per trial, but no node") and "SWEEPER_WAIT_FOR_RESOURCES" in reason


def test_an_autoscaler_group_that_can_hold_the_trial_means_wait_and_one_that_cannot_means_refuse():
    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": True, "Resources": {"CPU": 2.0}},
             {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 1.0}}]
    spec = _spec("{cpu: 1, gpu: 0.5}")
    gpu_group = {"name": "gpu-group", "resources": {"CPU": 8, "GPU": 1}, "max_count": 4}
    cpu_group = {"name": "cpu-group", "resources": {"CPU": 16}, "max_count": 10}
    wait = preflight.check_resources(spec, nodes, groups=[cpu_group, gpu_group])
    assert wait == ("resources.gpu: 0.5 per trial, but no node of this Ray cluster has a GPU (2 nodes: 2 CPU, 0 GPU "
                    "each); waiting for the autoscaler to add a node of group 'gpu-group' (8 CPU, 1 GPU each, up to 4)")
    with pytest.raises(SpecError, match=r"nor can its autoscaler add one \(node groups cpu-group: 16 CPU, 0 GPU\)$"):
        preflight.check_resources(spec, nodes, groups=[cpu_group])
    with pytest.raises(SpecError):  # a group scaled to zero for good adds nothing
        preflight.check_resources(spec, nodes, groups=[{**gpu_group, "max_count": 0}])
    assert "a Ray autoscaler runs" in preflight.check_resources(spec, nodes, autoscaler_running=True)
    # what Ray's monitor publishes on a head without autoscaling: a read-only provider, no launches
    readonly = '{"autoscaler_report": {"node_type_mapping": {"d37": "node_d37"}, "pending_launches": {}}}'
    assert not preflight.autoscaler_adds_nodes(readonly) and not preflight.autoscaler_adds_nodes(None)
    assert preflight.autoscaler_adds_nodes('{"autoscaler_report": {"node_type_mapping": {"d37": "gpu-group"}}}')
    # an array asks for K trials' worth, at most one card, capped at the largest node as the driver does
    assert preflight.request(spec, 4) == {"cpu": 4.0, "gpu": 1.0}
    assert preflight.request(spec, 4, nodes) == {"cpu": 2.0, "gpu": 0.5}


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """A real 2-node Ray cluster on this machine whose nodes have different homes: node a holds
    CIFAR-10 under ~/data/cifar10, node b (custom resource "b") has nothing there."""
    import ray
    from ray.cluster_utils import Cluster

    homes = {k: tmp_path_factory.mktemp(f"home-{k}") for k in "ab"}
    _fake_cifar(homes["a"])
    home = os.environ["HOME"]
    token = Path(home) / ".ray" / "auth_token"
    if token.exists():  # Ray reads its token from ~/.ray: each node's home gets the machine's, as a user's nodes would
        for folder in homes.values():
            (folder / ".ray").mkdir(exist_ok=True)
            (folder / ".ray" / "auth_token").write_text(token.read_text())
    try:  # a raylet and the workers it starts take the environment of the process that starts it
        os.environ["HOME"] = str(homes["a"])
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        os.environ["HOME"] = str(homes["b"])
        cluster.add_node(num_cpus=1, resources={"b": 1})
    finally:
        os.environ["HOME"] = home
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        yield ray, homes
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_a_node_without_the_data_set_is_named(two_nodes):
    ray, _ = two_nodes
    nodes = ray.nodes()
    b = next(n for n in nodes if "b" in n["Resources"])
    with pytest.raises(SpecError) as e:
        preflight.check_data(_spec(), nodes)
    line = str(e.value)
    assert line.startswith("p.yaml: dataset.root '~/data/cifar10' on node ")
    assert f"id {b['NodeID'][:8]})" in line and "cifar-10-batches-py/ lacks data_batch_1" in line
    assert "expected ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}" in line
    assert "\n" not in line
    # a data set that needs no files passes everywhere
    preflight.check_data(_spec(dataset="{name: digits}"), nodes)


def test_storage_and_a_local_store_pass_when_every_node_is_this_machine(two_nodes, tmp_path):
    ray, _ = two_nodes
    storage = tmp_path / "results"
    preflight.check_storage_and_tracking(_spec(), ray.nodes(), str(storage), f"sqlite:///{tmp_path}/m.db")
    assert list(storage.iterdir()) == []  # the probes were removed
    with pytest.raises(SpecError, match=r"^--tracking-uri: sqlite:///m.db is a store on this machine, but trials "
                                        r"run on node 203.0.113.9"):
        other = [{**n, "NodeManagerAddress": "203.0.113.9"} for n in ray.nodes()]
        preflight.check_storage_and_tracking(_spec(), other, str(storage), "sqlite:///m.db")


def _validate(folder: Path, home: Path) -> subprocess.CompletedProcess:
    (folder / "p.yaml").write_text("name: p\ndataset: {name: cifar10, root: ~/data/cifar10}\n"
                                   "model: {family: cifar_resnet, depth: 8}\ntrain: {epochs: 1}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run([sys.executable, "-c", "from sweeper.cli import main; main()", "validate", "p.yaml",
                           "--check-data"], cwd=folder, capture_output=True, text=True, timeout=300,
                          env={**env, "PYTHONPATH": str(ROOT), "HOME": str(home)})


def test_validate_check_data_names_the_root_and_layout_on_this_machine(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    proc = _validate(tmp_path, home)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith("p.yaml: dataset.root '~/data/cifar10' on this machine (")
    assert line.endswith("; or set dataset.download: true")
    _fake_cifar(home)
    proc = _validate(tmp_path, home)
    assert proc.returncode == 0, proc.stderr


# --- `sweeper run` itself: the preflight ends the run before any child run or trial ----------------

SWEEPER = str(Path(sys.executable).with_name("sweeper"))


def _run(folder: Path, study: str, tracking_uri: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    (folder / "study.yaml").write_text(study)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.pop("SWEEPER_WAIT_FOR_RESOURCES", None)
    return subprocess.run([SWEEPER, "run", "study.yaml", "--tracking-uri", tracking_uri, "--storage", "results", *args],
                          cwd=folder, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=timeout)


def _child_runs(tracking_uri: str, name: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_run_asking_a_gpu_of_a_cpu_only_ray_exits_2_with_one_line_and_no_trial(workdir, tracking_uri):
    study = ("name: gpu_on_cpu\ndataset: {name: digits, image_size: 16}\nmodel: {family: cifar_resnet, depth: 8}\n"
             "train: {epochs: 1}\ngrid: {lr: [0.1, 0.2]}\nresources: {cpu: 1, gpu: 0.5}\n")
    proc = _run(workdir, study, tracking_uri, timeout=60)  # within a minute, Ray's start included
    assert proc.returncode == 2, proc.stdout + proc.stderr
    cpus = os.cpu_count()
    assert proc.stderr.splitlines()[-1] == (f"resources.gpu: 0.5 per trial, but no node of this Ray cluster has a GPU "
                                            f"(1 node: {cpus} CPU, 0 GPU)")
    assert "Traceback" not in proc.stderr
    assert _child_runs(tracking_uri, "gpu_on_cpu") == []


def test_run_on_two_nodes_names_the_node_without_the_data_set_before_any_child_run(two_nodes, workdir, tracking_uri):
    ray, homes = two_nodes
    b = next(n for n in ray.nodes() if "b" in n["Resources"])
    study = ("name: data_on_one_node\ndataset: {name: cifar10, root: ~/data/cifar10}\n"
             "model: {family: cifar_resnet, depth: 8}\ntrain: {epochs: 1}\ngrid: {lr: [0.1, 0.2]}\n"
             "resources: {cpu: 1}\n")
    address = ray.get_runtime_context().gcs_address
    proc = _run(workdir, study, tracking_uri, "--address", address, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.splitlines()[-1]
    assert line.startswith("study.yaml: dataset.root '~/data/cifar10' on node ") and f"id {b['NodeID'][:8]})" in line
    assert "expected ROOT/cifar-10-batches-py/" in line and "Traceback" not in proc.stderr
    assert _child_runs(tracking_uri, "data_on_one_node") == []
