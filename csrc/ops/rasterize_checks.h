// Argument checks of rasterize_experts_{fwd,bwd}, shared by the CPU and CUDA
// wrappers (tensors as in csrc/ops/rasterize.cpp). Every failure raises a
// RuntimeError naming the op.
//
// The value checks (expert ids, flatten ids, tile offsets, last ids) read the
// data. On CPU they loop over it directly. Elsewhere one combined ATen
// reduction decides (a single host sync per call); only if it fails is the data
// copied to the host, where the same loops name the first bad value.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <vector>

#include "moegs/checks.h"
#include "moegs/composite.h"

namespace moegs {
namespace rasterize_checks {

// Leading shape of means2d [..., 2]: the shape every per-Gaussian input shares.
inline at::IntArrayRef leading(const at::Tensor& means2d) {
  return means2d.sizes().slice(0, means2d.dim() - 1);
}

// x must be [..., last] (last > 0), [..., F] (last == 0) or [...] (last < 0)
// with the leading shape of means2d.
inline void check_per_gaussian(const char* op, const at::Tensor& means2d, const at::Tensor& x,
                               const char* name, int64_t last) {
  const at::IntArrayRef lead = leading(means2d);
  const bool ok = last < 0 ? x.sizes() == lead
                           : (x.dim() == means2d.dim() && x.sizes().slice(0, lead.size()) == lead &&
                              (last == 0 || x.size(-1) == last));
  if (last < 0) {
    MOEGS_CHECK(op, ok, name, " must have the leading shape ", lead, " of means2d, got ",
                x.sizes());
  } else if (last == 0) {
    MOEGS_CHECK(op, ok, name, " must be [", lead, ", F], got ", x.sizes());
  } else {
    MOEGS_CHECK(op, ok, name, " must be [", lead, ", ", last, "], got ", x.sizes());
  }
}

// The value loops over host tensors: raise at the first bad value.
inline void check_values_host(const char* op, const RasterizeDims& d,
                              const at::Tensor& expert_ids, const at::Tensor& isect_offsets,
                              const at::Tensor& flatten_ids) {
  const at::Tensor ids = expert_ids.contiguous();
  const int32_t* e = ids.data_ptr<int32_t>();
  for (int64_t g = 0; g < d.num_entries; ++g) {
    MOEGS_CHECK(op, e[g] >= 0 && e[g] < d.num_experts, "expert_ids must be in [0, ",
                d.num_experts, "), got ", e[g], " at flat index ", g);
  }
  const at::Tensor fl = flatten_ids.contiguous();
  const int32_t* f = fl.data_ptr<int32_t>();
  for (int64_t j = 0; j < d.num_isects; ++j) {
    MOEGS_CHECK(op, f[j] >= 0 && f[j] < d.num_entries, "flatten_ids must be in [0, ",
                d.num_entries, "), got ", f[j], " at index ", j);
  }
  const at::Tensor off = isect_offsets.contiguous();
  const int32_t* o = off.data_ptr<int32_t>();
  const int64_t n = off.numel();
  for (int64_t t = 0; t < n; ++t) {
    const int64_t next = t + 1 < n ? o[t + 1] : d.num_isects;
    MOEGS_CHECK(op, o[t] >= 0 && o[t] <= next && next <= d.num_isects,
                "isect_offsets must be non-decreasing in [0, n_isects = ", d.num_isects,
                "], got ", o[t], " then ", next, " at flat tile ", t);
  }
}

// Same conditions as check_values_host, as one boolean tensor on the inputs' device.
inline at::Tensor values_ok(const RasterizeDims& d, const at::Tensor& expert_ids,
                            const at::Tensor& isect_offsets, const at::Tensor& flatten_ids) {
  const at::Tensor ids_ok = expert_ids.ge(0).logical_and(expert_ids.lt(d.num_experts)).all();
  const at::Tensor flat_ok = flatten_ids.ge(0).logical_and(flatten_ids.lt(d.num_entries)).all();
  const at::Tensor off = isect_offsets.reshape({-1}).to(at::kLong);
  const at::Tensor next =
      at::cat({off.slice(0, 1), at::full({1}, d.num_isects, off.options())});
  const at::Tensor off_ok =
      off.ge(0).logical_and(off.le(next)).logical_and(next.le(d.num_isects)).all();
  return at::stack({ids_ok, flat_ok, off_ok}).all();
}

inline void check_values(const char* op, const RasterizeDims& d, const at::Tensor& expert_ids,
                         const at::Tensor& isect_offsets, const at::Tensor& flatten_ids) {
  if (expert_ids.is_cpu() && isect_offsets.is_cpu() && flatten_ids.is_cpu()) {
    check_values_host(op, d, expert_ids, isect_offsets, flatten_ids);
  } else if (!values_ok(d, expert_ids, isect_offsets, flatten_ids).item<bool>()) {
    check_values_host(op, d, expert_ids.cpu(), isect_offsets.cpu(), flatten_ids.cpu());
  }
}

// last_ids [I, K, H, W]: -1 or inside the pixel's tile run (host loop).
inline void check_last_ids_host(const char* op, const RasterizeDims& d,
                                const at::Tensor& isect_offsets, const at::Tensor& last_ids) {
  const at::Tensor off = isect_offsets.contiguous();
  const at::Tensor last = last_ids.contiguous();
  const int32_t* o = off.data_ptr<int32_t>();
  const int32_t* l = last.data_ptr<int32_t>();
  const int64_t tiles = d.tiles_x * int64_t(d.tiles_y);
  for (int64_t i = 0; i < d.num_images; ++i)
    for (int64_t k = 0; k < d.num_experts; ++k)
      for (int64_t y = 0; y < d.height; ++y)
        for (int64_t x = 0; x < d.width; ++x) {
          const int32_t v = *l++;
          if (v == kNoContributor) continue;
          const int64_t t = i * tiles + (y / d.tile_size) * d.tiles_x + x / d.tile_size;
          int64_t begin, end;
          tile_range(o, d.num_images * tiles, d.num_isects, t, &begin, &end);
          MOEGS_CHECK(op, v >= begin && v < end, "last_ids[", i, ", ", k, ", ", y, ", ", x,
                      "] = ", v, " is outside its tile's run [", begin, ", ", end, ")");
        }
}

// Same condition as check_last_ids_host, as one boolean tensor on the inputs' device.
inline at::Tensor last_ids_ok(const RasterizeDims& d, const at::Tensor& isect_offsets,
                              const at::Tensor& last_ids) {
  const at::TensorOptions opt = isect_offsets.options().dtype(at::kLong);
  const at::Tensor off = isect_offsets.reshape({-1}).to(at::kLong);
  const at::Tensor ends = at::cat({off.slice(0, 1), at::full({1}, d.num_isects, opt)});
  const int64_t tiles = d.tiles_x * int64_t(d.tiles_y);
  // Flat tile of every (image, row, column), broadcast to [I, 1, H, W].
  const at::Tensor ty = at::arange(d.height, opt).div(d.tile_size, "floor");
  const at::Tensor tx = at::arange(d.width, opt).div(d.tile_size, "floor");
  const at::Tensor tile = at::arange(d.num_images, opt).mul(tiles).view({-1, 1, 1, 1}) +
                          ty.mul(d.tiles_x).view({1, 1, -1, 1}) + tx.view({1, 1, 1, -1});
  const at::Tensor begin = off.take(tile);
  const at::Tensor end = ends.take(tile);
  const at::Tensor last = last_ids.to(at::kLong);
  return last.eq(kNoContributor).logical_or(last.ge(begin).logical_and(last.lt(end))).all();
}

}  // namespace rasterize_checks

// Checks the 15 common inputs of rasterize_experts_{fwd,bwd} (shapes, dtypes,
// devices, parameter ranges, and the values of expert_ids, flatten_ids and
// isect_offsets) and returns the call's sizes.
inline RasterizeDims check_rasterize_inputs(
    const char* op, const at::Tensor& means2d, const at::Tensor& conics,
    const at::Tensor& opacities, const at::Tensor& features, const at::Tensor& expert_ids,
    const at::Tensor& backgrounds, const at::Tensor& isect_offsets,
    const at::Tensor& flatten_ids, int64_t width, int64_t height, int64_t tile_size,
    int64_t num_experts, const CompositeParams& params) {
  using namespace rasterize_checks;
  MOEGS_CHECK(op, num_experts >= 1 && num_experts <= kMaxExperts, "num_experts must be in [1, ",
              kMaxExperts, "], got ", num_experts);
  const int64_t int_max = std::numeric_limits<int32_t>::max();
  MOEGS_CHECK(op, width >= 1 && width <= int_max && height >= 1 && height <= int_max,
              "width and height must be positive, got ", width, " x ", height);
  MOEGS_CHECK(op, tile_size >= 1 && tile_size <= 1024, "tile_size must be in [1, 1024], got ",
              tile_size);
  MOEGS_CHECK(op, params.alpha_max > 0.0 && params.alpha_max < 1.0,
              "alpha_max must be in (0, 1), got ", params.alpha_max);
  MOEGS_CHECK(op, params.min_transmittance >= 0.0 && params.min_transmittance < 1.0,
              "min_transmittance must be in [0, 1), got ", params.min_transmittance);
  MOEGS_CHECK(op, std::isfinite(params.pixel_offset), "pixel_offset must be finite, got ",
              params.pixel_offset);

  // dtypes and devices
  MOEGS_CHECK_FLOAT(op, means2d);
  MOEGS_CHECK_SAME_DTYPE(op, means2d, conics);
  MOEGS_CHECK_SAME_DTYPE(op, means2d, opacities);
  MOEGS_CHECK_SAME_DTYPE(op, means2d, features);
  MOEGS_CHECK_SAME_DTYPE(op, means2d, backgrounds);
  MOEGS_CHECK_DTYPE(op, expert_ids, at::kInt);
  MOEGS_CHECK_DTYPE(op, isect_offsets, at::kInt);
  MOEGS_CHECK_DTYPE(op, flatten_ids, at::kInt);
  for (const at::Tensor* t : {&conics, &opacities, &features, &expert_ids, &backgrounds,
                              &isect_offsets, &flatten_ids}) {
    MOEGS_CHECK(op, t->device() == means2d.device(), "all inputs must be on ", means2d.device(),
                ", got one on ", t->device());
  }

  // per-Gaussian shapes
  MOEGS_CHECK(op, means2d.dim() >= 1 && means2d.size(-1) == 2, "means2d must be [..., 2], got ",
              means2d.sizes());
  check_per_gaussian(op, means2d, conics, "conics", 3);
  check_per_gaussian(op, means2d, opacities, "opacities", -1);
  check_per_gaussian(op, means2d, features, "features", 0);
  check_per_gaussian(op, means2d, expert_ids, "expert_ids", -1);
  MOEGS_CHECK(op, features.size(-1) >= 1, "features needs at least one channel, got ",
              features.sizes());

  RasterizeDims d;
  d.num_entries = opacities.numel();
  d.num_features = features.size(-1);
  d.num_experts = static_cast<int32_t>(num_experts);
  d.width = static_cast<int32_t>(width);
  d.height = static_cast<int32_t>(height);
  d.tile_size = static_cast<int32_t>(tile_size);
  d.tiles_x = static_cast<int32_t>((width + tile_size - 1) / tile_size);
  d.tiles_y = static_cast<int32_t>((height + tile_size - 1) / tile_size);

  // intersections
  MOEGS_CHECK(op, isect_offsets.dim() == 3 && isect_offsets.size(1) == d.tiles_y &&
                      isect_offsets.size(2) == d.tiles_x,
              "isect_offsets must be [I, ", d.tiles_y, ", ", d.tiles_x, "] for a ", width, " x ",
              height, " image and tile_size ", tile_size, ", got ", isect_offsets.sizes());
  MOEGS_CHECK_DIM(op, flatten_ids, 1);
  d.num_images = isect_offsets.size(0);
  d.num_isects = flatten_ids.size(0);
  MOEGS_CHECK(op, backgrounds.dim() == 3 && backgrounds.size(0) == d.num_images &&
                      backgrounds.size(1) == num_experts && backgrounds.size(2) == d.num_features,
              "backgrounds must be [I, K, F] = [", d.num_images, ", ", num_experts, ", ",
              d.num_features, "], got ", backgrounds.sizes());

  check_values(op, d, expert_ids, isect_offsets, flatten_ids);
  return d;
}

// Checks the forward outputs and output gradients given to the backward op:
// alphas [I, K, H, W, 1], last_ids [I, K, H, W] (-1 or inside the pixel's tile
// run: the backward replays exactly that run), v_render [I, K, H, W, F],
// v_alphas [I, K, H, W, 1].
inline void check_rasterize_grads(const char* op, const RasterizeDims& d,
                                  const at::Tensor& means2d, const at::Tensor& isect_offsets,
                                  const at::Tensor& alphas, const at::Tensor& last_ids,
                                  const at::Tensor& v_render, const at::Tensor& v_alphas) {
  using namespace rasterize_checks;
  const std::vector<int64_t> pix = {d.num_images, d.num_experts, d.height, d.width};
  const std::vector<int64_t> pix1 = {d.num_images, d.num_experts, d.height, d.width, 1};
  const std::vector<int64_t> pixf = {d.num_images, d.num_experts, d.height, d.width,
                                     d.num_features};
  MOEGS_CHECK(op, alphas.sizes() == at::IntArrayRef(pix1), "alphas must be ", pix1, ", got ",
              alphas.sizes());
  MOEGS_CHECK(op, last_ids.sizes() == at::IntArrayRef(pix), "last_ids must be ", pix, ", got ",
              last_ids.sizes());
  MOEGS_CHECK(op, v_render.sizes() == at::IntArrayRef(pixf), "v_render must be ", pixf,
              ", got ", v_render.sizes());
  MOEGS_CHECK(op, v_alphas.sizes() == at::IntArrayRef(pix1), "v_alphas must be ", pix1,
              ", got ", v_alphas.sizes());
  MOEGS_CHECK_SAME_DTYPE(op, means2d, alphas);
  MOEGS_CHECK_SAME_DTYPE(op, means2d, v_render);
  MOEGS_CHECK_SAME_DTYPE(op, means2d, v_alphas);
  MOEGS_CHECK_DTYPE(op, last_ids, at::kInt);
  for (const at::Tensor* t : {&alphas, &last_ids, &v_render, &v_alphas}) {
    MOEGS_CHECK(op, t->device() == means2d.device(), "all inputs must be on ", means2d.device(),
                ", got one on ", t->device());
  }

  if (isect_offsets.is_cpu() && last_ids.is_cpu()) {
    check_last_ids_host(op, d, isect_offsets, last_ids);
  } else if (!last_ids_ok(d, isect_offsets, last_ids).item<bool>()) {
    check_last_ids_host(op, d, isect_offsets.cpu(), last_ids.cpu());
  }
}

}  // namespace moegs
