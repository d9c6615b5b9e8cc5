"""What the cluster lacks, found before any MLflow run or trial exists: each check returns None
(or, for resources, a reason to wait) or raises SpecError/SweepError with one line.

- ``check_resources``: one trial (or one array) against each alive node's resources, not the
  cluster's total. A request no node can hold is refused, unless nodes can still come: the
  autoscaler's node groups (the cluster config Ray keeps in the GCS, reported by the autoscaler
  and KubeRay) include one that can hold it, or an autoscaler runs whose groups Ray does not
  report, or ``SWEEPER_WAIT_FOR_RESOURCES`` is set; then it returns why the run waits.
- ``check_data``: one small task per node that can run a trial (pinned to it, ``soft=False``)
  checks that ``dataset.root`` holds the files the loader reads there
  (``trainables.data.layout``), fetching a ``download: true`` set once per node first.
- ``check_storage_and_tracking``: the trial storage written and removed from every such node, a
  local folder seen by all of them (a shared mount), the tracking server answered from each; a
  sqlite or folder store with any node on another machine is refused.

``before_trials`` is what `sweeper run` calls once Ray is up and before Tune starts.
docs/cluster.md ("Before the first trial") says the same for users.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

from sweeper.core.uris import is_remote_storage, storage_folder
from sweeper.core import settings
from sweeper.core.errors import SpecError, SweepError
from sweeper.record.store import TrackingStore
from sweeper.plan.arrays import array_resources, largest_node
from sweeper.views.validate import datasets_of

log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 300.0  # a node's check (a download: true set is fetched inside it)


def before_trials(spec, storage: str, tracking_uri: str, *, local: bool) -> str | None:
    """The checks of the connected cluster before the first trial: None, or the reason the run
    waits for nodes; SpecError/SweepError for what cannot work. ``local``: Ray was started by this
    driver, so its one node is this machine, checked in this process (no task, no storage probe)."""
    size = spec.resources.array if isinstance(spec.resources.array, int) else 1  # auto: a solo trial at least
    nodes, groups, running = cluster_view()
    waiting = check_resources(spec, nodes, array_size=size, groups=groups, autoscaler_running=running)
    if local:
        problem = _data_on_node(data_sets(spec), f"this machine ({socket.gethostname()})")
        if problem is not None:
            raise SpecError(spec.path, None, problem)
    else:
        check_data(spec, nodes, size)
        check_storage_and_tracking(spec, nodes, storage, tracking_uri, array_size=size)
    if waiting:
        log.warning("preflight: %s", waiting)
    return waiting


def this_machine() -> dict[str, float]:
    """The node a local run's Ray would have: {"cpu", "gpu"} of this machine."""
    import os

    import torch

    return {"cpu": float(os.cpu_count() or 1), "gpu": float(torch.cuda.device_count())}


def dry_run_lines(spec, local: bool) -> list[str]:
    """The preflight as far as a dry run can know it without starting Ray: a local run's one node
    is this machine (its CPUs and GPUs, the data sets under their roots); a cluster's nodes are
    only known to the run."""
    if not local:
        return ["the cluster's nodes are checked when the run starts (resources, each node's data set, "
                "storage and tracking)"]
    have = this_machine()
    node = {"Alive": True, "Resources": {"CPU": have["cpu"], "GPU": have["gpu"]}}
    size = spec.resources.array if isinstance(spec.resources.array, int) else 1
    try:
        waiting = check_resources(spec, [node], array_size=size)
        lines = [f"a run would wait: {waiting}" if waiting else
                 f"resources: a trial fits this machine ({_shape(node['Resources'])})"]
    except SpecError as e:
        lines = [f"a run would stop: {e}"]
    from trainables.data import layout

    for dataset in data_sets(spec):
        problem = layout.describe(dataset, f"this machine ({socket.gethostname()})")
        if problem is None:
            lines.append(f"data: {dataset['name']} found under {dataset.get('root')}")
        elif dataset.get("download"):
            lines.append(f"data: {dataset['name']} is downloaded to {dataset.get('root')} when the run starts")
        else:
            lines.append(f"a run would stop: {SpecError(spec.path, None, problem)}")  # as the run says it
    return lines


