#!/usr/bin/env bash
# Compile and link the CUDA extension (no GPU needed), then check that every
# moegs op has a CUDA kernel registered. Runs in its own environment with a
# CUDA build of torch matching the installed nvcc, cached outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

TORCH_CUDA_VERSION=${MOEGS_CUDA_TORCH:-2.14.1}
CACHE=${MOEGS_CI_CACHE:-$HOME/.cache/moegs}
VENV="$CACHE/venv-cuda-torch$TORCH_CUDA_VERSION"
if ! "$VENV/bin/python" -c "import torch, ninja, setuptools" 2>/dev/null; then
  echo "cuda-check: creating $VENV (torch==$TORCH_CUDA_VERSION, CUDA build)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "torch==$TORCH_CUDA_VERSION" ninja setuptools wheel numpy
fi

# nvcc on PATH may be a wrapper script; CUDA_HOME must be the toolkit root.
if [ -z "${CUDA_HOME:-}" ]; then
  nvcc_path=$(command -v nvcc)
  real=$(sed -n 's/^exec \([^ ]*nvcc\).*/\1/p' "$nvcc_path" | head -n 1)
  CUDA_HOME=$(dirname "$(dirname "${real:-$(readlink -f "$nvcc_path")}")")
fi
export CUDA_HOME
echo "cuda-check: CUDA_HOME=$CUDA_HOME ($("$CUDA_HOME/bin/nvcc" --version | tail -n 1))"

# Build out of tree so the CPU build in this checkout is left alone.
BUILD=${MOEGS_CUDA_BUILD_DIR:-"$CACHE/cuda-build"}
rm -rf "$BUILD/src"
mkdir -p "$BUILD/src"
git ls-files -z | xargs -0 -I{} cp --parents {} "$BUILD/src/"
cd "$BUILD/src"
export MOEGS_FORCE_CUDA=1
export MOEGS_PTXAS_VERBOSE=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0+PTX"}
export MAX_JOBS=${MAX_JOBS:-2}
start=$(date +%s)
set +e
"$VENV/bin/python" setup.py build_ext --inplace > "$BUILD/build.log" 2>&1
status=$?
set -e
grep -E "^moegs build configuration|^ +[a-z_]+: " "$BUILD/build.log" || true
if [ "$status" -ne 0 ]; then
  echo "cuda-check: CUDA build FAILED (log: $BUILD/build.log)"
  tail -n 60 "$BUILD/build.log"
  exit 1
fi
echo "cuda-check: built in $(( $(date +%s) - start )) s"
# Register / spill report of the rasterize kernels (ptxas -v), per architecture.
"$VENV/bin/python" "$ROOT/.ci/ptxas_report.py" "$BUILD/build.log" --filter rasterize | tee "$BUILD/ptxas_rasterize.md"

"$VENV/bin/python" - <<'PY'
import sys
import torch
sys.path.insert(0, ".")
import moegs._C  # noqa: F401  registers the ops
ops = sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("moegs::"))
missing = [op for op in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(f"moegs::{op}", "CUDA")]
print(f"cuda-check: {len(ops)} moegs ops, CUDA kernels registered for {len(ops) - len(missing)}")
for op in ops:
    print(f"  moegs::{op:<32} CPU={torch._C._dispatch_has_kernel_for_dispatch_key(f'moegs::{op}', 'CPU')} "
          f"CUDA={op not in missing}")
if not ops or missing:
    print(f"cuda-check: FAILED, no CUDA kernel for: {missing}")
    sys.exit(1)
print(f"cuda-check: all {len(ops)} ops have CUDA kernels")
PY
