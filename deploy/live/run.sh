#!/usr/bin/env bash
# The live compose stage of CI (.ci/run): the project's Dockerfile and docker-compose.yml built and run for real on a
# local Docker engine, without Docker Hub. Installs and starts what it needs (setup.sh), builds the images
# (images.sh), then runs tests/live: predictions through nginx reach every replica, Prometheus scrapes each, readiness
# is honest, failover (SIGTERM, SIGKILL) and a rolling restart under load lose no request, `down -v` leaves nothing.
# Prints what it measured (also in runs/live/results.json). Grafana is left out (no local package to build it from).
#
#   bash deploy/live/run.sh        # as root; PYTHON=... picks the interpreter with the test dependencies (.venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$SECONDS

PYTHON=${PYTHON:-.venv/bin/python}
if [ ! -x "$PYTHON" ]; then
    make setup >/dev/null  # the test dependencies, as `make test` installs them
fi

setup=0
bash deploy/live/setup.sh || setup=$?
if [ "$setup" -eq 3 ] && [ "${OBERTA_LIVE_REQUIRED:-0}" != 1 ]; then
    # No Docker engine possible on this machine (reason printed above): skip, loudly. OBERTA_LIVE_REQUIRED=1 fails.
    echo "deploy/live/run.sh: SKIPPED: the live compose stage needs a Docker engine (see above)" >&2
    exit 0
fi
[ "$setup" -eq 0 ] || { echo "deploy/live/run.sh: FAILED: deploy/live/setup.sh exited $setup" >&2; exit 1; }
echo "deploy/live/run.sh: grafana is left out: no Debian, PyPI or npm package of it to build a local image from," \
     "and its public image is on Docker Hub, which CI cannot reach" >&2
bash deploy/live/images.sh oberta-ci/oberta:latest
images_s=$((SECONDS - start))

export OBERTA_LIVE_DOCKER=1 OBERTA_LIVE_IMAGE=oberta-ci/oberta:latest
export OBERTA_LIVE_RESULTS=$PWD/runs/live/results.json NM_DISABLE_ANALYTICS=1 HF_HUB_OFFLINE=1
rm -f "$OBERTA_LIVE_RESULTS"
mkdir -p "$(dirname "$OBERTA_LIVE_RESULTS")"
size=$(docker image inspect --format '{{.Size}}' "$OBERTA_LIVE_IMAGE")
status=0
# The tests run in file order: the stack comes up once (module fixture) and the last test takes it down.
"$PYTHON" -m pytest -q -rA -p no:cacheprovider tests/live || status=$?

echo "deploy/live/run.sh: image $OBERTA_LIVE_IMAGE $((size / 1000000)) MB; tools and images ${images_s} s;" \
     "stage $((SECONDS - start)) s" >&2
[ -f "$OBERTA_LIVE_RESULTS" ] && cat "$OBERTA_LIVE_RESULTS" >&2
if [ "$status" -ne 0 ]; then
    echo "deploy/live/run.sh: FAILED (compose logs: runs/live/compose.log; dockerd: /var/log/oberta-dockerd.log)" >&2
fi
exit "$status"
