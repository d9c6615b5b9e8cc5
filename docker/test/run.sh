#!/usr/bin/env bash
# `make test-docker`: the image and the compose stack, built and run for real on this machine.
#
#  1. the Docker engine, a Compose and debootstrap (installed / started when missing);
#  2. a local base image with Python and torch (build_base.sh: debootstrap + docker import), as no
#     container registry may be reachable;
#  3. the project's image from docker/Dockerfile, BASE_IMAGE pointed at that base, the machine's CA
#     bundle handed to pip as a build secret;
#  4. the image as users get it (check_image.sh);
#  5. the image as MLflow server, Ray head and Ray worker, and a sweep inside the head (roles.py);
#  6. the same through `docker compose -f docker/compose.yaml -f <override>` (compose_stack.py).
#
# Needs root on Debian/Ubuntu, and the project's venv for the host-side checks (PYTHON).
# Idempotent: images are reused, containers and volumes of a run are removed at its end, and a
# dockerd is stopped only if this run started it.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=docker/test
PYTHON=${PYTHON:-.venv/bin/python}
BASE_IMAGE=${SWEEPER_TEST_BASE:-sweeper-test-base:torch2.14.1}
IMAGE=${SWEEPER_TEST_IMAGE:-sweeper:test}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
START=$(date +%s)

say() { echo "[test-docker] $*"; }
# shellcheck source=docker/test/engine.sh
. "$HERE/engine.sh"
# shellcheck source=docker/test/check_image.sh
. "$HERE/check_image.sh"
trap stop_engine EXIT

install_missing
start_engine
export COMPOSE_CMD="${COMPOSE[*]}" SWEEPER_TEST_BASE="$BASE_IMAGE" CA_BUNDLE

DOCKER="$DOCKER" CA_BUNDLE="$CA_BUNDLE" "$HERE/build_base.sh" "$BASE_IMAGE"

SECRET=()
[ -f "$CA_BUNDLE" ] && SECRET=(--secret "id=ca-bundle,src=$CA_BUNDLE")
say "building $IMAGE from docker/Dockerfile on $BASE_IMAGE"
t0=$(date +%s)
# --network host: the build's downloads leave from the host's own address, not a bridge.
DOCKER_BUILDKIT=1 nice "$DOCKER" build --progress=plain --network host -f docker/Dockerfile \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" "${SECRET[@]}" -t "$IMAGE" . >/tmp/sweeper-test-docker-build.log 2>&1 \
    || { tail -40 /tmp/sweeper-test-docker-build.log >&2; exit 1; }
say "image built in $(( $(date +%s) - t0 ))s (log: /tmp/sweeper-test-docker-build.log)"

check_image "$IMAGE" "$BASE_IMAGE"
"$PYTHON" "$HERE/roles.py" "$IMAGE"
"$PYTHON" "$HERE/compose_stack.py" "$IMAGE"
say "all checks passed in $(( $(date +%s) - START ))s"
