// Schema of the spherical-harmonics colour ops.
#include <torch/library.h>

// spherical_harmonics_fwd(degree, dirs [M, 3], coeffs [M, Kc, 3]) -> colors [M, 3]
//   degree in 0..3 with (degree + 1)^2 <= Kc; dirs = mean - camera centre, need
//   not be normalised. colors = max(SH(dirs / |dirs|, coeffs) + 0.5, 0).
// spherical_harmonics_bwd(degree, dirs [M, 3], coeffs [M, Kc, 3], colors [M, 3],
//                         v_colors [M, 3], compute_v_dirs)
//   -> (v_dirs [M, 3] or [0] when not compute_v_dirs, v_coeffs [M, Kc, 3])
//   colors is the forward output; no gradient where it was clamped to 0.
TORCH_LIBRARY_FRAGMENT(moegs, m) {
  m.def("spherical_harmonics_fwd(int degree, Tensor dirs, Tensor coeffs) -> Tensor");
  m.def(
      "spherical_harmonics_bwd(int degree, Tensor dirs, Tensor coeffs, Tensor colors, "
      "Tensor v_colors, bool compute_v_dirs) -> (Tensor, Tensor)");
}
