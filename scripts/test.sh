#!/usr/bin/env bash
# test.sh — the whole test suite: lint, format check, types, import rules, then pytest against
# real RabbitMQ and PostgreSQL (both started here if needed). Extra arguments go to pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# Every component the tests need is installed and started here (not by the tests), and a test
# that finds one missing fails instead of skipping (tests/recipes.py: missing()).
export OUTPOST_REQUIRE_INFRA=${OUTPOST_REQUIRE_INFRA:-1}
OUTPOST_NEED_POSTGRES=1 OUTPOST_NEED_TEST_INFRA=1 source "$ROOT/scripts/bootstrap.sh"
BIN=${OUTPOST_VENV:-$ROOT/.venv}/bin
say "ruff check";  "$BIN/ruff" check sdk endpoint cloud_service tests benchmarks
say "ruff format --check"; "$BIN/ruff" format --check sdk endpoint cloud_service tests benchmarks
say "mypy"; "$BIN/mypy" sdk/outpost endpoint/outpost_endpoint cloud_service/outpost_service
say "import rules"; "$BIN/lint-imports"
say "config docs"; "$BIN/python" scripts/config_docs.py --check
say "pytest"; "$BIN/pytest" -q "$@"
