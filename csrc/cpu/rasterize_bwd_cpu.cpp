// CPU backward of single-pass multi-expert rasterization; math in
// moegs/composite.h.
//
// Deterministic by construction, whatever the thread count:
//  1. one task per tile, processed like the forward in chunks of pixels (the
//     SIMD lanes) with the tile's Gaussian run as the outer loop. A chunk replays its walk front to back (recording the exact
//     forward transmittances per lane, so nothing is recovered by division),
//     then walks back over the recorded Gaussians, summing each Gaussian's
//     lane gradients in lane order into its intersection row (intersection j
//     belongs to exactly one tile), chunks in a fixed order;
//  2. one task per Gaussian entry sums its intersection rows in increasing j;
//  3. v_backgrounds sums per-tile partials in tile order.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "moegs/checks.h"
#include "moegs/composite.h"
#include "composite_cpu.h"
#include "../ops/rasterize_prepare.h"

// One row per chunk: taller chunks amortise the per-Gaussian work over more
// lanes (the forward uses 4 rows) but end the replay later, at the last
// contributor of any lane, which costs the backward more than it saves.
#ifndef MOEGS_BWD_CHUNK_ROWS
#define MOEGS_BWD_CHUNK_ROWS 1
#endif

namespace moegs {
namespace {

constexpr int kCols = 16;                    // chunk width, as in the forward
constexpr int kRows = MOEGS_BWD_CHUNK_ROWS;  // chunk height
constexpr int kLanes = kCols * kRows;   // pixels per chunk

// Per-worker chunk state. The replay records, for every run position that
// contributed in at least one lane, [kLanes] alpha, exp(-sigma), the T in front
// and a 0/1 contribution mask; the per-expert arrays are [K][kLanes] and the
// per-feature ones [K][F][kLanes].
template <typename T>
struct BwdChunk {
  std::vector<int64_t> rec_q;
  std::vector<T> alpha, vis, trans_in, mask;
  std::vector<T> trans, v_alphas, v_bg_dot, v_render, behind;
  std::vector<int32_t> last;
  std::vector<T> lane_feature;  // [F][kLanes] per-lane dL/dfeature of one Gaussian

