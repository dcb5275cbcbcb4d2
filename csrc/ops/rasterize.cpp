// Schema of the single-pass multi-expert rasterization ops.
#include <torch/library.h>

// rasterize_experts_fwd(
//     means2d [..., 2]        pixel coordinates
//     conics [..., 3]         (a, b, c) upper triangle of the inverse 2D covariance
//     opacities [...]
//     features [..., F]       F >= 1 channels blended per expert
//     expert_ids [...]        int32 in [0, K)
//     backgrounds [I, K, F]
//     isect_offsets [I, TH, TW] int32: start of each tile's run in flatten_ids
//     flatten_ids [n_isects]  int32 indices into the M = prod(...) entries, each
//                             tile's run sorted front to back
//     width, height, tile_size, num_experts (K, 1..16),
//     alpha_max, min_transmittance, pixel_offset,
//     absgrad: whether the backward of this call also returns v_means2d_abs;
//              the forward itself does not read it)
//   -> (render [I, K, H, W, F], alphas [I, K, H, W, 1],
//       last_ids [I, K, H, W] int32: index into flatten_ids of the last
//       contributor of each (pixel, expert), -1 if none)
//
// rasterize_experts_bwd(<the first 15 inputs above>, alphas [I, K, H, W, 1],
//     last_ids [I, K, H, W], v_render [I, K, H, W, F], v_alphas [I, K, H, W, 1],
//     absgrad)
//   -> (v_means2d [..., 2], v_conics [..., 3], v_opacities [...], v_features [..., F],
//       v_backgrounds [I, K, F], v_means2d_abs [..., 2] if absgrad else [0])
TORCH_LIBRARY_FRAGMENT(moegs, m) {
  m.def(
      "rasterize_experts_fwd(Tensor means2d, Tensor conics, Tensor opacities, Tensor features, "
      "Tensor expert_ids, Tensor backgrounds, Tensor isect_offsets, Tensor flatten_ids, "
      "int width, int height, int tile_size, int num_experts, float alpha_max, "
      "float min_transmittance, float pixel_offset, bool absgrad) -> (Tensor, Tensor, Tensor)");
  m.def(
      "rasterize_experts_bwd(Tensor means2d, Tensor conics, Tensor opacities, Tensor features, "
      "Tensor expert_ids, Tensor backgrounds, Tensor isect_offsets, Tensor flatten_ids, "
      "int width, int height, int tile_size, int num_experts, float alpha_max, "
      "float min_transmittance, float pixel_offset, Tensor alphas, Tensor last_ids, "
      "Tensor v_render, Tensor v_alphas, bool absgrad) -> "
      "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}
