// CPU forward of single-pass multi-expert rasterization: one task per tile,
// one front-to-back walk per pixel; math in moegs/composite.h.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "moegs/checks.h"
#include "moegs/composite.h"
#include "../ops/rasterize_prepare.h"

namespace moegs {
namespace {

// Composites pixel (x, y) of image i from the tile's run `splats` (flatten
// indices begin, begin + 1, ...). Experts not in the run start as done, which
// changes nothing but lets the walk end early.
template <typename T>
void render_pixel(const RasterizeFwdArgs<T>& a, const RasterizeDims& d, const CompositeParams& p,
                  const std::vector<Splat<T>>& splats, int64_t begin, const bool* present,
                  int64_t i, int32_t x, int32_t y) {
  const int32_t K = d.num_experts;
  const int64_t F = d.num_features;
  const int64_t plane = int64_t(d.height) * d.width;
  const int64_t pix = int64_t(y) * d.width + x;
  const T alpha_max = T(p.alpha_max);
  const T min_t = T(p.min_transmittance);
  const vec2<T> pixel = {T(x) + T(p.pixel_offset), T(y) + T(p.pixel_offset)};

  T trans[kMaxExperts];
  bool done[kMaxExperts];
  int32_t last[kMaxExperts];
  T* acc[kMaxExperts];
  int32_t n_done = 0;
  for (int32_t k = 0; k < K; ++k) {
    trans[k] = T(1);
    done[k] = !present[k];
    n_done += done[k] ? 1 : 0;
    last[k] = kNoContributor;
    acc[k] = a.render + ((i * K + k) * plane + pix) * F;
    std::fill(acc[k], acc[k] + F, T(0));
  }

  const int64_t n = static_cast<int64_t>(splats.size());
  for (int64_t q = 0; q < n && n_done < K; ++q) {
    const Splat<T>& s = splats[q];
    const int32_t e = s.expert;
    if (done[e]) continue;
    const SplatSample<T> smp = splat_sample(s, pixel, alpha_max);
    if (!smp.valid) continue;
    const T* feature = a.features + int64_t(a.flatten_ids[begin + q]) * F;
    if (composite_step(feature, F, smp.alpha, min_t, &trans[e], acc[e])) {
      last[e] = static_cast<int32_t>(begin + q);
    } else {
      done[e] = true;
      ++n_done;
    }
  }

  for (int32_t k = 0; k < K; ++k) {
    const int64_t o = (i * K + k) * plane + pix;
    composite_finish(acc[k], a.backgrounds + (i * K + k) * F, F, trans[k], acc[k]);
    a.alphas[o] = T(1) - trans[k];
    a.last_ids[o] = last[k];
  }
}

template <typename T>
void rasterize_fwd_kernel(const RasterizeFwdArgs<T>& a, const RasterizeDims& d,
                          const CompositeParams& p) {
  const int64_t tiles_per_image = int64_t(d.tiles_x) * d.tiles_y;
  const int64_t num_tiles = d.num_images * tiles_per_image;
  at::parallel_for(0, num_tiles, 1, [&](int64_t t_begin, int64_t t_end) {
    std::vector<Splat<T>> splats;
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t i = t / tiles_per_image;
      const int32_t ty = static_cast<int32_t>((t % tiles_per_image) / d.tiles_x);
      const int32_t tx = static_cast<int32_t>(t % d.tiles_x);
      int64_t begin, end;
      tile_range(a.isect_offsets, num_tiles, d.num_isects, t, &begin, &end);

      // Gather the tile's run once; every pixel of the tile walks it.
      bool present[kMaxExperts] = {};
      splats.clear();
      for (int64_t j = begin; j < end; ++j) {
        splats.push_back(load_splat(a.means2d, a.conics, a.opacities, a.expert_ids,
                                    int64_t(a.flatten_ids[j])));
        present[splats.back().expert] = true;
      }

      const int32_t y_end = std::min(d.height, (ty + 1) * d.tile_size);
      const int32_t x_end = std::min(d.width, (tx + 1) * d.tile_size);
      for (int32_t y = ty * d.tile_size; y < y_end; ++y)
        for (int32_t x = tx * d.tile_size; x < x_end; ++x)
          render_pixel(a, d, p, splats, begin, present, i, x, y);
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