  void resize(int64_t n, int64_t K, int64_t F) {
    rec_q.resize(n);
    for (auto* v : {&alpha, &vis, &trans_in, &mask}) v->resize(n * kLanes);
    for (auto* v : {&trans, &v_alphas, &v_bg_dot}) v->resize(K * kLanes);
    last.resize(K * kLanes);
    v_render.resize(K * F * kLanes);
    behind.resize(K * F * kLanes);
    lane_feature.resize(F * kLanes);
  }
};

// Sum of a [kLanes] array in lane order (fixed, so results do not depend on
// the thread count).
template <typename T>
inline T lane_sum(const T* v) {
  T s = T(0);
  for (int l = 0; l < kLanes; ++l) s += v[l];
  return s;
}

// Front-to-back replay of one chunk: the exact forward transmittances in front
// of every contributor, recorded per lane (no division is used to recover
// them). Returns the number of recorded run positions.
template <typename T>
inline __attribute__((always_inline)) int64_t replay_chunk_impl(
    const TileRun<T>& run, int64_t begin, int32_t K, T alpha_max, const T* px, const T* py,
    const float* bounds, BwdChunk<T>& st) {
  // Per expert, the largest last contributor over the lanes: the expert's
  // later Gaussians are skipped without evaluation.
  int64_t expert_end[kMaxExperts];
  int64_t q_end = 0;
  for (int32_t k = 0; k < K; ++k) {
    expert_end[k] = 0;
    for (int l = 0; l < kLanes; ++l) {
      const int32_t last = st.last[k * kLanes + l];
      if (last != kNoContributor) expert_end[k] = std::max<int64_t>(expert_end[k], last - begin + 1);
    }
    q_end = std::max(q_end, expert_end[k]);
  }
  for (int64_t c = 0; c < int64_t(K) * kLanes; ++c) st.trans[c] = T(1);
  const float fx_first = bounds[0], fx_last = bounds[1], fy_first = bounds[2], fy_last = bounds[3];
  const T thr = T(kAlphaThreshold);
  int64_t n_rec = 0;
  for (int64_t q = 0; q < q_end; ++q) {
    if (fy_last < run.y_lo[q] || fy_first > run.y_hi[q] || fx_last < run.x_lo[q] ||
        fx_first > run.x_hi[q])
      continue;
    const int32_t e = run.expert[q];
    if (q >= expert_end[e]) continue;
    const int32_t j = static_cast<int32_t>(begin + q);
    const T mx = run.mx[q], my = run.my[q], a = run.ca[q], b = run.cb[q], c = run.cc[q];
    const T o = run.op[q];
    const int32_t* __restrict last = st.last.data() + e * kLanes;
    T* __restrict tr = st.trans.data() + e * kLanes;
    T* __restrict r_alpha = st.alpha.data() + n_rec * kLanes;
    T* __restrict r_vis = st.vis.data() + n_rec * kLanes;
    T* __restrict r_tin = st.trans_in.data() + n_rec * kLanes;
    T* __restrict r_mask = st.mask.data() + n_rec * kLanes;
    int32_t n_valid = 0;
#pragma omp simd reduction(+ : n_valid)
    for (int l = 0; l < kLanes; ++l) {
      // The steps of splat_sample (moegs/composite.h), per lane; lanes past
      // their expert's last contributor (or padding, last = -1) take no part.
      T sigma, vis, alpha;
      lane_sample(mx, my, a, b, c, o, alpha_max, px[l], py[l], &sigma, &vis, &alpha);
      const bool valid = j <= last[l] && !(sigma < T(0)) && !(alpha < thr);
      const T t = tr[l];
      r_alpha[l] = valid ? alpha : T(0);
      r_vis[l] = valid ? vis : T(0);
      r_tin[l] = valid ? t : T(0);
      r_mask[l] = valid ? T(1) : T(0);
      tr[l] = valid ? transmittance_behind(t, alpha) : t;
      n_valid += valid ? 1 : 0;
    }
    if (n_valid > 0) st.rec_q[n_rec++] = q;
  }
  return n_rec;
}

// Back-to-front pass of one chunk over its recorded positions: the steps of
// composite_step_vjp, splat_alpha_vjp and conic_sigma_vjp (moegs/composite.h)
// per lane, summed over the lanes into the position's intersection row.
template <typename T>
inline __attribute__((always_inline)) void backprop_chunk_impl(
    const TileRun<T>& run, const RasterizeBwdArgs<T>& a, int64_t begin, int64_t F, T alpha_max,
    const T* px, const T* py, int64_t n_rec, BwdChunk<T>& st) {
  for (int64_t r = n_rec - 1; r >= 0; --r) {
    const int64_t q = st.rec_q[r];
    const int32_t e = run.expert[q];
    const T* feat = run.feature[q];
    const T mx = run.mx[q], my = run.my[q], a_ = run.ca[q], b = run.cb[q], c = run.cc[q];
    const T o = run.op[q];
    const T* __restrict r_alpha = st.alpha.data() + r * kLanes;
    const T* __restrict r_vis = st.vis.data() + r * kLanes;
    const T* __restrict r_tin = st.trans_in.data() + r * kLanes;
    const T* __restrict r_mask = st.mask.data() + r * kLanes;
    const T* __restrict t_fin = st.trans.data() + e * kLanes;
    const T* __restrict v_al = st.v_alphas.data() + e * kLanes;
    const T* __restrict v_bd = st.v_bg_dot.data() + e * kLanes;
    T v_alpha[kLanes], ra[kLanes], w[kLanes];
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      ra[l] = T(1) / (T(1) - r_alpha[l]);
      w[l] = r_alpha[l] * r_tin[l];
      v_alpha[l] = t_fin[l] * ra[l] * (v_al[l] - v_bd[l]);
    }
    for (int64_t f = 0; f < F; ++f) {
      const T fv = feat[f];
      const T* __restrict vr = st.v_render.data() + (int64_t(e) * F + f) * kLanes;
      T* __restrict bh = st.behind.data() + (int64_t(e) * F + f) * kLanes;
      T* __restrict vf = st.lane_feature.data() + f * kLanes;
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) {
        const bool m = r_mask[l] != T(0);
        vf[l] = m ? w[l] * vr[l] : T(0);
        v_alpha[l] = m ? v_alpha[l] + (fv * r_tin[l] - bh[l] * ra[l]) * vr[l] : v_alpha[l];
        bh[l] = m ? bh[l] + fv * w[l] : bh[l];
      }
    }
    T g_mx[kLanes], g_my[kLanes], g_ca[kLanes], g_cb[kLanes], g_cc[kLanes], g_op[kLanes];
    T g_ax[kLanes], g_ay[kLanes];
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      const bool m = r_mask[l] != T(0) && o * r_vis[l] <= alpha_max;
      const T va = m ? v_alpha[l] : T(0);
      const T v_sigma = -o * r_vis[l] * va;
      const T dx = mx - px[l];
      const T dy = my - py[l];
      g_op[l] = r_vis[l] * va;
      g_ca[l] = T(0.5) * v_sigma * dx * dx;
      g_cb[l] = v_sigma * dx * dy;
      g_cc[l] = T(0.5) * v_sigma * dy * dy;
      g_mx[l] = v_sigma * (a_ * dx + b * dy);
      g_my[l] = v_sigma * (b * dx + c * dy);
      g_ax[l] = std::abs(g_mx[l]);
      g_ay[l] = std::abs(g_my[l]);
    }
    T* row = a.isect_grads + (begin + q) * a.row;
    row[kRowMean] += lane_sum(g_mx);
    row[kRowMean + 1] += lane_sum(g_my);
    row[kRowConic] += lane_sum(g_ca);
    row[kRowConic + 1] += lane_sum(g_cb);
    row[kRowConic + 2] += lane_sum(g_cc);
    row[kRowOpacity] += lane_sum(g_op);
    for (int64_t f = 0; f < F; ++f) row[kRowFeature + f] += lane_sum(st.lane_feature.data() + f * kLanes);
    if (a.absgrad) {
      row[kRowFeature + F] += lane_sum(g_ax);
      row[kRowFeature + F + 1] += lane_sum(g_ay);
    }
  }
}

