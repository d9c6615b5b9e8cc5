# Sourced by run.sh: the Docker engine, a Compose and debootstrap, installed from Debian's
# packages when missing, and dockerd started when not running. Only what this run started is
# stopped at its end (stop_engine).
#
# The Debian client (/usr/bin/docker, same release as the engine, BuildKit built in) is used
# even where another `docker` comes first on PATH: a newer client without the buildx plugin
# refuses DOCKER_BUILDKIT=1 builds.

ENGINE_STARTED_PID=""
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/sweeper-test-dockerd.log}

install_missing() {
    local need=()
    { command -v dockerd && [ -x /usr/bin/docker ]; } >/dev/null 2>&1 || need+=(docker.io)
    command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
    command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
    if [ ${#need[@]} -gt 0 ]; then
        say "installing ${need[*]} (apt)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    DOCKER=/usr/bin/docker
    if "$DOCKER" compose version >/dev/null 2>&1; then COMPOSE=("$DOCKER" compose); else COMPOSE=(docker-compose); fi
    export DOCKER
}

start_engine() {
    if "$DOCKER" info >/dev/null 2>&1; then
        say "docker engine: already running"
        return
    fi
    say "docker engine: starting dockerd (log: $DOCKERD_LOG)"
    dockerd >"$DOCKERD_LOG" 2>&1 &
    ENGINE_STARTED_PID=$!
    for _ in $(seq 60); do
        "$DOCKER" info >/dev/null 2>&1 && return
        kill -0 "$ENGINE_STARTED_PID" 2>/dev/null || break
        sleep 1
    done
    tail -20 "$DOCKERD_LOG" >&2
    echo "dockerd did not start" >&2
    exit 1
}

stop_engine() {
    [ -n "$ENGINE_STARTED_PID" ] || return 0
    say "docker engine: stopping the dockerd this run started (pid $ENGINE_STARTED_PID)"
    kill "$ENGINE_STARTED_PID" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$ENGINE_STARTED_PID" 2>/dev/null || return 0; sleep 1; done
}
