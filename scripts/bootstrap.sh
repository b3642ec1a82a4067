#!/usr/bin/env bash
# bootstrap.sh — make this checkout runnable: a .venv with Outpost installed, and the services its
# demo and tests need (RabbitMQ always, PostgreSQL for the test suite) running on this machine.
# Sourced by demo.sh and test.sh; safe to run repeatedly (it only does what is missing).
# Env: OUTPOST_VENV (default ./.venv), OUTPOST_NEED_POSTGRES=1 to also ensure PostgreSQL,
# OUTPOST_NEED_TEST_INFRA=1 to also install what the tests use and never install themselves
# (tests/recipes.py only checks and starts): Slurm (one-node cluster, started), MPICH, and the
# PostgreSQL server binaries for private clusters.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${OUTPOST_VENV:-$ROOT/.venv}
say() { printf '[outpost] %s\n' "$*"; }
die() { printf '[outpost] ERROR: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {  # apt_install PKG... (root only; retries once after apt-get update)
  is_root || die "$* is not installed; install it with: sudo apt-get install -y $*"
  say "installing $* with apt-get"
  local log=/tmp/outpost-apt.log
  if ! timeout 900 apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=120 "$@" >"$log" 2>&1; then
    timeout 300 apt-get update -q -o DPkg::Lock::Timeout=120 >>"$log" 2>&1 || true
    timeout 900 apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=120 "$@" >>"$log" 2>&1 \
      || { tail -20 "$log" >&2; die "apt-get install $* failed (log: $log)"; }
  fi
}

ensure_venv() {
  local stamp="$VENV/.outpost-installed"
  if [ ! -x "$VENV/bin/python" ]; then
    command -v python3 >/dev/null || die "python3 is missing; install it with: sudo apt-get install -y python3 python3-venv"
    python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV"; }
  fi
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    say "installing Outpost and its test tools into $VENV"
    local log="$VENV/pip-install.log"
    { "$VENV/bin/python" -m pip install -q --upgrade pip \
        && "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]"; } >"$log" 2>&1 \
      || { grep -v 'is ignored' "$log" | tail -30 >&2; die "pip install failed (full log: $log)"; }
    "$VENV/bin/python" -c 'import outpost, outpost_endpoint, outpost_service' \
      || die "installing Outpost into $VENV failed (see $log)"
    touch "$stamp"
  fi
}

rabbit_running() { timeout 30 rabbitmq-diagnostics -q check_running >/dev/null 2>&1; }

ensure_rabbitmq() {
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  if rabbit_running; then ensure_rabbitmq_management; return 0; fi
  if timeout 20 rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    say "RabbitMQ node is up with its app stopped: starting the app"
    timeout 120 rabbitmqctl -q start_app >/dev/null || die "rabbitmqctl start_app failed"
  else
    is_root || die "RabbitMQ is not running; start it with: sudo rabbitmq-server -detached"
    say "starting RabbitMQ (rabbitmq-server -detached)"
    rabbitmq-server -detached || die "rabbitmq-server -detached failed (logs in /var/log/rabbitmq/)"
  fi
  # await_startup fails at once until the node has registered with epmd: retry until the deadline
  local end=$(( $(date +%s) + 120 ))
  until timeout 60 rabbitmqctl -q await_startup --timeout 60 >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "RabbitMQ did not start within 120 s (logs in /var/log/rabbitmq/)"
    sleep 0.5
  done
  say "RabbitMQ is running on 127.0.0.1:5672"
  ensure_rabbitmq_management
}

# The service makes one RabbitMQ user per endpoint through the management HTTP API
# (docs/SECURITY.md); enabling the plugin needs no restart.
ensure_rabbitmq_management() {
  if ! timeout 20 rabbitmq-plugins -q list -E -m 2>/dev/null | grep -qx rabbitmq_management; then
    is_root || die "enable the RabbitMQ management plugin: sudo rabbitmq-plugins enable rabbitmq_management"
    say "enabling rabbitmq_management"
    timeout 120 rabbitmq-plugins -q enable rabbitmq_management >/dev/null \
      || die "rabbitmq-plugins enable rabbitmq_management failed"
  fi
  local end=$(( $(date +%s) + 90 ))
  until curl -sS --max-time 10 -f -o /dev/null -u guest:guest http://127.0.0.1:15672/api/overview 2>/dev/null; do
    [ "$(date +%s)" -lt "$end" ] || die "RabbitMQ management API http://127.0.0.1:15672/api not answering within 90 s"
    sleep 0.2
  done
}

ensure_postgres() {
  if timeout 10 pg_isready -q -h 127.0.0.1 2>/dev/null; then return 0; fi
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  [ -n "$version" ] || die "PostgreSQL is installed but has no cluster in /etc/postgresql"
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  local end=$(( $(date +%s) + 60 ))
  until timeout 10 pg_isready -q -h 127.0.0.1; do
    [ "$(date +%s)" -lt "$end" ] || die "PostgreSQL did not accept connections within 60 s"
    sleep 0.5
  done
}

# Slurm (installed and started by its recipe, which does nothing when it already runs), MPICH
# (hydra mpiexec as the default mpiexec) and HAProxy; root only, like apt_install.
ensure_test_infra() {
  is_root || die "the test infrastructure (Slurm, MPICH) needs root: sudo OUTPOST_NEED_TEST_INFRA=1 bash scripts/bootstrap.sh"
  command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
  # HAProxy: the scale-out tests put it in front of several API processes (tests/fixtures/haproxy.py)
  command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || apt_install haproxy
  bash "$ROOT/tests/fixtures/mpi/mpi.sh" --no-check | sed 's/^/[outpost] /' || die "MPICH recipe failed"
  bash "$ROOT/tests/fixtures/slurm/slurm-one-node.sh" --no-check | sed 's/^/[outpost] /' || die "Slurm recipe failed"
  # the dashboard's browser test (tests/ui) drives Debian's headless Chromium with Selenium
  { command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || apt_install chromium chromium-driver
}

ensure_venv
ensure_rabbitmq
if [ "${OUTPOST_NEED_POSTGRES:-0}" = 1 ]; then ensure_postgres; fi
if [ "${OUTPOST_NEED_TEST_INFRA:-0}" = 1 ]; then ensure_test_infra; fi
