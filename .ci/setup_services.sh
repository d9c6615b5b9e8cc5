#!/usr/bin/env bash
# System packages the tests need on a fresh Debian/Ubuntu machine: the PostgreSQL server binaries
# (tests/cluster) and chromium (tests/test_mlflow_ui.py drives it with Playwright, which cannot
# download its own browser here). Idempotent and quiet: does nothing when they are present.
# Everything else (moto's S3 server, MLflow, Ray, psycopg2) comes from the `test` extra.
#
# The tests start their own throwaway PostgreSQL (initdb in a temp dir, a free loopback port)
# as the unprivileged user `nobody` when run as root, so no system cluster is created or started.
set -euo pipefail

have_postgres() {
    command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1 && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

have_chromium() {
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

if have_postgres && have_chromium; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_services: PostgreSQL server binaries missing and no apt-get; install PostgreSQL (initdb, postgres)" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# No system-wide cluster on port 5432: the tests bring their own.
$SUDO mkdir -p /etc/postgresql-common
if ! grep -qs '^create_main_cluster *= *false' /etc/postgresql-common/createcluster.conf; then
    echo "create_main_cluster = false" | $SUDO tee -a /etc/postgresql-common/createcluster.conf >/dev/null
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends postgresql chromium >/dev/null

if ! have_postgres; then
    echo "setup_services: postgresql installed but initdb/postgres not found" >&2
    exit 1
fi
if ! have_chromium; then
    echo "setup_services: chromium installed but not found on PATH" >&2
    exit 1
fi
