// Argument checks shared by the CPU forward and backward rasterization ops.
#pragma once

#include <ATen/ATen.h>

#include "moegs/composite.h"

namespace moegs {

// Checks the 15 common inputs of rasterize_experts_{fwd,bwd} (shapes, dtypes,
// devices, parameter ranges, and the values of expert_ids, flatten_ids and
// isect_offsets) and returns the call's sizes. Tensors as in
// csrc/ops/rasterize.cpp; raises a RuntimeError naming `op` on bad input.
RasterizeDims check_rasterize_inputs(const char* op, const at::Tensor& means2d,
                                     const at::Tensor& conics, const at::Tensor& opacities,
                                     const at::Tensor& features, const at::Tensor& expert_ids,
                                     const at::Tensor& backgrounds,
                                     const at::Tensor& isect_offsets,
                                     const at::Tensor& flatten_ids, int64_t width, int64_t height,
                                     int64_t tile_size, int64_t num_experts,
                                     const CompositeParams& params);

// Checks the forward outputs and output gradients given to the backward op:
// alphas [I, K, H, W, 1], last_ids [I, K, H, W] (-1 or inside the pixel's tile
// run), v_render [I, K, H, W, F], v_alphas [I, K, H, W, 1].
void check_rasterize_grads(const char* op, const RasterizeDims& dims, const at::Tensor& means2d,
                           const at::Tensor& isect_offsets, const at::Tensor& alphas,
                           const at::Tensor& last_ids, const at::Tensor& v_render,
                           const at::Tensor& v_alphas);

}  // namespace moegs
