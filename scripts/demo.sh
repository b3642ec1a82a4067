#!/usr/bin/env bash
# demo.sh — Outpost end to end on this machine: starts the service (SQLite, local RabbitMQ),
# creates a user, configures and starts a local endpoint, submits tasks from the SDK, prints the
# results, then stops everything it started. State lives in ./.outpost-demo (removed each run).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source "$ROOT/scripts/bootstrap.sh"
BIN=${OUTPOST_VENV:-$ROOT/.venv}/bin

export OUTPOST_HOME="$ROOT/.outpost-demo"
rm -rf "$OUTPOST_HOME"; mkdir -p "$OUTPOST_HOME"
PORT=$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export OUTPOST_URL="http://127.0.0.1:$PORT"

SERVICE_PID=""
cleanup() {
  "$BIN/outpost-endpoint" delete demo --yes >/dev/null 2>&1 || "$BIN/outpost-endpoint" stop demo >/dev/null 2>&1 || true
  if [ -n "$SERVICE_PID" ]; then kill "$SERVICE_PID" 2>/dev/null || true; wait "$SERVICE_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

say "starting the service on $OUTPOST_URL (SQLite in $OUTPOST_HOME, log $OUTPOST_HOME/service.log)"
"$BIN/outpost-service" serve --host 127.0.0.1 --port "$PORT" --amqp-prefix outpost-demo \
  >"$OUTPOST_HOME/service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 1 300); do
  curl -fsS "$OUTPOST_URL/health" >/dev/null 2>&1 && break
  kill -0 "$SERVICE_PID" 2>/dev/null || { cat "$OUTPOST_HOME/service.log" >&2; die "the service exited"; }
  sleep 0.1
done
curl -fsS "$OUTPOST_URL/health" >/dev/null || die "the service did not answer on $OUTPOST_URL/health"

OUTPOST_TOKEN=$("$BIN/outpost-service" create-user demo --json | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
export OUTPOST_TOKEN
say "created user 'demo'"

"$BIN/outpost-endpoint" configure demo
"$BIN/outpost-endpoint" start demo
ENDPOINT_ID=$("$BIN/python" -c 'import json,os; print(json.load(open(os.path.join(os.environ["OUTPOST_HOME"], "endpoints/demo/endpoint.json")))["endpoint_id"])')

"$BIN/python" "$ROOT/scripts/demo.py" "$ENDPOINT_ID"
"$BIN/outpost-endpoint" list
"$BIN/outpost-endpoint" status demo
say "demo finished; stopping the endpoint and the service"
