#!/usr/bin/env bash
# Regenerate the committed gRPC/protobuf stubs from src/servingperf/protocols/proto/*.proto.
#
# Usage: scripts/gen_protos.sh
#
# The generator is pinned (grpcio-tools 1.62.3, whose protoc is protobuf 4.25, and mypy-protobuf
# 3.6.0) and runs from its own virtualenv under build/ (created on first use from PyPI), so that
# the stubs do not depend on whatever grpcio-tools the development venv has. Why this old version:
# newer generators stamp their own version into the stubs and make them refuse to import under an
# older runtime (protobuf >= gencode version, grpcio >= grpcio-tools version). Gencode from
# protobuf 4.25 imports under every runtime from protobuf 4.25 to 7.x and grpcio >= 1.62, the
# pyproject's lower bounds, and also under kserve 0.21's protobuf<7 pin.
# Set PROTOGEN_PYTHON to use another interpreter that already has both tools.
# Output: src/servingperf/protocols/_generated/, cross-file imports made package-relative
# (protoc writes `import x_pb2`, which only works with the output directory on sys.path).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
proto_dir="$root/src/servingperf/protocols/proto"
out_dir="$root/src/servingperf/protocols/_generated"
tools=("grpcio-tools==1.62.3" "mypy-protobuf==3.6.0")

if [[ -n "${PROTOGEN_PYTHON:-}" ]]; then
    python="$PROTOGEN_PYTHON"
else
    venv="$root/build/protogen-venv"
    python="$venv/bin/python"
    if ! "$python" -c 'import grpc_tools.protoc, mypy_protobuf' 2>/dev/null; then
        base="${PYTHON:-python3}"
        "$base" -m venv "$venv"
        "$venv/bin/pip" install --quiet "${tools[@]}"
    fi
fi
"$python" -c 'import grpc_tools.protoc, mypy_protobuf' 2>/dev/null || {
    echo "gen_protos: $python needs ${tools[*]}" >&2
    exit 2
}
# protoc-gen-mypy / protoc-gen-mypy_grpc are installed next to the interpreter.
export PATH="$(dirname "$python"):$PATH"

rm -rf "$out_dir"
mkdir -p "$out_dir"
(
    cd "$proto_dir"
    "$python" -m grpc_tools.protoc \
        --proto_path=. \
        --python_out="$out_dir" \
        --grpc_python_out="$out_dir" \
        --mypy_out="$out_dir" \
        --mypy_grpc_out="$out_dir" \
        ./*.proto
)

# Make imports between generated modules package-relative.
modules=$(cd "$out_dir" && ls ./*_pb2.py | sed -e 's|^\./||' -e 's|\.py$||')
for file in "$out_dir"/*.py "$out_dir"/*.pyi; do
    for module in $modules; do
        sed -i -E \
            -e "s/^import ${module}( |$)/from . import ${module}\1/" \
            -e "s/^from ${module} import /from .${module} import /" \
            "$file"
    done
done

cat > "$out_dir/__init__.py" <<'PY'
"""Generated protobuf and gRPC stubs: do not edit, run ``scripts/gen_protos.sh``.

Sources are the ``.proto`` files in ``servingperf/protocols/proto`` (each names its upstream).
"""
PY
echo "gen_protos: wrote $(ls "$out_dir" | wc -l) files to $out_dir"
