#!/usr/bin/env bash
# Restarts the server replicas of a running compose stack one at a time, each back to healthy before the next, so the
# API never goes down: `docker restart` sends SIGTERM (the server drains: readiness and new predictions answer 503),
# and nginx retries those, and refused connections, on the other replicas. Use it to pick up new models in ./models
# or a changed OBERTA_CONFIG file. Run it from the directory of docker-compose.yml (COMPOSE_FILE and
# COMPOSE_PROJECT_NAME are honoured, as by any `docker compose`):
#
#   deploy/rolling-restart.sh            # every replica of the service "oberta"
#   ROLLING_TIMEOUT_S=600 deploy/rolling-restart.sh
set -euo pipefail

service=${1:-oberta}
timeout=${ROLLING_TIMEOUT_S:-300}   # seconds a replica may take to be healthy again (loading and warming its models)
mapfile -t ids < <(docker compose ps -q "$service")
[ ${#ids[@]} -gt 0 ] || { echo "rolling-restart: no running container of service '$service'" >&2; exit 1; }
if [ ${#ids[@]} -eq 1 ]; then
    echo "rolling-restart: only one replica of '$service': the API is down while it restarts" >&2
fi
for id in "${ids[@]}"; do
    name=$(docker inspect -f '{{.Name}}' "$id")
    start=$SECONDS
    docker restart -t 30 "$id" >/dev/null
    until [ "$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")" = healthy ]; do
        if [ $((SECONDS - start)) -ge "$timeout" ]; then
            echo "rolling-restart: ${name#/} not healthy after ${timeout} s; stopping here" >&2
            exit 1
        fi
        sleep 1
    done
    echo "rolling-restart: ${name#/} healthy again after $((SECONDS - start)) s"
done
