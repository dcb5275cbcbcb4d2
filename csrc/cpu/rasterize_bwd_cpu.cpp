// CPU backward of single-pass multi-expert rasterization; math in
// moegs/composite.h.
//
// Deterministic by construction, whatever the thread count:
//  1. one task per tile; each pixel replays its walk front to back (recording
//     the exact forward transmittances, so nothing is recovered by division),
//     then walks back from its experts' last contributors, adding its
//     gradients to per-intersection rows (intersection j belongs to exactly
//     one tile) in a fixed pixel order;
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

namespace moegs {
namespace {

// Per-task scratch, sized by the longest tile run the task meets.
template <typename T>
struct Scratch {
  std::vector<Splat<T>> splats;
  std::vector<SplatBox> boxes;          // alpha >= 1/255 boxes (splat_box)
  std::vector<SplatSample<T>> samples;  // per run position, valid = contributed
  std::vector<T> trans_in;              // T in front of each contributor
  std::vector<T> behind;                // [K, F]
};

template <typename T>
void backprop_pixel(const RasterizeBwdArgs<T>& a, const RasterizeDims& d, const CompositeParams& p,
                    Scratch<T>& s, int64_t begin, int64_t tile, int64_t i, int32_t x, int32_t y) {
  const int32_t K = d.num_experts;
  const int64_t F = d.num_features;
  const int64_t plane = int64_t(d.height) * d.width;
  const int64_t pix = int64_t(y) * d.width + x;
  const T alpha_max = T(p.alpha_max);
  const vec2<T> pixel = {T(x) + T(p.pixel_offset), T(y) + T(p.pixel_offset)};

  int64_t last[kMaxExperts];
  int64_t q_end = 0;  // one past the last run position any expert used
  for (int32_t k = 0; k < K; ++k) {
    last[k] = a.last_ids[(i * K + k) * plane + pix];
    if (last[k] != kNoContributor) q_end = std::max(q_end, last[k] - begin + 1);
  }

  // Replay front to back: which Gaussians contributed, and the exact T in
  // front of each. All of an expert's contributors precede its last id.
  T trans[kMaxExperts];
  for (int32_t k = 0; k < K; ++k) trans[k] = T(1);
  for (int64_t q = 0; q < q_end; ++q) {
    const Splat<T>& g = s.splats[q];
    SplatSample<T>& smp = s.samples[q];
    if (begin + q > last[g.expert]) {
      smp.valid = false;
      continue;
    }
    const SplatBox& box = s.boxes[q];
    if (float(pixel.x) < box.x_lo || float(pixel.x) > box.x_hi || float(pixel.y) < box.y_lo ||
        float(pixel.y) > box.y_hi) {
      smp.valid = false;  // alpha < 1/255 everywhere in the box's complement
      continue;
    }
    smp = splat_sample_cpu(g, pixel, alpha_max);
    if (!smp.valid) continue;
    s.trans_in[q] = trans[g.expert];
    trans[g.expert] = transmittance_behind(trans[g.expert], smp.alpha);
  }

  // Per expert: background gradient, and the cotangent terms of its pixel.
  const T* v_render[kMaxExperts];
  T v_alphas[kMaxExperts];
  T v_bg_dot[kMaxExperts];
  for (int32_t k = 0; k < K; ++k) {
    const int64_t o = (i * K + k) * plane + pix;
    v_render[k] = a.v_render + o * F;
    v_alphas[k] = a.v_alphas[o];
    const T* bg = a.backgrounds + (i * K + k) * F;
    T* v_bg = a.tile_v_backgrounds + (tile * K + k) * F;
    v_bg_dot[k] = composite_finish_vjp(bg, F, trans[k], v_render[k], v_bg);
  }
  std::fill(s.behind.begin(), s.behind.end(), T(0));

  // Back to front over the contributors.
  for (int64_t q = q_end - 1; q >= 0; --q) {
    const SplatSample<T>& smp = s.samples[q];
    if (!smp.valid) continue;
    const Splat<T>& g = s.splats[q];
    const int32_t e = g.expert;
    const int64_t j = begin + q;
    T* row = a.isect_grads + j * a.row;
    const T* feature = a.features + int64_t(a.flatten_ids[j]) * F;
    const T v_alpha = composite_step_vjp(feature, F, smp.alpha, s.trans_in[q], trans[e],
                                         v_render[e], v_alphas[e], v_bg_dot[e],
                                         s.behind.data() + e * F, row + kRowFeature);
    T v_sigma, v_opacity;
    splat_alpha_vjp(g.opacity, smp.vis, alpha_max, v_alpha, &v_sigma, &v_opacity);
    vec3<T> v_conic = {T(0), T(0), T(0)};
    vec2<T> v_mean = {T(0), T(0)};
    conic_sigma_vjp(g.conic, smp.d, v_sigma, &v_conic, &v_mean);
    row[kRowMean] += v_mean.x;
    row[kRowMean + 1] += v_mean.y;
    row[kRowConic] += v_conic.x;
    row[kRowConic + 1] += v_conic.y;
    row[kRowConic + 2] += v_conic.z;
    row[kRowOpacity] += v_opacity;
    if (a.absgrad) {
      row[kRowFeature + F] += std::abs(v_mean.x);
      row[kRowFeature + F + 1] += std::abs(v_mean.y);
    }
  }
}

template <typename T>
void backprop_tiles(const RasterizeBwdArgs<T>& a, const RasterizeDims& d,
                    const CompositeParams& p) {
  const int64_t tiles_per_image = int64_t(d.tiles_x) * d.tiles_y;
  const int64_t num_tiles = d.num_images * tiles_per_image;
  const std::vector<int64_t> order = tiles_by_cost(a.isect_offsets, num_tiles, d.num_isects);
  const int64_t n_workers = std::max<int64_t>(1, at::get_num_threads());
  std::vector<Scratch<T>> scratch(n_workers);
  for (auto& s : scratch) s.behind.resize(d.num_experts * d.num_features);
  parallel_dynamic(order, [&](int64_t t) {
    Scratch<T>& s = scratch[std::min<int64_t>(at::get_thread_num(), n_workers - 1)];
    const int64_t i = t / tiles_per_image;
    const int32_t ty = static_cast<int32_t>((t % tiles_per_image) / d.tiles_x);
    const int32_t tx = static_cast<int32_t>(t % d.tiles_x);
    int64_t begin, end;
    tile_range(a.isect_offsets, num_tiles, d.num_isects, t, &begin, &end);
    s.splats.clear();
    s.boxes.clear();
    for (int64_t j = begin; j < end; ++j) {
      s.splats.push_back(load_splat(a.means2d, a.conics, a.opacities, a.expert_ids,
                                    int64_t(a.flatten_ids[j])));
      s.boxes.push_back(splat_box(s.splats.back()));
    }
    s.samples.resize(s.splats.size());
    s.trans_in.resize(s.splats.size());

    const int32_t y_end = std::min(d.height, (ty + 1) * d.tile_size);
    const int32_t x_end = std::min(d.width, (tx + 1) * d.tile_size);
    for (int32_t y = ty * d.tile_size; y < y_end; ++y)
      for (int32_t x = tx * d.tile_size; x < x_end; ++x)
        backprop_pixel(a, d, p, s, begin, t, i, x, y);
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
