// Argument checks of the spherical-harmonics ops, shared by the CPU and CUDA
// wrappers.
#pragma once

#include <ATen/ATen.h>

#include "moegs/checks.h"
#include "moegs/sh.h"

namespace moegs {

// degree in 0..kShMaxDegree, dirs [M, 3], coeffs [M, Kc, 3] with Kc >= (degree + 1)^2.
inline void check_sh_inputs(const char* op, int64_t degree, const at::Tensor& dirs,
                            const at::Tensor& coeffs) {
  MOEGS_CHECK(op, degree >= 0 && degree <= kShMaxDegree, "degree must be in 0..", kShMaxDegree,
              ", got ", degree);
  MOEGS_CHECK_FLOAT(op, dirs);
  MOEGS_CHECK_SAME_DTYPE(op, dirs, coeffs);
  MOEGS_CHECK_DIM(op, dirs, 2);
  MOEGS_CHECK_SIZE(op, dirs, 1, 3);
  MOEGS_CHECK_DIM(op, coeffs, 3);
  MOEGS_CHECK_SIZE(op, coeffs, 2, 3);
  MOEGS_CHECK(op, coeffs.size(0) == dirs.size(0), "dirs and coeffs disagree on M: ", dirs.sizes(),
              " vs ", coeffs.sizes());
  MOEGS_CHECK(op, coeffs.size(1) >= sh_num_bases(static_cast<int>(degree)), "degree ", degree,
              " needs ", sh_num_bases(static_cast<int>(degree)), " coefficients per colour, got ",
              coeffs.sizes());
  MOEGS_CHECK(op, coeffs.device() == dirs.device(), "coeffs is on ", coeffs.device(),
              " but dirs is on ", dirs.device());
}

// The forward's arguments plus colors [M, 3] and v_colors [M, 3].
inline void check_sh_bwd_inputs(const char* op, int64_t degree, const at::Tensor& dirs,
                                const at::Tensor& coeffs, const at::Tensor& colors,
                                const at::Tensor& v_colors) {
  check_sh_inputs(op, degree, dirs, coeffs);
  MOEGS_CHECK_SAME_DTYPE(op, dirs, colors);
  MOEGS_CHECK_SAME_DTYPE(op, dirs, v_colors);
  MOEGS_CHECK(op, colors.sizes() == dirs.sizes(), "colors must be [M, 3] like dirs, got ",
              colors.sizes());
  MOEGS_CHECK(op, v_colors.sizes() == dirs.sizes(), "v_colors must be [M, 3] like dirs, got ",
              v_colors.sizes());
  MOEGS_CHECK(op, colors.device() == dirs.device(), "colors is on ", colors.device(),
              " but dirs is on ", dirs.device());
  MOEGS_CHECK(op, v_colors.device() == dirs.device(), "v_colors is on ", v_colors.device(),
              " but dirs is on ", dirs.device());
}

}  // namespace moegs
