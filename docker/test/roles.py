"""The image in each of its roles, started by hand as a user of docker/k8s or compose would:
the MLflow server (the KubeRay manifest's command), a Ray head and a Ray worker (compose.yaml's
commands), and a small sweep submitted inside the head with `sweeper run --address auto`.

    python docker/test/roles.py IMAGE
"""
from __future__ import annotations

import subprocess
import sys
import time

from harness import (DOCKER, LOOPBACK, SWEEP_SPEC, compose_services, docker, free_port, http_ok,
                     k8s_mlflow_command, ray_head_flags, ray_worker_extra, remap, say, verify_sweep,
                     wait_for)

PREFIX = "sweeper-test-role"
VOLUME = f"{PREFIX}-data"
DATA = "/home/ray/data"   # owned by `ray` in the image, so a fresh named volume is writable


def run_container(image: str, name: str, command: list[str], env: dict[str, str], hosts: list[str],
                  extra: tuple[str, ...] = ()) -> None:
    args = ["run", "-d", "--name", name, "--network", "host", "-v", f"{VOLUME}:{DATA}", *extra]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    for host in hosts:
        args += ["--add-host", f"{host}:{LOOPBACK}"]
    docker(*args, image, *command)


def raylet_healthy(agent_port: int) -> bool:
    import urllib.request

    try:
        url = f"http://{LOOPBACK}:{agent_port}/api/local_raylet_healthz"
        with urllib.request.urlopen(url, timeout=3) as response:
            return b"success" in response.read()
    except OSError:
        return False


def cleanup() -> None:
    for role in ("worker", "head", "mlflow"):
        docker("rm", "-f", f"{PREFIX}-{role}", check=False)
    docker("volume", "rm", "-f", VOLUME, check=False)


def dump_logs() -> None:
    for role in ("mlflow", "head", "worker"):
        out = subprocess.run([DOCKER, "logs", "--tail", "40", f"{PREFIX}-{role}"],
                             capture_output=True, text=True)
        print(f"---- {role} ----\n{out.stdout}{out.stderr}", file=sys.stderr)


def main(image: str) -> None:
    services = compose_services()
    node_env = dict(services["ray-head"]["environment"])
    hosts = ["mlflow", "ray-head"]
    cleanup()
    docker("volume", "create", VOLUME)
    started = time.monotonic()
    try:
        mlflow_port = free_port()
        mlflow_cmd = remap(k8s_mlflow_command(), {"--port": mlflow_port})
        mlflow_env = {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{DATA}/mlflow.db",
                      "MLFLOW_ARTIFACTS_DESTINATION": f"{DATA}/mlartifacts",
                      "MLFLOW_SERVER_ALLOWED_HOSTS":
                          services["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"]}
        say(f"mlflow: {' '.join(mlflow_cmd)}")
        run_container(image, f"{PREFIX}-mlflow", mlflow_cmd, mlflow_env, hosts)
        wait_for("the MLflow server", lambda: http_ok(f"http://{LOOPBACK}:{mlflow_port}/health"))

        # No S3 in this check: trial storage is the shared volume, MLflow is the server above.
        env = {"MLFLOW_TRACKING_URI": f"http://mlflow:{mlflow_port}",
               "RAY_USAGE_STATS_ENABLED": node_env["RAY_USAGE_STATS_ENABLED"]}
        node_opts = ("--init", "--shm-size", services["ray-head"]["shm_size"])
        ports, head_extra = ray_head_flags()
        head_cmd = remap(services["ray-head"]["command"], ports, head_extra)
        head_agent = int(head_extra[-1].split("=")[1])
        say(f"ray head: {' '.join(head_cmd)}")
        run_container(image, f"{PREFIX}-head", head_cmd, env, hosts, node_opts)
        wait_for("the Ray head's raylet", lambda: raylet_healthy(head_agent))

        worker_agent = free_port()
        worker_cmd = remap(services["ray-worker-gpu"]["command"],
                           {"--address": f"ray-head:{ports['--port']}"}, ray_worker_extra(worker_agent))
        say(f"ray worker: {' '.join(worker_cmd)}")
        run_container(image, f"{PREFIX}-worker", worker_cmd, env, hosts, node_opts)
        wait_for("the Ray worker's raylet", lambda: raylet_healthy(worker_agent))
        say(f"3 roles up in {time.monotonic() - started:.0f}s")

        subprocess.run([DOCKER, "exec", "-i", f"{PREFIX}-head", "sh", "-c", "cat > docker_smoke.yaml"],
                       input=SWEEP_SPEC, text=True, check=True)
        sweep = ["sweeper", "run", "docker_smoke.yaml", "--address", "auto",
                 "--tracking-uri", f"http://mlflow:{mlflow_port}", "--storage", f"{DATA}/results"]
        say(f"in the head: {' '.join(sweep)}")
        result = subprocess.run([DOCKER, "exec", f"{PREFIX}-head", *sweep], timeout=1200)
        if result.returncode != 0:
            raise SystemExit(f"sweeper run exited {result.returncode}")
        verify_sweep(f"http://{LOOPBACK}:{mlflow_port}")
        say(f"roles check passed in {time.monotonic() - started:.0f}s")
    except BaseException:
        dump_logs()
        raise
    finally:
        cleanup()


if __name__ == "__main__":
    main(sys.argv[1])
