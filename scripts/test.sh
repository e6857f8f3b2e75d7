#!/usr/bin/env bash
# The README's test command: installs what the tests need (Debian's PostgreSQL, Chromium and
# Prometheus, the package with its test extras in .venv, the reference KServe server and vLLM's
# CPU build in venvs of their own), starts a throwaway PostgreSQL, then runs every check: ruff,
# mypy --strict, the import-linter layer contracts, and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PIP_DISABLE_PIP_VERSION_CHECK=1

# 1. System packages (idempotent; apt only when something is missing).
need=()
dpkg -s postgresql >/dev/null 2>&1 || need+=(postgresql)
dpkg -s chromium >/dev/null 2>&1 || need+=(chromium)
dpkg -s prometheus >/dev/null 2>&1 || need+=(prometheus)  # the real Prometheus of the query tests
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

# A separate environment for a real serving engine, vLLM's CPU build (scripts/install_vllm.sh:
# idempotent; $SERVINGPERF_VLLM_VENV points it elsewhere), and the tiny random model it serves in
# the real-engine tests, built once into a cache folder (scripts/build_tiny_model.py).
vllm_venv="${SERVINGPERF_VLLM_VENV:-$root/.venv-vllm}"
bash scripts/install_vllm.sh "$vllm_venv"
export SERVINGPERF_VLLM_PYTHON="$vllm_venv/bin/python"
echo "== tiny model for the engine: $("$SERVINGPERF_VLLM_PYTHON" scripts/build_tiny_model.py 2>/dev/null)"

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
# Three workers on two cores: most integration tests wait on loopback servers and timed phases,
# not on the CPU (four made the timing-bound tests flaky). --dist loadfile keeps each file's tests
# on one worker (loadgroup would not: pytest-xdist#1386, its grouping is lost on this pytest).
# The real vLLM engine's tests come after, on their own: an engine under load takes both cores,
# and beside it the other tests' timing bounds were crossed. With arguments, pytest runs just
# those. SERVINGPERF_TEST_WORKERS=0 runs everything in this process.
workers="${SERVINGPERF_TEST_WORKERS:-3}"
engine_tests=(tests/integration/test_vllm_real.py tests/integration/test_vllm_engine_metrics.py
  tests/integration/test_vllm_platform.py)
if (($#)); then
  .venv/bin/pytest -q -p no:cacheprovider -n "$workers" --dist loadfile "$@"
  exit 0  # reached only when pytest passed (set -e); the EXIT trap stops PostgreSQL either way
fi
rc=0
.venv/bin/pytest -q -p no:cacheprovider -n "$workers" --dist loadfile --durations=15 \
  $(printf -- '--ignore=%s ' "${engine_tests[@]}") || rc=$?
echo "== pytest: the real vLLM engine's tests"
.venv/bin/pytest -q -p no:cacheprovider --durations=5 "${engine_tests[@]}" || rc=$?
exit "$rc"