# --- resources ------------------------------------------------------------------------------------


def alive_nodes(nodes: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [n for n in nodes if n.get("Alive", True)]


def request(spec, array_size: int = 1, nodes: Iterable[Mapping[str, Any]] = ()) -> dict[str, float]:
    """What one Ray trial asks for: a trial's cpu and gpu, or an array's (``array_resources``)."""
    r = spec.resources
    nodes = list(nodes)
    if array_size > 1:
        return array_resources(r.cpu, r.gpu, array_size, largest_node(nodes) if nodes else None)
    return {"cpu": float(r.cpu), "gpu": float(r.gpu)}


def fits(resources: Mapping[str, float], want: Mapping[str, float]) -> bool:
    return resources.get("CPU", 0.0) >= want["cpu"] and resources.get("GPU", 0.0) >= want["gpu"]


def nodes_summary(nodes: list[Mapping[str, Any]]) -> str:
    """``2 nodes: 2 CPU, 0 GPU each`` or ``3 nodes: 2 x (2 CPU, 0 GPU), 1 x (8 CPU, 1 GPU)``."""
    shapes = Counter(_shape(n.get("Resources", {})) for n in nodes)
    count = f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}"
    if len(shapes) == 1:
        return f"{count}: {next(iter(shapes))}{' each' if len(nodes) > 1 else ''}"
    return f"{count}: " + ", ".join(f"{k} x ({shape})" for shape, k in shapes.most_common())


def _shape(resources: Mapping[str, float]) -> str:
    return f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"


def unfit_line(want: Mapping[str, float], nodes: list[Mapping[str, Any]], array_size: int = 1) -> str:
    """The one line naming the key no node can hold and what the cluster has."""
    per = "per trial" if array_size <= 1 else f"per array of {array_size} trials"
    most_gpu = max((n.get("Resources", {}).get("GPU", 0.0) for n in nodes), default=0.0)
    most_cpu = max((n.get("Resources", {}).get("CPU", 0.0) for n in nodes), default=0.0)
    summary = nodes_summary(nodes)
    if want["gpu"] > 0 and most_gpu == 0:
        return f"resources.gpu: {want['gpu']:g} {per}, but no node of this Ray cluster has a GPU ({summary})"
    if want["gpu"] > most_gpu:
        return (f"resources.gpu: {want['gpu']:g} {per}, but no node of this Ray cluster has more than "
                f"{most_gpu:g} GPU ({summary})")
    if want["cpu"] > most_cpu:
        return (f"resources.cpu: {want['cpu']:g} {per}, but no node of this Ray cluster has more than "
                f"{most_cpu:g} CPU ({summary})")
    return (f"resources: {want['cpu']:g} CPU and {want['gpu']:g} GPU {per}, but no node of this Ray "
            f"cluster has both ({summary})")


def node_groups(cluster_config: Any) -> list[dict[str, Any]]:
    """The autoscaler's node groups from Ray's cluster config (``autoscaler_pb2.ClusterConfig``):
    name, resources of one node, how many nodes it may have."""
    if cluster_config is None:
        return []
    return [{"name": g.name, "resources": dict(g.resources), "max_count": g.max_count}
            for g in cluster_config.node_group_configs]


def cluster_view() -> tuple[list[Mapping[str, Any]], list[dict[str, Any]], bool]:
    """(alive nodes, the autoscaler's node groups, whether an autoscaler reports its status) of
    the Ray cluster this process is connected to."""
    import ray

    nodes = alive_nodes(ray.nodes())
    groups: list[dict[str, Any]] = []
    try:
        from ray._private.state import state

        groups = node_groups(state.get_cluster_config())
    except Exception as e:  # noqa: BLE001 - an older Ray without it: the status key below decides
        log.info("no autoscaler cluster config from Ray (%s)", e)
    running = False
    try:
        from ray._private.ray_constants import DEBUG_AUTOSCALING_STATUS
        from ray.experimental.internal_kv import _internal_kv_get

        running = autoscaler_adds_nodes(_internal_kv_get(DEBUG_AUTOSCALING_STATUS))
    except Exception as e:  # noqa: BLE001 - unknown is "no autoscaler seen", refused unless waited for
        log.info("could not read the autoscaler's status from Ray (%s)", e)
    return nodes, groups, running


