"""What the two checks of `make test-docker` share: docker calls, free ports, the roles' commands
as docker/compose.yaml and docker/k8s/ write them, and the MLflow verdict on a finished sweep.

Every container runs on the host network, so every connection stays on 127.0.0.1; the fixed
ports of the deployment files are remapped to free ones, because other programs on a shared
machine may hold them.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = os.environ.get("DOCKER", "docker")
COMPOSE_FILE = REPO / "docker" / "compose.yaml"
K8S_MLFLOW = REPO / "docker" / "k8s" / "20-mlflow.yaml"
LOOPBACK = "127.0.0.1"
# A smaller copy of sweeps/quickstart.yaml: 4 trials of 1 epoch, so that both Ray nodes get some.
SWEEP_SPEC = """\
name: docker_smoke
description: quickstart in small, run inside the image by make test-docker
dataset: {name: digits, image_size: 16}
model: {family: cifar_resnet, width: 1}
train: {epochs: 1, batch_size: 64, lr: 0.1, optimizer: {name: sgd, momentum: 0.9, nesterov: false},
        weight_decay: 1.0e-4, lr_schedule: {name: cosine}, augment: false, eval_batch_size: 512}
grid:
  - {mode: [bn_only, full], depth: [8], seed: [0, 1]}
scheduler: {name: fifo}
resources: {cpu: 1, gpu: 0}
max_concurrent: 2
max_failures: 0
checkpoint: {every_epochs: 1}
"""
TRIALS = 4


def say(message: str) -> None:
    print(f"[test-docker] {message}", flush=True)


def docker(*args: str, check: bool = True, capture: bool = True, timeout: float = 600) -> str:
    result = subprocess.run([DOCKER, *args], capture_output=capture, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise SystemExit(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return (result.stdout or "").strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for(what: str, probe, timeout: float = 180, every: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


def compose_services() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def k8s_mlflow_command() -> list[str]:
    for doc in yaml.safe_load_all(K8S_MLFLOW.read_text()):
        if doc and doc["kind"] == "Deployment":
            return list(doc["spec"]["template"]["spec"]["containers"][0]["command"])
    raise SystemExit(f"{K8S_MLFLOW}: no Deployment")


def remap(command: list[str], values: dict[str, object], extra: list[str] = ()) -> list[str]:
    """The role's command with each `--flag=VALUE` named in `values` given its new value (a free
    port), plus the flags that two Ray nodes on one host network need (`extra`); nothing else."""
    out = []
    for word in command:
        flag, eq, _ = word.partition("=")
        out.append(f"{flag}={values[flag]}" if eq and flag in values else word)
    return out + list(extra)


def ray_head_flags(node_ip: str = LOOPBACK) -> tuple[dict[str, int], list[str]]:
    """Free ports for the head's fixed ones (compose's --port, --ray-client-server-port and the
    defaults of the dashboard and its agent), and the node address: loopback, not eth0's."""
    ports = {"--port": free_port(), "--ray-client-server-port": free_port()}
    extra = [f"--node-ip-address={node_ip}", f"--dashboard-port={free_port()}",
             f"--dashboard-agent-listen-port={free_port()}"]
    return ports, extra


def ray_worker_extra(agent_port: int, node_ip: str = LOOPBACK) -> list[str]:
    return [f"--node-ip-address={node_ip}", f"--dashboard-agent-listen-port={agent_port}"]


def verify_sweep(tracking_uri: str, experiment: str = "docker_smoke", trials: int = TRIALS) -> dict:
    """Every trial finished, one parent run with a child per trial, and trials on 2 Ray nodes."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"MLflow at {tracking_uri}: no experiment {experiment}")
    runs = client.search_runs([found.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweeper.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    problems = []
    if len(parents) != 1:
        problems.append(f"{len(parents)} parent runs, expected 1")
    if len(children) != trials:
        problems.append(f"{len(children)} child runs, expected {trials}")
    for child in children:
        if parents and child.data.tags["mlflow.parentRunId"] != parents[0].info.run_id:
            problems.append(f"run {child.info.run_id} has another parent")
        if child.data.tags.get("status") != "finished" or child.info.status != "FINISHED":
            problems.append(f"trial {child.data.tags.get('sweeper.trial_key')}: status "
                            f"{child.data.tags.get('status')} / {child.info.status}")
    nodes = {c.data.tags.get("sweeper.node_id") for c in children}
    if len(nodes - {None}) < 2:
        problems.append(f"trials ran on {len(nodes - {None})} Ray node(s), expected 2: {nodes}")
    if problems:
        raise SystemExit("sweep check failed:\n  " + "\n  ".join(problems))
    say(f"MLflow: 1 parent, {len(children)} finished children, on {len(nodes)} Ray nodes")
    return {"children": len(children), "nodes": sorted(nodes)}


if __name__ == "__main__":
    verify_sweep(sys.argv[1])
