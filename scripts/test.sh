#!/usr/bin/env bash
# The README's test command: installs what the tests need (Debian's PostgreSQL and Chromium, the
# package with its test extras in .venv), starts a throwaway PostgreSQL, then runs every check:
# ruff, mypy --strict, the import-linter layer contracts, and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PIP_DISABLE_PIP_VERSION_CHECK=1

# 1. System packages (idempotent; apt only when something is missing).
need=()
dpkg -s postgresql >/dev/null 2>&1 || need+=(postgresql)
dpkg -s chromium >/dev/null 2>&1 || need+=(chromium)
if ((${#need[@]})); then
  echo "== installing ${need[*]} (Debian packages)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# 2. Python environment.
python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import servingperf" # fails loudly if the install did not work

# A separate environment for the real KServe model server (third-party peer of our KServe v2
# clients): its dependencies never mix with ours.
if [ ! -x .venv-kserve/bin/python ] || ! .venv-kserve/bin/python -c "import kserve" 2>/dev/null; then
  echo "== installing kserve 0.21 into .venv-kserve (KServe v2 reference server for the tests)"
  python3 -m venv .venv-kserve
  .venv-kserve/bin/pip install -q "kserve==0.21.0" 2>&1 | grep -v "^WARNING: Location" || true
fi
export SERVINGPERF_KSERVE_PYTHON="$root/.venv-kserve/bin/python"

# 3. Static checks.
echo "== ruff"; .venv/bin/ruff check src tests benchmarks; .venv/bin/ruff format --check src tests benchmarks
echo "== mypy --strict"; .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports --no-cache

# 4. A throwaway PostgreSQL for the store tests (Debian's server binaries, run as user postgres).
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
pgdir=$(mktemp -d /tmp/servingperf-pg.XXXXXX)
chown postgres "$pgdir" 2>/dev/null || true
pgport=$((20000 + RANDOM % 20000))
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_pg() { as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$pgdir"; }
trap stop_pg EXIT
as_pg "$pgbin/initdb" -D "$pgdir/data" -A trust -U postgres >/dev/null
as_pg "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$pgport -c unix_socket_directories=$pgdir" start >/dev/null
as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres servingperf_test
export SERVINGPERF_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$pgport/servingperf_test"
echo "== PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pgport"

# 5. Tests (warnings are errors; see pyproject). Artifacts (screenshots) go to test-artifacts/.
export SERVINGPERF_CHROMIUM="${SERVINGPERF_CHROMIUM:-$(command -v chromium || true)}"
mkdir -p "$root/test-artifacts"
echo "== pytest"
.venv/bin/pytest -q -p no:cacheprovider "$@"
