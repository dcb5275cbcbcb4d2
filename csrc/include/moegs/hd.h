// Host/device qualifiers shared by every math header.
//
// Each formula in csrc/include/moegs/ is written once and compiled twice: by
// the host compiler for the CPU kernels and by nvcc for the CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MOEGS_HD __host__ __device__ __forceinline__
#else
#define MOEGS_HD inline
#endif

namespace moegs {

// Opacity below which a Gaussian is skipped while compositing (gsplat and 3DGS).
constexpr float kAlphaThreshold = 1.0f / 255.0f;

template <typename T>
MOEGS_HD T clamp_max(T x, T hi) { return x < hi ? x : hi; }

template <typename T>
MOEGS_HD T clamp_min(T x, T lo) { return x > lo ? x : lo; }

}  // namespace moegs