MOEGS_SIMD_CLONES
int64_t replay_chunk_f32(const TileRun<float>& run, int64_t begin, int32_t K, float alpha_max,
                         const float* px, const float* py, const float* bounds,
                         BwdChunk<float>& st) {
  return replay_chunk_impl(run, begin, K, alpha_max, px, py, bounds, st);
}

MOEGS_SIMD_CLONES
void backprop_chunk_f32(const TileRun<float>& run, const RasterizeBwdArgs<float>& a, int64_t begin,
                        int64_t F, float alpha_max, const float* px, const float* py, int64_t n_rec,
                        BwdChunk<float>& st) {
  backprop_chunk_impl(run, a, begin, F, alpha_max, px, py, n_rec, st);
}

int64_t replay_chunk(const TileRun<float>& run, int64_t begin, int32_t K, float alpha_max,
                     const float* px, const float* py, const float* bounds, BwdChunk<float>& st) {
  return replay_chunk_f32(run, begin, K, alpha_max, px, py, bounds, st);
}
int64_t replay_chunk(const TileRun<double>& run, int64_t begin, int32_t K, double alpha_max,
                     const double* px, const double* py, const float* bounds,
                     BwdChunk<double>& st) {
  return replay_chunk_impl(run, begin, K, alpha_max, px, py, bounds, st);
}
void backprop_chunk(const TileRun<float>& run, const RasterizeBwdArgs<float>& a, int64_t begin,
                    int64_t F, float alpha_max, const float* px, const float* py, int64_t n_rec,
                    BwdChunk<float>& st) {
  backprop_chunk_f32(run, a, begin, F, alpha_max, px, py, n_rec, st);
}
void backprop_chunk(const TileRun<double>& run, const RasterizeBwdArgs<double>& a, int64_t begin,
                    int64_t F, double alpha_max, const double* px, const double* py, int64_t n_rec,
                    BwdChunk<double>& st) {
  backprop_chunk_impl(run, a, begin, F, alpha_max, px, py, n_rec, st);
}

