// exp(x) in float that vectorises: shared by the CPU compositing kernels
// (composite_cpu.h) and the SIMD-ceiling microbenchmark (benchmarks/simd_ceiling),
// so both time the same arithmetic. Depends on nothing but the C++ library.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace moegs {

// Cody-Waite reduction to r in [-ln2/2, ln2/2], a degree-6 polynomial for e^r,
// times 2^n built from the exponent bits. Branch-free, so loops over pixels
// vectorise. Relative error below 2 ulp on [-86, 88]; x is clamped to that
// range, so the result is never denormal (exp(-86) = 4e-38), which keeps
// underflowing Gaussians off the slow denormal path: any alpha that small is
// skipped (alpha < 1/255) whatever its exact value.
inline float exp_cpu(float x) {
  x = x < -86.0f ? -86.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + magic) - magic;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r;
  p = p + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// Double precision keeps the C library's exp (the float64 path is the
// reference the tests compare against; it is not the speed path).
inline double exp_cpu(double x) { return std::exp(x); }

}  // namespace moegs
