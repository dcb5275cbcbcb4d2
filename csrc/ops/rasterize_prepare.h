// Device-agnostic preparation of rasterize_experts_{fwd,bwd}, shared by the
// CPU and CUDA wrappers: argument checks, contiguous inputs, sizes and
// parameters, allocated outputs, and the raw-pointer argument structs both
// backends' kernels take (tensors as in csrc/ops/rasterize.cpp).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <tuple>

#include "moegs/composite.h"
#include "rasterize_checks.h"

namespace moegs {

// Column layout of a per-intersection gradient row of the backward.
constexpr int64_t kRowMean = 0;     // v_means2d (2)
constexpr int64_t kRowConic = 2;    // v_conics (3)
constexpr int64_t kRowOpacity = 5;  // v_opacities (1)
constexpr int64_t kRowFeature = 6;  // v_features (F), then v_means2d_abs (2) if absgrad

// The 8 inputs both directions share, as raw pointers (M Gaussian entries).
template <typename T>
struct RasterizeInputArgs {
  const T* means2d;              // [M, 2]
  const T* conics;               // [M, 3]
  const T* opacities;            // [M]
  const T* features;             // [M, F]
  const int32_t* expert_ids;     // [M]
  const T* backgrounds;          // [I, K, F]
  const int32_t* isect_offsets;  // [I, TH, TW]
  const int32_t* flatten_ids;    // [n_isects]
};

template <typename T>
struct RasterizeFwdArgs : RasterizeInputArgs<T> {
  T* render;                     // [I, K, H, W, F]
  T* alphas;                     // [I, K, H, W, 1]
  int32_t* last_ids;             // [I, K, H, W]
};

template <typename T>
struct RasterizeBwdArgs : RasterizeInputArgs<T> {
  const int32_t* last_ids;       // [I, K, H, W]
  const T* v_render;             // [I, K, H, W, F]
  const T* v_alphas;             // [I, K, H, W, 1]
  T* isect_grads;                // [n_isects, row], zero on entry
  T* tile_v_backgrounds;         // [I * TH * TW, K, F], zero on entry
  int64_t row;                   // 6 + F (+ 2 with absgrad)
  bool absgrad;
};

// A backend's own checks, run after the shared ones and before any copy or
// allocation; none by default.
struct NoBackendCheck {
  void operator()(const RasterizeDims&) const {}
};

// The 8 inputs both directions share, contiguous.
struct RasterizeInputs {
  at::Tensor means2d;        // [..., 2]
  at::Tensor conics;         // [..., 3]
  at::Tensor opacities;      // [...]
  at::Tensor features;       // [..., F]
  at::Tensor expert_ids;     // [...] int32
  at::Tensor backgrounds;    // [I, K, F]
  at::Tensor isect_offsets;  // [I, TH, TW] int32
  at::Tensor flatten_ids;    // [n_isects] int32

  template <typename T>
  RasterizeInputArgs<T> args() const {
    return {means2d.data_ptr<T>(),         conics.data_ptr<T>(),
            opacities.data_ptr<T>(),       features.data_ptr<T>(),
            expert_ids.data_ptr<int32_t>(), backgrounds.data_ptr<T>(),
            isect_offsets.data_ptr<int32_t>(), flatten_ids.data_ptr<int32_t>()};
  }
};

inline RasterizeInputs contiguous_rasterize_inputs(
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& opacities,
    const at::Tensor& features, const at::Tensor& expert_ids, const at::Tensor& backgrounds,
    const at::Tensor& isect_offsets, const at::Tensor& flatten_ids) {
  return {means2d.contiguous(),     conics.contiguous(),        opacities.contiguous(),
          features.contiguous(),    expert_ids.contiguous(),    backgrounds.contiguous(),
          isect_offsets.contiguous(), flatten_ids.contiguous()};
}

struct RasterizeFwdPrepared {
  RasterizeDims d;
  CompositeParams params;
  RasterizeInputs in;
  at::Tensor render;    // [I, K, H, W, F] output
  at::Tensor alphas;    // [I, K, H, W, 1] output
  at::Tensor last_ids;  // [I, K, H, W] int32 output

  template <typename T>
  RasterizeFwdArgs<T> args() const {
    return {in.args<T>(), render.data_ptr<T>(), alphas.data_ptr<T>(),
            last_ids.data_ptr<int32_t>()};
  }