template <typename T>
void backprop_tiles(const RasterizeBwdArgs<T>& a, const RasterizeDims& d,
                    const CompositeParams& p) {
  const int64_t num_tiles = d.num_images * int64_t(d.tiles_x) * d.tiles_y;
  const int32_t K = d.num_experts;
  const int64_t F = d.num_features;
  const int64_t plane = int64_t(d.height) * d.width;
  const T alpha_max = T(p.alpha_max);
  const std::vector<int64_t> order = tiles_by_cost(a.isect_offsets, num_tiles, d.num_isects);
  const int64_t n_workers = std::max<int64_t>(1, at::get_num_threads());
  std::vector<TileRun<T>> runs(n_workers);
  std::vector<BwdChunk<T>> chunks(n_workers);
  parallel_dynamic(order, [&](int64_t t) {
    const int64_t worker = std::min<int64_t>(at::get_thread_num(), n_workers - 1);
    TileRun<T>& run = runs[worker];
    BwdChunk<T>& st = chunks[worker];
    const TileTask tk = tile_task(d, a.isect_offsets, t);
    const int64_t i = tk.image, begin = tk.begin;
    run.load(a, F, tk.begin, tk.end);
    st.resize(run.n, K, F);

    ChunkPixels<T, kCols, kRows> c;
    for (int32_t y0 = tk.y0; y0 < tk.y_end; y0 += kRows) {
      for (int32_t x0 = tk.x0; x0 < tk.x_end; x0 += kCols) {
        c.set(x0, y0, tk.x_end, tk.y_end, p.pixel_offset);
        // padding lanes have no contributor
        for (int32_t k = 0; k < K; ++k)
          for (int l = 0; l < kLanes; ++l)
            st.last[k * kLanes + l] =
                c.ok[l] ? a.last_ids[(i * K + k) * plane + c.pixel(l, d.width)] : kNoContributor;
        const int64_t n_rec = replay_chunk(run, begin, K, alpha_max, c.px, c.py, c.bounds, st);
        // Per expert and lane: background gradient and the cotangents of the pixel.
        std::fill(st.v_render.begin(), st.v_render.end(), T(0));
        std::fill(st.v_alphas.begin(), st.v_alphas.end(), T(0));
        std::fill(st.v_bg_dot.begin(), st.v_bg_dot.end(), T(0));
        std::fill(st.behind.begin(), st.behind.end(), T(0));
        for (int32_t k = 0; k < K; ++k) {
          const T* bg = a.backgrounds + (i * K + k) * F;
          T* v_bg = a.tile_v_backgrounds + (t * K + k) * F;
          for (int l = 0; l < kLanes; ++l) {
            if (!c.ok[l]) continue;
            const int64_t o = (i * K + k) * plane + c.pixel(l, d.width);
            const T* vr = a.v_render + o * F;
            st.v_alphas[k * kLanes + l] = a.v_alphas[o];
            st.v_bg_dot[k * kLanes + l] =
                composite_finish_vjp(bg, F, st.trans[k * kLanes + l], vr, v_bg);
            for (int64_t f = 0; f < F; ++f) st.v_render[(k * F + f) * kLanes + l] = vr[f];
          }
        }
        backprop_chunk(run, a, begin, F, alpha_max, c.px, c.py, n_rec, st);
      }
    }
  });
}

