#!/usr/bin/env bash
# Installs the system tools that tests/deploy uses: promtool and prometheus (Debian package "prometheus") and nginx
# (for `nginx -t` on the load balancer config). Idempotent: does nothing when the tools are on PATH already.
# Needs root and apt (CI runs as root); downloads from the Debian package registry only.
# The packages' services are not started (a temporary policy-rc.d denies it): the tests run their own instances.
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "deploy/ci-setup.sh: need root and apt-get to install ${missing[*]}; the tests that need them will skip" >&2
    exit 0
fi

policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
fi
cleanup() { if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deploy/ci-setup.sh: installed ${missing[*]}"
