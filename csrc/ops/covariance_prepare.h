// Device-agnostic preparation of the covariance ops, shared by the CPU and
// CUDA wrappers: argument checks, contiguous inputs, allocated outputs.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "covariance_checks.h"

namespace moegs {

struct CovarFwdPrepared {
  int64_t n;           // M
  at::Tensor quats;    // [M, 4] contiguous
  at::Tensor scales;   // [M, 3] contiguous
  at::Tensor covars;   // [M, 6] output
};

inline CovarFwdPrepared prepare_covar_fwd(const char* op, const at::Tensor& quats,
                                          const at::Tensor& scales) {
  check_covar_inputs(op, quats, scales);
  CovarFwdPrepared p;
  p.quats = quats.contiguous();
  p.scales = scales.contiguous();
  p.n = p.quats.size(0);
  p.covars = at::empty({p.n, 6}, p.quats.options());
  return p;
}

struct CovarBwdPrepared {
  int64_t n;            // M
  at::Tensor quats;     // [M, 4] contiguous
  at::Tensor scales;    // [M, 3] contiguous
  at::Tensor v_covars;  // [M, 6] contiguous
  at::Tensor v_quats;   // [M, 4] output
  at::Tensor v_scales;  // [M, 3] output
};

inline CovarBwdPrepared prepare_covar_bwd(const char* op, const at::Tensor& quats,
                                          const at::Tensor& scales, const at::Tensor& v_covars) {
  check_covar_bwd_inputs(op, quats, scales, v_covars);
  CovarBwdPrepared p;
  p.quats = quats.contiguous();
  p.scales = scales.contiguous();
  p.v_covars = v_covars.contiguous();
  p.n = p.quats.size(0);
  p.v_quats = at::empty_like(p.quats);
  p.v_scales = at::empty_like(p.scales);
  return p;
}

}  // namespace moegs