// Sums the intersection rows of every Gaussian entry in increasing
// intersection order into the per-entry gradients.
template <typename T>
void reduce_per_entry(const int32_t* flatten_ids, const T* isect_grads, const RasterizeDims& d,
                      int64_t row, bool absgrad, T* v_means2d, T* v_conics, T* v_opacities,
                      T* v_features, T* v_means2d_abs) {
  const int64_t M = d.num_entries;
  const int64_t F = d.num_features;
  // CSR of intersections per entry, each list in increasing j.
  std::vector<int64_t> start(M + 1, 0);
  for (int64_t j = 0; j < d.num_isects; ++j) ++start[flatten_ids[j] + 1];
  for (int64_t m = 0; m < M; ++m) start[m + 1] += start[m];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  std::vector<int64_t> order(d.num_isects);
  for (int64_t j = 0; j < d.num_isects; ++j) order[fill[flatten_ids[j]]++] = j;

  at::parallel_for(0, M, 256, [&](int64_t m_begin, int64_t m_end) {
    std::vector<T> sum(row);
    for (int64_t m = m_begin; m < m_end; ++m) {
      std::fill(sum.begin(), sum.end(), T(0));
      for (int64_t c = start[m]; c < start[m + 1]; ++c) {
        const T* r = isect_grads + order[c] * row;
        for (int64_t col = 0; col < row; ++col) sum[col] += r[col];
      }
      v_means2d[2 * m] = sum[kRowMean];
      v_means2d[2 * m + 1] = sum[kRowMean + 1];
      for (int64_t c = 0; c < 3; ++c) v_conics[3 * m + c] = sum[kRowConic + c];
      v_opacities[m] = sum[kRowOpacity];
      std::copy(sum.begin() + kRowFeature, sum.begin() + kRowFeature + F, v_features + m * F);
      if (absgrad) {
        v_means2d_abs[2 * m] = sum[kRowFeature + F];
        v_means2d_abs[2 * m + 1] = sum[kRowFeature + F + 1];
      }
    }
  });
}

// v_backgrounds [I, K, F]: the per-tile partials of each image summed in tile order.
template <typename T>
void reduce_per_image(const T* tile_v_backgrounds, const RasterizeDims& d, T* v_backgrounds) {
  const int64_t tiles_per_image = int64_t(d.tiles_x) * d.tiles_y;
  const int64_t n = d.num_experts * d.num_features;
  for (int64_t i = 0; i < d.num_images; ++i) {
    T* out = v_backgrounds + i * n;
    std::fill(out, out + n, T(0));
    for (int64_t t = 0; t < tiles_per_image; ++t) {
      const T* part = tile_v_backgrounds + (i * tiles_per_image + t) * n;
      for (int64_t c = 0; c < n; ++c) out[c] += part[c];
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
rasterize_experts_bwd_cpu(const at::Tensor& means2d_in, const at::Tensor& conics_in,
                          const at::Tensor& opacities_in, const at::Tensor& features_in,
                          const at::Tensor& expert_ids_in, const at::Tensor& backgrounds_in,
                          const at::Tensor& isect_offsets_in, const at::Tensor& flatten_ids_in,
                          int64_t width, int64_t height, int64_t tile_size, int64_t num_experts,
                          double alpha_max, double min_transmittance, double pixel_offset,
                          const at::Tensor& alphas_in, const at::Tensor& last_ids_in,
                          const at::Tensor& v_render_in, const at::Tensor& v_alphas_in,
                          bool absgrad) {
  const RasterizeBwdPrepared p = prepare_rasterize_bwd(
      "rasterize_experts_bwd", means2d_in, conics_in, opacities_in, features_in, expert_ids_in,
      backgrounds_in, isect_offsets_in, flatten_ids_in, width, height, tile_size, num_experts,
      alpha_max, min_transmittance, pixel_offset, alphas_in, last_ids_in, v_render_in,
      v_alphas_in, absgrad);
  AT_DISPATCH_FLOATING_TYPES(p.in.means2d.scalar_type(), "rasterize_experts_bwd", [&] {
    const RasterizeBwdArgs<scalar_t> a = p.args<scalar_t>();
    backprop_tiles<scalar_t>(a, p.d, p.params);
    reduce_per_entry<scalar_t>(a.flatten_ids, a.isect_grads, p.d, a.row, a.absgrad,
                               p.v_means2d.data_ptr<scalar_t>(), p.v_conics.data_ptr<scalar_t>(),
                               p.v_opacities.data_ptr<scalar_t>(),
                               p.v_features.data_ptr<scalar_t>(),
                               a.absgrad ? p.v_means2d_abs.data_ptr<scalar_t>() : nullptr);
    reduce_per_image(a.tile_v_backgrounds, p.d, p.v_backgrounds.data_ptr<scalar_t>());
  });
  return p.outputs();
}

}  // namespace

TORCH_LIBRARY_IMPL(moegs, CPU, m) {
  m.impl("rasterize_experts_bwd", &rasterize_experts_bwd_cpu);
}

}  // namespace moegs