  std::tuple<at::Tensor, at::Tensor, at::Tensor> outputs() const {
    return {render, alphas, last_ids};
  }
};

template <typename BackendCheck = NoBackendCheck>
RasterizeFwdPrepared prepare_rasterize_fwd(
    const char* op, const at::Tensor& means2d, const at::Tensor& conics,
    const at::Tensor& opacities, const at::Tensor& features, const at::Tensor& expert_ids,
    const at::Tensor& backgrounds, const at::Tensor& isect_offsets, const at::Tensor& flatten_ids,
    int64_t width, int64_t height, int64_t tile_size, int64_t num_experts, double alpha_max,
    double min_transmittance, double pixel_offset,
    const BackendCheck& backend_check = BackendCheck{}) {
  RasterizeFwdPrepared p;
  p.params = CompositeParams{alpha_max, min_transmittance, pixel_offset};
  p.d = check_rasterize_inputs(op, means2d, conics, opacities, features, expert_ids, backgrounds,
                               isect_offsets, flatten_ids, width, height, tile_size, num_experts,
                               p.params);
  backend_check(p.d);
  p.in = contiguous_rasterize_inputs(means2d, conics, opacities, features, expert_ids,
                                     backgrounds, isect_offsets, flatten_ids);
  const RasterizeDims& d = p.d;
  const at::TensorOptions opts = p.in.means2d.options();
  p.render = at::empty({d.num_images, d.num_experts, d.height, d.width, d.num_features}, opts);
  p.alphas = at::empty({d.num_images, d.num_experts, d.height, d.width, 1}, opts);
  p.last_ids = at::empty({d.num_images, d.num_experts, d.height, d.width}, opts.dtype(at::kInt));
  return p;
}

struct RasterizeBwdPrepared {
  RasterizeDims d;
  CompositeParams params;
  bool absgrad;
  int64_t row;               // columns of an intersection row: 6 + F (+ 2 with absgrad)
  int64_t num_tiles;         // I * TH * TW
  RasterizeInputs in;
  at::Tensor last_ids;       // [I, K, H, W] int32 contiguous
  at::Tensor v_render;       // [I, K, H, W, F] contiguous
  at::Tensor v_alphas;       // [I, K, H, W, 1] contiguous
  at::Tensor isect_grads;    // [n_isects, row] zeros
  at::Tensor tile_v_bg;      // [I * TH * TW, K, F] zeros
  at::Tensor v_means2d;      // [..., 2] output
  at::Tensor v_conics;       // [..., 3] output
  at::Tensor v_opacities;    // [...] output
  at::Tensor v_features;     // [..., F] output
  at::Tensor v_means2d_abs;  // [..., 2] output, or [0] without absgrad
  at::Tensor v_backgrounds;  // [I, K, F] output

  template <typename T>
  RasterizeBwdArgs<T> args() const {
    return {in.args<T>(),
            last_ids.data_ptr<int32_t>(),
            v_render.data_ptr<T>(),
            v_alphas.data_ptr<T>(),
            isect_grads.data_ptr<T>(),
            tile_v_bg.data_ptr<T>(),
            row,
            absgrad};
  }

  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs()
      const {
    return {v_means2d, v_conics, v_opacities, v_features, v_backgrounds, v_means2d_abs};
  }
};

template <typename BackendCheck = NoBackendCheck>
RasterizeBwdPrepared prepare_rasterize_bwd(
    const char* op, const at::Tensor& means2d, const at::Tensor& conics,
    const at::Tensor& opacities, const at::Tensor& features, const at::Tensor& expert_ids,
    const at::Tensor& backgrounds, const at::Tensor& isect_offsets, const at::Tensor& flatten_ids,
    int64_t width, int64_t height, int64_t tile_size, int64_t num_experts, double alpha_max,
    double min_transmittance, double pixel_offset, const at::Tensor& alphas,
    const at::Tensor& last_ids, const at::Tensor& v_render, const at::Tensor& v_alphas,
    bool absgrad, const BackendCheck& backend_check = BackendCheck{}) {
  RasterizeBwdPrepared p;
  p.params = CompositeParams{alpha_max, min_transmittance, pixel_offset};
  p.d = check_rasterize_inputs(op, means2d, conics, opacities, features, expert_ids, backgrounds,
                               isect_offsets, flatten_ids, width, height, tile_size, num_experts,
                               p.params);
  check_rasterize_grads(op, p.d, means2d, isect_offsets, alphas, last_ids, v_render, v_alphas);
  backend_check(p.d);
  p.in = contiguous_rasterize_inputs(means2d, conics, opacities, features, expert_ids,
                                     backgrounds, isect_offsets, flatten_ids);
  p.last_ids = last_ids.contiguous();
  p.v_render = v_render.contiguous();
  p.v_alphas = v_alphas.contiguous();

  const RasterizeDims& d = p.d;
  const at::TensorOptions opts = p.in.means2d.options();
  p.absgrad = absgrad;
  p.row = kRowFeature + d.num_features + (absgrad ? 2 : 0);
  p.num_tiles = d.num_images * d.tiles_x * d.tiles_y;
  p.isect_grads = at::zeros({d.num_isects, p.row}, opts);
  p.tile_v_bg = at::zeros({p.num_tiles, d.num_experts, d.num_features}, opts);

  p.v_means2d = at::empty(p.in.means2d.sizes(), opts);
  p.v_conics = at::empty(p.in.conics.sizes(), opts);
  p.v_opacities = at::empty(p.in.opacities.sizes(), opts);
  p.v_features = at::empty(p.in.features.sizes(), opts);
  p.v_means2d_abs = absgrad ? at::empty(p.in.means2d.sizes(), opts) : at::empty({0}, opts);
  p.v_backgrounds = at::empty_like(p.in.backgrounds);
  return p;
}

}  // namespace moegs
