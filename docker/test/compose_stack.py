"""The compose stack, for real: `docker compose -f docker/compose.yaml -f OVERRIDE`, where the
override (written here, from compose.yaml itself) changes only what this machine forces:

- images that cannot be pulled (postgres, minio/minio, minio/mc) become local stand-ins built
  from Debian's packages and PyPI (standins/);
- every service joins the host network (connections stay on 127.0.0.1), the service names
  resolve to 127.0.0.1, and the Ray nodes get the free ports and loopback address that two Ray
  nodes on one host network need (their commands are otherwise compose.yaml's);
- Compose v1 (Debian 12's) refuses host networking beside published ports, and an override
  cannot remove ports: each service is therefore replaced by a copy of itself less `ports` (and
  less the GPU reservation: no GPU here); see override().

Then a small sweep runs inside the head with `sweeper run --address auto`, MLflow on PostgreSQL
with S3 artifacts, trial storage in S3, and the result is checked from the host.

    python docker/test/compose_stack.py IMAGE
"""
from __future__ import annotations

import copy
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from harness import (COMPOSE_FILE, DOCKER, LOOPBACK, SWEEP_SPEC, compose_services, docker,
                     free_port, ray_head_flags, ray_worker_extra, remap, say, verify_sweep, wait_for)

HERE = Path(__file__).resolve().parent
PROJECT = "sweeper-test"
STANDINS = {"postgres": "sweeper-test-postgres:local", "minio": "sweeper-test-s3:local",
            "create-buckets": "sweeper-test-s3:local"}
FIXED_PORTS = {"postgres": 5432, "minio": 9000, "mlflow": 5000}  # in compose.yaml's URLs
COMPOSE = shlex.split(os.environ.get("COMPOSE_CMD", "docker-compose"))


