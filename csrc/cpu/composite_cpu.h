// CPU-only helpers of the compositing kernels (the vectorising exponential is
// exp_cpu.h): the per-tile Gaussian table the SIMD loops read, tile scheduling, and the
// SIMD-dispatch attribute. The compositing math itself is moegs/composite.h.
//
// Bit-exactness: the build uses -ffp-contract=off, so a multiply-add is never
// fused and exp_cpu gives the same bits whether inlined into scalar code or
// into the AVX2 / AVX-512 clones of a vector loop. Forward and backward both
// evaluate alpha with it, so the backward's replay agrees with the forward.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "exp_cpu.h"
#include "moegs/composite.h"

// Function multiversioning: x86-64 builds run the AVX-512 / AVX2 clone the CPU
// supports (chosen at load time), any other x86-64 CPU the baseline clone;
// other architectures compile the one portable version.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(MOEGS_NO_CLONES)
#define MOEGS_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MOEGS_SIMD_CLONES
#endif

namespace moegs {

// splat_sample of moegs/composite.h with exp_cpu.
template <typename T>
inline SplatSample<T> splat_sample_cpu(const Splat<T>& s, vec2<T> pixel, T alpha_max) {
  SplatSample<T> r;
  r.d = s.mean - pixel;
  const T sigma = conic_sigma(s.conic, r.d);
  r.vis = exp_cpu(-sigma);
  r.alpha = clamp_max(s.opacity * r.vis, alpha_max);
  r.valid = !(sigma < T(0)) && !(r.alpha < T(kAlphaThreshold));
  return r;
}

// splat_sample for one SIMD lane, on the run's structure-of-arrays fields:
// sigma, exp(-sigma) and alpha of a Gaussian (mean (mx, my), conic (a, b, c),
// opacity o) at the sample position (x, y). Inlined into the lane loops of the
// forward and the backward's replay, which therefore evaluate the same bits.
template <typename T>
inline __attribute__((always_inline)) void lane_sample(T mx, T my, T a, T b, T c, T o, T alpha_max,
                                                       T x, T y, T* sigma, T* vis, T* alpha) {
  const T dx = mx - x;
  const T dy = my - y;
  *sigma = T(0.5) * (a * dx * dx + c * dy * dy) + b * dx * dy;
  *vis = exp_cpu(-*sigma);
  *alpha = clamp_max(o * *vis, alpha_max);
}

// Box around the pixels where a splat can reach alpha >= 1/255:
// o exp(-sigma) >= 1/255 needs sigma <= ln(255 o), an ellipse whose half-widths
// are sqrt(2 ln(255 o) Sigma_xx) and sqrt(2 ln(255 o) Sigma_yy), Sigma the
// inverse of the conic. Widened by 1% + 0.01 px so rounding never makes a pixel
// outside the box valid; splats that can never be valid get an empty box, and
// ones with a conic that is not positive definite an unbounded one.
struct SplatBox {
  float x_lo, x_hi, y_lo, y_hi;
};

template <typename T>
inline SplatBox splat_box(const Splat<T>& s) {
  const double inf = std::numeric_limits<double>::infinity();
  const double o = double(s.opacity), a = double(s.conic.x), b = double(s.conic.y),
               c = double(s.conic.z);
  if (!(o * 255.0 >= 1.0 * (1.0 - 1e-6))) return {1.0f, -1.0f, 1.0f, -1.0f};
  const double det = a * c - b * b;
  if (!(det > 0.0) || !(a > 0.0) || !std::isfinite(det)) {
    return {-float(inf), float(inf), -float(inf), float(inf)};
  }
  const double level = 2.0 * std::max(std::log(255.0 * o), 0.0) + 1e-6;
  const double rx = std::sqrt(level * c / det) * 1.01 + 0.01;
  const double ry = std::sqrt(level * a / det) * 1.01 + 0.01;
  const double mx = double(s.mean.x), my = double(s.mean.y);
  return {float(mx - rx), float(mx + rx), float(my - ry), float(my + ry)};
}

// A tile's run of Gaussians, structure of arrays, as the chunk loops of the
// forward and backward read it: pixel-space mean, conic, opacity, alpha box,
// expert and feature row of run position q (intersection begin + q), and which
// experts occur in the run. Args: any argument struct with the inputs
// means2d, conics, opacities, expert_ids, features and flatten_ids.
template <typename T>
struct TileRun {
  std::vector<T> mx, my, ca, cb, cc, op;
  std::vector<float> x_lo, x_hi, y_lo, y_hi;
  std::vector<int32_t> expert;
  std::vector<const T*> feature;
  int64_t n = 0;
  bool present[kMaxExperts];

