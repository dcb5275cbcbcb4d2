// CPU forward of single-pass multi-expert rasterization; math in
// moegs/composite.h, CPU helpers in composite_cpu.h.
//
// Work is split into tiles handed out longest first (parallel_dynamic). A tile
// is processed in chunks of kRows x kCols pixels: the chunk's pixels are
// the SIMD lanes and the tile's Gaussian run is the outer loop, so a Gaussian
// is loaded once per chunk and evaluated for all lanes at once. A Gaussian whose
// alpha >= 1/255 box misses the chunk is skipped without evaluation, an expert
// whose lanes are all saturated skips its Gaussians, and the chunk stops once
// every expert is saturated in every lane. Each pixel sees exactly the steps of
// a per-pixel front-to-back walk, in the same order, so the results equal it.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "moegs/checks.h"
#include "moegs/composite.h"
#include "composite_cpu.h"
#include "../ops/rasterize_prepare.h"

#ifndef MOEGS_FWD_CHUNK_ROWS
#define MOEGS_FWD_CHUNK_ROWS 4
#endif

namespace moegs {
namespace {

constexpr int kCols = 16;              // chunk width: one AVX-512 register of floats
constexpr int kRows = MOEGS_FWD_CHUNK_ROWS;  // chunk height
constexpr int kLanes = kCols * kRows;   // pixels per chunk

// Per-chunk state: [K][kLanes] transmittance, last contributor, still-active
// flag, and [K][F][kLanes] accumulated features.
template <typename T>
struct ChunkState {
  std::vector<T> trans, acc;
  std::vector<int32_t> last, active;
  void resize(int64_t K, int64_t F) {
    trans.resize(K * kLanes);
    acc.resize(K * F * kLanes);
    last.resize(K * kLanes);
    active.resize(K * kLanes);
  }
};

// The Gaussian loop of one chunk. px, py: lane pixel centres; lanes with
// lane_ok = 0 are padding (inactive from the start); n_lanes counts the others;
// bounds: the centres of the first and last valid column and row.
template <typename T>
inline __attribute__((always_inline)) void blend_chunk_impl(
    const TileRun<T>& run, int64_t begin, int32_t K, int64_t F, T alpha_max, T min_t,
    const T* px, const T* py, const int32_t* lane_ok, int32_t n_lanes, const float* bounds,
    ChunkState<T>& st) {
  int32_t n_active[kMaxExperts];
  int32_t experts_left = 0;
  for (int32_t k = 0; k < K; ++k) {
    const bool on = run.present[k];
    n_active[k] = on ? n_lanes : 0;
    experts_left += on && n_lanes > 0 ? 1 : 0;
    for (int l = 0; l < kLanes; ++l) {
      st.trans[k * kLanes + l] = T(1);
      st.last[k * kLanes + l] = kNoContributor;
      st.active[k * kLanes + l] = (on && lane_ok[l]) ? 1 : 0;
    }
  }
  std::fill(st.acc.begin(), st.acc.end(), T(0));
  if (experts_left == 0) return;

  // bounds: centres of the chunk's first and last valid column and row
  const float fx_first = bounds[0], fx_last = bounds[1], fy_first = bounds[2], fy_last = bounds[3];
  const T thr = T(kAlphaThreshold);
  for (int64_t q = 0; q < run.n; ++q) {
    if (fy_last < run.y_lo[q] || fy_first > run.y_hi[q] || fx_last < run.x_lo[q] ||
        fx_first > run.x_hi[q])
      continue;
    const int32_t e = run.expert[q];
    if (n_active[e] == 0) continue;
    const T mx = run.mx[q], my = run.my[q], a = run.ca[q], b = run.cb[q], c = run.cc[q];
    const T o = run.op[q];
    const int32_t j = static_cast<int32_t>(begin + q);
    T* __restrict tr = st.trans.data() + e * kLanes;
    int32_t* __restrict act = st.active.data() + e * kLanes;
    int32_t* __restrict last = st.last.data() + e * kLanes;
    T w[kLanes];
    int32_t contrib[kLanes];
    int32_t n_contrib = 0, n_saturated = 0;
#pragma omp simd reduction(+ : n_contrib, n_saturated)
    for (int l = 0; l < kLanes; ++l) {
      // The steps of splat_sample / composite_step (moegs/composite.h), per lane.
      T sigma, vis, alpha;
      lane_sample(mx, my, a, b, c, o, alpha_max, px[l], py[l], &sigma, &vis, &alpha);
      const bool valid = act[l] != 0 && !(sigma < T(0)) && !(alpha < thr);
      const T t = tr[l];
      const T next = transmittance_behind(t, alpha);
      const bool sat = valid && next <= min_t;
      const bool add = valid && !sat;
      w[l] = add ? alpha * t : T(0);
      tr[l] = add ? next : t;
      act[l] = sat ? 0 : act[l];
      last[l] = add ? j : last[l];
      contrib[l] = add ? 1 : 0;
      n_contrib += add ? 1 : 0;
      n_saturated += sat ? 1 : 0;
    }
    if (n_contrib > 0) {
      const T* feat = run.feature[q];
      T* __restrict acc = st.acc.data() + int64_t(e) * F * kLanes;
      for (int64_t f = 0; f < F; ++f) {
        const T v = feat[f];
        T* __restrict row = acc + f * kLanes;
#pragma omp simd
        for (int l = 0; l < kLanes; ++l) row[l] = contrib[l] ? row[l] + v * w[l] : row[l];
      }
    }
    if (n_saturated > 0) {
      n_active[e] -= n_saturated;
      if (n_active[e] == 0 && --experts_left == 0) break;
    }
  }
}

MOEGS_SIMD_CLONES
void blend_chunk_f32(const TileRun<float>& run, int64_t begin, int32_t K, int64_t F,
                     float alpha_max, float min_t, const float* px, const float* py,
                     const int32_t* lane_ok, int32_t n_lanes, const float* bounds,
                     ChunkState<float>& st) {
  blend_chunk_impl(run, begin, K, F, alpha_max, min_t, px, py, lane_ok, n_lanes, bounds, st);
}

void blend_chunk(const TileRun<float>& run, int64_t begin, int32_t K, int64_t F, float alpha_max,
                 float min_t, const float* px, const float* py, const int32_t* lane_ok,
                 int32_t n_lanes, const float* bounds, ChunkState<float>& st) {
  blend_chunk_f32(run, begin, K, F, alpha_max, min_t, px, py, lane_ok, n_lanes, bounds, st);
}

void blend_chunk(const TileRun<double>& run, int64_t begin, int32_t K, int64_t F,
                 double alpha_max, double min_t, const double* px, const double* py,
                 const int32_t* lane_ok, int32_t n_lanes, const float* bounds,
                 ChunkState<double>& st) {
  blend_chunk_impl(run, begin, K, F, alpha_max, min_t, px, py, lane_ok, n_lanes, bounds, st);
}

template <typename T>
void rasterize_fwd_kernel(const RasterizeFwdArgs<T>& a, const RasterizeDims& d,
                          const CompositeParams& p) {
  const int64_t num_tiles = d.num_images * int64_t(d.tiles_x) * d.tiles_y;
  const int32_t K = d.num_experts;
  const int64_t F = d.num_features;
  const int64_t plane = int64_t(d.height) * d.width;
  const T alpha_max = T(p.alpha_max);
  const T min_t = T(p.min_transmittance);
  const std::vector<int64_t> order = tiles_by_cost(a.isect_offsets, num_tiles, d.num_isects);

  // One run and chunk state per worker thread, reused across its tiles.
  const int64_t n_workers = std::max<int64_t>(1, at::get_num_threads());
  std::vector<TileRun<T>> runs(n_workers);
  std::vector<ChunkState<T>> states(n_workers);
  for (auto& s : states) s.resize(K, F);

  parallel_dynamic(order, [&](int64_t t) {
    const int64_t worker = std::min<int64_t>(at::get_thread_num(), n_workers - 1);
    TileRun<T>& run = runs[worker];
    ChunkState<T>& st = states[worker];
    const TileTask tk = tile_task(d, a.isect_offsets, t);
    const int64_t i = tk.image, begin = tk.begin;
    run.load(a, F, tk.begin, tk.end);

    ChunkPixels<T, kCols, kRows> c;
    for (int32_t y0 = tk.y0; y0 < tk.y_end; y0 += kRows) {
      for (int32_t x0 = tk.x0; x0 < tk.x_end; x0 += kCols) {
        c.set(x0, y0, tk.x_end, tk.y_end, p.pixel_offset);
        blend_chunk(run, begin, K, F, alpha_max, min_t, c.px, c.py, c.ok, c.n_valid, c.bounds, st);
        for (int32_t k = 0; k < K; ++k) {
          const T* bg = a.backgrounds + (i * K + k) * F;
          for (int l = 0; l < kLanes; ++l) {
            if (!c.ok[l]) continue;
            const int64_t o = (i * K + k) * plane + c.pixel(l, d.width);
            const T trans = st.trans[k * kLanes + l];
            T* out = a.render + o * F;
            for (int64_t f = 0; f < F; ++f) out[f] = st.acc[(k * F + f) * kLanes + l];
            composite_finish(out, bg, F, trans, out);
            a.alphas[o] = T(1) - trans;
            a.last_ids[o] = st.last[k * kLanes + l];
          }
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize_experts_fwd_cpu(
    const at::Tensor& means2d_in, const at::Tensor& conics_in, const at::Tensor& opacities_in,
    const at::Tensor& features_in, const at::Tensor& expert_ids_in,
    const at::Tensor& backgrounds_in, const at::Tensor& isect_offsets_in,
    const at::Tensor& flatten_ids_in, int64_t width, int64_t height, int64_t tile_size,
    int64_t num_experts, double alpha_max, double min_transmittance, double pixel_offset,
    bool /*absgrad: read by the backward only*/) {
  const RasterizeFwdPrepared p = prepare_rasterize_fwd(
      "rasterize_experts_fwd", means2d_in, conics_in, opacities_in, features_in, expert_ids_in,
      backgrounds_in, isect_offsets_in, flatten_ids_in, width, height, tile_size, num_experts,
      alpha_max, min_transmittance, pixel_offset);
  AT_DISPATCH_FLOATING_TYPES(p.in.means2d.scalar_type(), "rasterize_experts_fwd", [&] {
    rasterize_fwd_kernel<scalar_t>(p.args<scalar_t>(), p.d, p.params);
  });
  return p.outputs();
}

}  // namespace

TORCH_LIBRARY_IMPL(moegs, CPU, m) {
  m.impl("rasterize_experts_fwd", &rasterize_experts_fwd_cpu);
}

}  // namespace moegs