def build_standins(base: str) -> None:
    ca = os.environ.get("CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    secret = ["--secret", f"id=ca-bundle,src={ca}"] if Path(ca).is_file() else []
    for dockerfile, tag in (("postgres.Dockerfile", STANDINS["postgres"]), ("s3.Dockerfile", STANDINS["minio"])):
        if docker("image", "ls", "-q", tag):
            continue
        say(f"building stand-in {tag}")
        env = dict(os.environ, DOCKER_BUILDKIT="1")
        subprocess.run(["nice", DOCKER, "build", "--quiet", "--network", "host", "--build-arg",
                        f"BASE_IMAGE={base}", *secret, "-f", str(HERE / "standins" / dockerfile),
                        "-t", tag, str(HERE / "standins")], env=env, check=True, stdout=subprocess.DEVNULL)


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((LOOPBACK, port)) == 0


HOSTNET = "-hostnet"   # suffix of the host-network copy of each service


def override(services: dict) -> dict:
    """Compose v1 cannot combine host networking with compose.yaml's published ports, and an
    override can only add ports, never drop them. So each service of compose.yaml is switched
    off (profile `replaced`) and a copy of it takes its place: its definition verbatim, less
    `ports` (meaningless on the host network) and the GPU reservation (no GPU here), with the
    changes listed in the module docstring. Every name resolves to 127.0.0.1 either way."""
    names = list(services)
    hosts = [f"{n}:{LOOPBACK}" for n in names]
    out: dict = {}
    for name, service in services.items():
        out[name] = {"profiles": ["replaced"]}
        copy_ = copy.deepcopy(service)
        copy_.pop("ports", None)
        copy_.pop("deploy", None)
        copy_.update(network_mode="host", extra_hosts=list(hosts))
        if name in STANDINS:
            copy_["image"] = STANDINS[name]
        if "depends_on" in copy_:
            copy_["depends_on"] = {d + HOSTNET: c for d, c in copy_["depends_on"].items()}
        out[name + HOSTNET] = copy_
    out["minio" + HOSTNET]["environment"]["S3_PORT"] = str(FIXED_PORTS["minio"])  # the stand-in's

    ports, head_extra = ray_head_flags()
    head_agent, head_dash = int(head_extra[-1].split("=")[1]), int(head_extra[1].split("=")[1])
    head = out["ray-head" + HOSTNET]
    head["command"] = remap(head["command"], ports, head_extra)
    head["healthcheck"] = dict(head["healthcheck"], test=[
        "CMD-SHELL", head["healthcheck"]["test"][1].replace(":52365", f":{head_agent}").replace(":8265", f":{head_dash}")])
    worker_agent = free_port()
    worker = out["ray-worker-gpu" + HOSTNET]
    worker["command"] = remap(worker["command"], {"--address": f"ray-head:{ports['--port']}"},
                              ray_worker_extra(worker_agent))
    worker["healthcheck"] = dict(worker["healthcheck"], test=[
        "CMD-SHELL", worker["healthcheck"]["test"][1].replace(":52365", f":{worker_agent}")])
    return {"services": out}


def compose(files: list[str], env_file: str, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    command = [*COMPOSE, "-p", PROJECT, "--env-file", env_file]
    for f in files:
        command += ["-f", f]
    result = subprocess.run([*command, *args], **kw)
    if check and result.returncode != 0:
        raise SystemExit(f"{' '.join(COMPOSE)} {' '.join(args)} exited {result.returncode}")
    return result


def main(image: str, base: str) -> None:
    build_standins(base)
    busy = [f"{n}:{p}" for n, p in FIXED_PORTS.items() if port_taken(p)]
    if busy:
        raise SystemExit(f"ports compose.yaml's URLs name are taken on this machine: {busy}")
    services = compose_services()
    with tempfile.TemporaryDirectory(prefix="sweeper-test-compose-") as tmp:
        over = override(services)
        over_file = Path(tmp) / "compose.host-network.yaml"
        over_file.write_text(yaml.safe_dump(over, sort_keys=False))
        env_file = Path(tmp) / "env"
        env_file.write_text(f"POSTGRES_PASSWORD=test-{os.getpid()}\nAWS_ACCESS_KEY_ID=testkey\n"
                            f"AWS_SECRET_ACCESS_KEY=testsecret-{os.getpid()}\nSWEEPER_IMAGE={image}\n")
        files = [str(COMPOSE_FILE), str(over_file)]
        say(f"override: {over_file}\n{over_file.read_text()}")
        started = time.monotonic()
        try:
            compose(files, str(env_file), "down", "-v", "--remove-orphans", check=False, capture_output=True)
            compose(files, str(env_file), "up", "-d", "--no-build")
            wait_for("every service healthy", lambda: all_healthy(files, str(env_file)), timeout=300, every=5)
            say(f"compose stack up in {time.monotonic() - started:.0f}s")
            head = compose(files, str(env_file), "ps", "-q", "ray-head" + HOSTNET, capture_output=True, text=True).stdout.strip()
            subprocess.run([DOCKER, "exec", "-i", head, "sh", "-c", "cat > docker_smoke.yaml"],
                           input=SWEEP_SPEC, text=True, check=True)
            sweep = ["sweeper", "run", "docker_smoke.yaml", "--address", "auto", "--tracking-uri",
                     "http://mlflow:5000", "--storage", "s3://sweeper-results/docker_smoke"]
            say(f"in ray-head: {' '.join(sweep)}")
            if subprocess.run([DOCKER, "exec", head, *sweep], timeout=1200).returncode != 0:
                raise SystemExit("sweeper run failed in the compose stack")
            verify_sweep(f"http://{LOOPBACK}:{FIXED_PORTS['mlflow']}")
            say(f"compose check passed in {time.monotonic() - started:.0f}s")
        except BaseException:
            compose(files, str(env_file), "ps", check=False)
            compose(files, str(env_file), "logs", "--tail=30", check=False)
            raise
        finally:
            compose(files, str(env_file), "down", "-v", "--remove-orphans", check=False, capture_output=True)


def all_healthy(files: list[str], env_file: str) -> bool:
    ids = compose(files, env_file, "ps", "-q", capture_output=True, text=True).stdout.split()
    states = {}
    for cid in ids:
        fmt = "{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.ExitCode}}"
        name, status, health, code = docker("inspect", "-f", fmt, cid).split()
        states[name] = (status, health, code)
        if status == "exited" and code != "0":
            raise SystemExit(f"{name} exited with {code}")
    pending = [n for n, (status, health, _) in states.items()
               if not (health == "healthy" or (health == "none" and status in ("running", "exited")))]
    return len(states) >= 6 and not pending


if __name__ == "__main__":
    main(sys.argv[1], os.environ.get("SWEEPER_TEST_BASE", "sweeper-test-base:torch2.14.1"))
