// Schema of the EWA projection ops (math in moegs/projection.h).
#include <torch/library.h>

// project_fwd(means [B, N, 3], covars [B, N, 6], viewmats [B, C, 4, 4], Ks [B, C, 3, 3],
//             opacities [B, N] or None, width, height, eps2d, near_plane, far_plane,
//             radius_clip, calc_compensations, camera_model)
//   -> (radii [B, C, N, 2] int32, means2d [B, C, N, 2], depths [B, C, N],
//       conics [B, C, N, 3], compensations [B, C, N] or [0] when not calc_compensations)
//   means world units; covars upper triangle (xx, xy, xz, yy, yz, zz); viewmats
//   world -> camera, OpenCV axes; camera_model 0 = pinhole, 1 = orthographic,
//   2 = equidistant fisheye.
//   Culled entries are all zeros (radii 0).
// project_bwd(means [B, N, 3], covars [B, N, 6], viewmats [B, C, 4, 4], Ks [B, C, 3, 3],
//             width, height, eps2d, camera_model,
//             radii [B, C, N, 2], conics [B, C, N, 3], compensations [B, C, N] or None,
//             v_means2d [B, C, N, 2], v_depths [B, C, N], v_conics [B, C, N, 3],
//             v_compensations [B, C, N] or None, viewmats_requires_grad)
//   -> (v_means [B, N, 3], v_covars [B, N, 6], v_viewmats [B, C, 4, 4] or [0])
TORCH_LIBRARY_FRAGMENT(moegs, m) {
  m.def(
      "project_fwd(Tensor means, Tensor covars, Tensor viewmats, Tensor Ks, Tensor? opacities, "
      "int width, int height, float eps2d, float near_plane, float far_plane, float radius_clip, "
      "bool calc_compensations, int camera_model) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "project_bwd(Tensor means, Tensor covars, Tensor viewmats, Tensor Ks, int width, "
      "int height, float eps2d, int camera_model, Tensor radii, Tensor conics, "
      "Tensor? compensations, Tensor v_means2d, Tensor v_depths, Tensor v_conics, "
      "Tensor? v_compensations, bool viewmats_requires_grad) -> (Tensor, Tensor, Tensor)");
}