def autoscaler_adds_nodes(status: bytes | str | None) -> bool:
    """Whether the status Ray's monitor publishes (``__autoscaling_status`` in the GCS) comes from
    an autoscaler that launches nodes. Every head runs the monitor; without an autoscaling config
    it uses a read-only provider that names each node's type ``node_<node id>`` and launches
    nothing, so only node types of other names, or launches pending, mean nodes can come."""
    if not status:
        return False
    import json

    report = json.loads(status).get("autoscaler_report") or {}
    mapping = report.get("node_type_mapping") or {}
    named = any(kind != f"node_{node}" for node, kind in mapping.items())
    return named or bool(report.get("pending_launches")) or bool(report.get("pending_nodes"))


def check_resources(spec, nodes: list[Mapping[str, Any]], *, array_size: int = 1,
                    groups: list[dict[str, Any]] = (), autoscaler_running: bool = False) -> str | None:
    """None when an alive node can hold one trial (or array); else the reason the run waits
    when nodes can still come; else SpecError naming the key and what the cluster has."""
    nodes = alive_nodes(nodes)
    want = request(spec, array_size, nodes)
    if any(fits(n.get("Resources", {}), want) for n in nodes):
        return None
    line = unfit_line(want, nodes, array_size)
    able = [g for g in groups if g["max_count"] != 0 and fits(g["resources"], want)]
    if able:
        g = able[0]
        return (f"{line}; waiting for the autoscaler to add a node of group {g['name']!r} "
                f"({_shape(g['resources'])} each, up to {g['max_count'] if g['max_count'] >= 0 else 'any'})")
    if groups:  # an autoscaler whose groups are known and none can
        kinds = "; ".join(f"{g['name']}: {_shape(g['resources'])}" for g in groups)
        raise SpecError(None, None, f"{line}, nor can its autoscaler add one (node groups {kinds})")
    if autoscaler_running:
        return f"{line}; waiting: a Ray autoscaler runs on this cluster and may add a node that can"
    if settings.WAIT_FOR_RESOURCES.get():
        return f"{line}; waiting for such a node to join (SWEEPER_WAIT_FOR_RESOURCES is set)"
    raise SpecError(None, None, line)


def preflight_resources(spec, array_size: int = 1) -> str | None:
    """``check_resources`` against the connected cluster: what the driver calls."""
    nodes, groups, running = cluster_view()
    return check_resources(spec, nodes, array_size=array_size, groups=groups, autoscaler_running=running)


# --- per-node tasks -----------------------------------------------------------------------------


def node_name(node: Mapping[str, Any]) -> str:
    """How a line names a node: its IP, hostname and the start of its Ray node id (several nodes
    may share a machine)."""
    host = node.get("NodeManagerHostname") or "?"
    return f"node {node.get('NodeManagerAddress', '?')} ({host}, id {str(node.get('NodeID', ''))[:8]})"


def trial_nodes(spec, nodes: list[Mapping[str, Any]], array_size: int = 1) -> list[Mapping[str, Any]]:
    """The alive nodes one trial (or array) fits on: where trials can run."""
    want = request(spec, array_size, nodes)
    return [n for n in alive_nodes(nodes) if fits(n.get("Resources", {}), want)]


def _data_on_node(datasets: list[dict], where: str) -> str | None:
    from trainables.data import layout

    for dataset in datasets:
        problem = layout.ensure(dataset, where)
        if problem is not None:
            return problem
    return None


def data_sets(spec) -> list[dict]:
    """The data sets the trials read from files (digits ship with scikit-learn, synthetic and
    a smoke test's stand-ins are made in memory)."""
    return [d for d in datasets_of(spec) if d["name"] not in ("digits", "synthetic") and not d.get("stand_in")]