  template <typename Args>
  void load(const Args& a, int64_t F, int64_t begin, int64_t end) {
    n = end - begin;
    for (auto* v : {&mx, &my, &ca, &cb, &cc, &op}) v->resize(n);
    for (auto* v : {&x_lo, &x_hi, &y_lo, &y_hi}) v->resize(n);
    expert.resize(n);
    feature.resize(n);
    std::fill(present, present + kMaxExperts, false);
    for (int64_t q = 0; q < n; ++q) {
      const int64_t g = a.flatten_ids[begin + q];
      const Splat<T> s = load_splat(a.means2d, a.conics, a.opacities, a.expert_ids, g);
      mx[q] = s.mean.x; my[q] = s.mean.y;
      ca[q] = s.conic.x; cb[q] = s.conic.y; cc[q] = s.conic.z;
      op[q] = s.opacity;
      const SplatBox box = splat_box(s);
      x_lo[q] = box.x_lo; x_hi[q] = box.x_hi; y_lo[q] = box.y_lo; y_hi[q] = box.y_hi;
      expert[q] = s.expert;
      feature[q] = a.features + g * F;
      present[s.expert] = true;
    }
  }
};

// The pixels of one chunk of kRows x kCols SIMD lanes with its corner at
// (x0, y0), clipped to [x0, x_end) x [y0, y_end): lane l is pixel
// (y0 + l / kCols, x0 + l % kCols), sampled at its centre (+ offset).
template <typename T, int kCols, int kRows>
struct ChunkPixels {
  static constexpr int kLanes = kCols * kRows;
  T px[kLanes], py[kLanes];  // lane sample positions, pixels
  int32_t ok[kLanes];        // 1 for lanes inside the clip, 0 for padding
  float bounds[4];           // x of the first and last valid column, y of the first and last row
  int32_t n_valid = 0;
  int32_t x0 = 0, y0 = 0;

  void set(int32_t x0_, int32_t y0_, int32_t x_end, int32_t y_end, double offset) {
    x0 = x0_;
    y0 = y0_;
    const int32_t n_cols = std::min<int32_t>(kCols, x_end - x0);
    const int32_t n_rows = std::min<int32_t>(kRows, y_end - y0);
    for (int l = 0; l < kLanes; ++l) {
      px[l] = T(x0 + l % kCols) + T(offset);
      py[l] = T(y0 + l / kCols) + T(offset);
      ok[l] = (l % kCols) < n_cols && (l / kCols) < n_rows;
    }
    bounds[0] = float(T(x0) + T(offset));
    bounds[1] = float(T(x0 + n_cols - 1) + T(offset));
    bounds[2] = float(T(y0) + T(offset));
    bounds[3] = float(T(y0 + n_rows - 1) + T(offset));
    n_valid = n_cols * n_rows;
  }

  // Row-major index y * width + x of lane l's pixel.
  int64_t pixel(int l, int32_t width) const {
    return int64_t(y0 + l / kCols) * width + x0 + l % kCols;
  }
};

// Tile t of a batch of images: its image, its run of intersections
// [begin, end) and its pixel rectangle [x0, x_end) x [y0, y_end).
struct TileTask {
  int64_t image, begin, end;
  int32_t x0, y0, x_end, y_end;
};

inline TileTask tile_task(const RasterizeDims& d, const int32_t* isect_offsets, int64_t t) {
  const int64_t tiles_per_image = int64_t(d.tiles_x) * d.tiles_y;
  const int32_t ty = static_cast<int32_t>((t % tiles_per_image) / d.tiles_x);
  const int32_t tx = static_cast<int32_t>(t % d.tiles_x);
  TileTask k;
  k.image = t / tiles_per_image;
  tile_range(isect_offsets, d.num_images * tiles_per_image, d.num_isects, t, &k.begin, &k.end);
  k.x0 = tx * d.tile_size;
  k.y0 = ty * d.tile_size;
  k.x_end = std::min(d.width, (tx + 1) * d.tile_size);
  k.y_end = std::min(d.height, (ty + 1) * d.tile_size);
  return k;
}

// Runs body(t) for every t in [0, n) on torch's intra-op threads
// (torch.get_num_threads()), handing out items one at a time from a shared
// counter in the order given, so threads stay busy however uneven the items'
// costs. Items write disjoint outputs, so the result does not depend on which
// thread ran what.
template <typename Body>
inline void parallel_dynamic(const std::vector<int64_t>& order, const Body& body) {
  const int64_t n = static_cast<int64_t>(order.size());
  if (n == 0) return;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), n);
  at::parallel_for(0, workers, 1, [&](int64_t w_begin, int64_t w_end) {
    for (int64_t w = w_begin; w < w_end; ++w) {
      for (int64_t k = next.fetch_add(1); k < n; k = next.fetch_add(1)) body(order[k]);
    }
  });
}

// Tiles in decreasing order of run length (ties by index): the longest first,
// so the last tiles handed out are short ones.
inline std::vector<int64_t> tiles_by_cost(const int32_t* isect_offsets, int64_t num_tiles,
                                          int64_t num_isects) {
  std::vector<int64_t> order(num_tiles);
  std::iota(order.begin(), order.end(), int64_t(0));
  std::vector<int64_t> len(num_tiles);
  for (int64_t t = 0; t < num_tiles; ++t) {
    int64_t b, e;
    tile_range(isect_offsets, num_tiles, num_isects, t, &b, &e);
    len[t] = e - b;
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t x, int64_t y) { return len[x] > len[y]; });
  return order;
}

}  // namespace moegs
