// Argument checks of the covariance ops, shared by the CPU and CUDA wrappers.
#pragma once

#include <ATen/ATen.h>

#include "moegs/checks.h"

namespace moegs {

// quats [M, 4], scales [M, 3], same dtype and device.
inline void check_covar_inputs(const char* op, const at::Tensor& quats,
                               const at::Tensor& scales) {
  MOEGS_CHECK_FLOAT(op, quats);
  MOEGS_CHECK_SAME_DTYPE(op, quats, scales);
  MOEGS_CHECK_DIM(op, quats, 2);
  MOEGS_CHECK_SIZE(op, quats, 1, 4);
  MOEGS_CHECK_DIM(op, scales, 2);
  MOEGS_CHECK_SIZE(op, scales, 1, 3);
  MOEGS_CHECK(op, quats.size(0) == scales.size(0), "quats and scales disagree on M: ",
              quats.sizes(), " vs ", scales.sizes());
  MOEGS_CHECK(op, scales.device() == quats.device(), "scales is on ", scales.device(),
              " but quats is on ", quats.device());
}

// quats [M, 4], scales [M, 3], v_covars [M, 6].
inline void check_covar_bwd_inputs(const char* op, const at::Tensor& quats,
                                   const at::Tensor& scales, const at::Tensor& v_covars) {
  check_covar_inputs(op, quats, scales);
  MOEGS_CHECK_SAME_DTYPE(op, quats, v_covars);
  MOEGS_CHECK(op, v_covars.dim() == 2 && v_covars.size(0) == quats.size(0) &&
                      v_covars.size(1) == 6,
              "v_covars must be [M, 6], got ", v_covars.sizes());
  MOEGS_CHECK(op, v_covars.device() == quats.device(), "v_covars is on ", v_covars.device(),
              " but quats is on ", quats.device());
}

}  // namespace moegs
