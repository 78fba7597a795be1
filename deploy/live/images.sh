#!/usr/bin/env bash
# Local images for the live compose test, without Docker Hub: a Debian bookworm base made with debootstrap from the
# Debian mirror, then Python 3.11, nginx and Prometheus on top of it (Debian packages), then the project's own
# Dockerfile built on the local Python image. Idempotent: an image whose tag exists is reused (the base takes ~90 s
# to make; bump BASE_TAG to remake it), and the later builds reuse Docker's layer cache.
# Usage: deploy/live/images.sh [PROJECT_IMAGE_TAG]   (run from anywhere; needs a running Docker daemon and root)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BASE_TAG=oberta-ci/bookworm:1
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PROJECT_TAG=${1:-oberta-ci/oberta:latest}
# The classic builder: BuildKit would fetch its frontend and metadata from Docker Hub.
export DOCKER_BUILDKIT=0

say() { echo "deploy/live/images.sh: $*" >&2; }
die() { say "$*"; exit 1; }
have() { docker image inspect "$1" >/dev/null 2>&1; }

# 1. The base: a minimal bookworm root filesystem, imported as an image.
if ! have "$BASE_TAG"; then
    say "making $BASE_TAG with debootstrap from $MIRROR"
    rootfs=$(mktemp -d /var/tmp/oberta-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
        || { tail -n 20 "$rootfs.log" >&2; die "debootstrap failed"; }
    rm -f "$rootfs.log"
    # This machine's CA bundle: TLS from containers (pip) passes through the same interception as the host's.
    # Kept as a local CA too, so a later update-ca-certificates inside an image keeps it.
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
        cp /etc/ssl/certs/ca-certificates.crt "$rootfs/usr/local/share/ca-certificates/host-bundle.crt"
    fi
    # As in Docker's official Debian images: no services started by package scripts, no recommends, no apt cache.
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 755 "$rootfs/usr/sbin/policy-rc.d"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/90oberta"
    printf 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\n' \
        >"$rootfs/etc/apt/apt.conf.d/docker-clean"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
    tar -C "$rootfs" --numeric-owner -c . \
        | docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$BASE_TAG" >/dev/null
    say "made $BASE_TAG"
fi

# 2. Python 3.11 (the stand-in for python:3.11-slim-bookworm), nginx and Prometheus, from Debian packages.
for name in python nginx prometheus; do
    say "building oberta-ci/$name"
    docker build -q --build-arg "BASE=$BASE_TAG" -t "oberta-ci/$name:latest" -f "$here/images/$name.Dockerfile" \
        "$here/images" >/dev/null || die "building oberta-ci/$name failed"
done

# 3. The project's real Dockerfile, on the local Python image (the server target: models are mounted).
say "building $PROJECT_TAG from the project's Dockerfile"
docker build -q --build-arg PYTHON_IMAGE=oberta-ci/python:latest --target server -t "$PROJECT_TAG" "$root" >/dev/null \
    || die "building the project's Dockerfile failed (rerun without -q to see why: DOCKER_BUILDKIT=0 docker build ...)"
say "$PROJECT_TAG: $(docker image inspect --format '{{.Size}}' "$PROJECT_TAG" | awk '{printf "%.0f MB", $1/1e6}')"