def check_data(spec, nodes: list[Mapping[str, Any]], array_size: int = 1) -> None:
    """Every node that can run a trial has each data set the trials read (fetched there first
    with ``download: true``); else SpecError naming ``dataset.root``, the node and the layout."""
    datasets = data_sets(spec)
    targets = trial_nodes(spec, nodes, array_size)
    if not datasets or not targets:
        return
    for answer in on_each_named(targets, _data_on_node, datasets):
        if answer is not None:
            raise SpecError(spec.path, None, answer)


def on_each_named(nodes: list[Mapping[str, Any]], fn, *args) -> list[Any]:
    """``fn(*args, node_name)`` once on each node, pinned there (``soft=False``: never run
    elsewhere), taking no CPU so busy nodes answer too; the answers in ``nodes``' order."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0, max_retries=0)(fn)
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(*args, node_name(n)) for n in nodes]
    try:
        return ray.get(refs, timeout=PROBE_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise SweepError(f"preflight: a node did not answer its check within {PROBE_TIMEOUT_S:g} s") from None


# --- storage and tracking -----------------------------------------------------------------------


def _storage_on_node(storage: str, token_name: str, token: str, tracking_uri: str, where: str) -> str | None:
    if is_remote_storage(storage):
        import pyarrow.fs as pafs

        try:
            fs, base = pafs.FileSystem.from_uri(storage)
            probe = f"{base.rstrip('/')}/.sweeper-probe-{uuid.uuid4().hex}"
            with fs.open_output_stream(probe) as f:
                f.write(b"probe")
            fs.delete_file(probe)
        except Exception as e:  # noqa: BLE001 - any failure is the answer, said in one line
            return f"--storage {storage}: {where} cannot write there ({type(e).__name__}: {e})"
    else:
        folder = Path(storage_folder(storage))
        seen = folder / token_name
        if not seen.is_file() or seen.read_text() != token:
            return (f"--storage {storage}: {where} does not see the folder the driver writes (a local path "
                    "on a multi-node cluster: give a shared mount on every node, or s3://...)")
        probe = folder / f".sweeper-probe-{uuid.uuid4().hex}"
        try:
            probe.write_text("probe")
            probe.unlink()
        except OSError as e:
            return f"--storage {storage}: {where} cannot write there ({e.strerror or e})"
    return _tracking_answers(tracking_uri, where)


def _tracking_answers(uri: str, where: str) -> str | None:
    if not TrackingStore.parse(uri).is_server:
        return None
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10).close()
    except urllib.error.HTTPError:
        return None  # it answered (a proxy's 401/404 is still the server reached)
    except OSError as e:
        return f"tracking: {where} cannot reach MLflow at {uri} ({getattr(e, 'reason', e)})"
    return None


def check_storage_and_tracking(spec, nodes: list[Mapping[str, Any]], storage: str, tracking_uri: str, *,
                               driver_ip: str | None = None, array_size: int = 1) -> None:
    """The storage and the tracking store usable from every node that can run a trial."""
    targets = trial_nodes(spec, nodes, array_size)
    if not targets:
        return
    here = driver_ip or _driver_ip()
    remote = [n for n in targets if n.get("NodeManagerAddress") != here]
    if remote and TrackingStore.parse(tracking_uri).is_local:
        raise SpecError(None, "--tracking-uri", f"{tracking_uri} is a store on this machine, but trials run on "
                        f"{node_name(remote[0])} too: use an MLflow server every node reaches "
                        "(--tracking-uri http://HOST:5000)")
    token_name, token = None, uuid.uuid4().hex
    local = not is_remote_storage(storage)
    if local:
        folder = Path(storage_folder(storage))
        folder.mkdir(parents=True, exist_ok=True)
        token_name = f".sweeper-driver-{token}"
        (folder / token_name).write_text(token)
    try:
        for answer in on_each_named(targets, _storage_on_node, storage, token_name or "", token, tracking_uri):
            if answer is not None:
                raise SweepError(answer)
    finally:
        if local:
            (folder / token_name).unlink(missing_ok=True)


def _driver_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()


