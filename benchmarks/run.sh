#!/usr/bin/env bash
# Run Outpost's benchmark suite: peers' venvs first (skipped when present), then every section.
# Usage: benchmarks/run.sh [--full] [--only engine,e2e,latency,cold,scale,store] [--runs N] ...
# (all options: .venv/bin/python -m benchmarks --help).  Results: benchmarks/results/*.json.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if [ -z "${OUTPOST_BENCH_NO_PEERS:-}" ]; then
  benchmarks/setup_peers.sh
fi
exec .venv/bin/python -m benchmarks "$@"
