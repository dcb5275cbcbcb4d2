// Schema of the covariance ops (one TORCH_LIBRARY fragment per op family).
#include <torch/library.h>

// quat_scale_to_covar_fwd(quats [M, 4], scales [M, 3]) -> covars [M, 6]
//   quats (w, x, y, z), not necessarily normalised; scales linear (not log).
//   covars is the upper triangle (xx, xy, xz, yy, yz, zz) of R diag(s)^2 R^T.
// quat_scale_to_covar_bwd(quats [M, 4], scales [M, 3], v_covars [M, 6])
//   -> (v_quats [M, 4], v_scales [M, 3])
TORCH_LIBRARY_FRAGMENT(moegs, m) {
  m.def("quat_scale_to_covar_fwd(Tensor quats, Tensor scales) -> Tensor");
  m.def(
      "quat_scale_to_covar_bwd(Tensor quats, Tensor scales, Tensor v_covars) -> "
      "(Tensor, Tensor)");
}
