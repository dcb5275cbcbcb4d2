#!/usr/bin/env bash
# Builds simd_ceiling.cpp three ways and prints pairs/s per variant and thread count:
#   scalar   : -O3 -fno-tree-vectorize, baseline x86-64 (or the host's default arch)
#   autovec  : -O3 -march=native with OpenMP SIMD hints
#   avx512_intrinsics : the hand-written AVX-512 loop (only when the CPU has AVX-512F)
# Usage: bash benchmarks/simd_ceiling/run.sh [seconds per run, default 1]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${TMPDIR:-/tmp}/moegs-simd-ceiling"
mkdir -p "$out"
secs="${1:-1}"
g++ -O3 -std=c++17 -pthread -DSCALAR -fno-tree-vectorize "$here/simd_ceiling.cpp" -o "$out/scalar"
g++ -O3 -std=c++17 -pthread -march=native -fopenmp-simd "$here/simd_ceiling.cpp" -o "$out/native"
for t in 1 2; do
  "$out/scalar" "$t" "$secs"
  "$out/native" "$t" "$secs"
done
