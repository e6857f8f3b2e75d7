#!/usr/bin/env bash
# Make (or check) the virtual environment of the real caikit runtime, for the opt-in caikit tests
# (tests/integration/test_caikit_real.py): PyPI's caikit 0.28 and caikit-nlp 0.5.15.
#
#   bash scripts/install_caikit.sh [VENV]   # default: $SERVINGPERF_CAIKIT_VENV, else .venv-caikit
#   export SERVINGPERF_CAIKIT_PYTHON=VENV/bin/python   # then the caikit tests run
#
# Not part of the test command: caikit-nlp pins torch < 2.9, and the torch 2.8 that PyPI serves
# for it is the CUDA build with its NVIDIA libraries: about 7.2 GB installed and 5 minutes here,
# beside the 3.5 GB of the vLLM engine the test command does install.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-${SERVINGPERF_CAIKIT_VENV:-$(pwd)/.venv-caikit}}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import caikit, caikit_nlp" 2>/dev/null; then
  echo "$venv/bin/python"
  exit 0
fi
echo "== installing caikit 0.28 and caikit-nlp 0.5.15 into $venv (about 7 GB, a few minutes)" >&2
started=$(date +%s)
python3 -m venv "$venv"
log="$venv/pip-install.log"
if ! "$venv/bin/pip" install "caikit[runtime-grpc]>=0.28,<0.29" "caikit-nlp==0.5.15" >"$log" 2>&1; then
  echo "pip install caikit-nlp failed; the end of $log:" >&2
  grep -v "^WARNING: Location" "$log" | tail -n 25 >&2
  exit 1
fi
"$venv/bin/python" -c "import caikit, caikit_nlp" || { echo "caikit is not usable in $venv" >&2; exit 1; }
echo "== caikit installed in $(($(date +%s) - started)) s ($(du -sh "$venv" | cut -f1))" >&2
echo "$venv/bin/python"
