// CPU loops for the covariance ops: one Gaussian per iteration, math in
// moegs/covariance.h.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "moegs/checks.h"
#include "moegs/covariance.h"
#include "../ops/covariance_prepare.h"

namespace moegs {
namespace {

constexpr int64_t kGrain = 2048;

template <typename T>
void covar_fwd_kernel(int64_t n, const T* quats, const T* scales, T* covars) {
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      covar_fwd_element(i, quats, scales, covars);
  });
}

template <typename T>
void covar_bwd_kernel(int64_t n, const T* quats, const T* scales, const T* v_covars, T* v_quats,
                      T* v_scales) {
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      covar_bwd_element(i, quats, scales, v_covars, v_quats, v_scales);
  });
}

at::Tensor quat_scale_to_covar_fwd_cpu(const at::Tensor& quats_in, const at::Tensor& scales_in) {
  const char* op = "quat_scale_to_covar_fwd";
  const CovarFwdPrepared p = prepare_covar_fwd(op, quats_in, scales_in);
  AT_DISPATCH_FLOATING_TYPES(p.quats.scalar_type(), "quat_scale_to_covar", [&] {
    covar_fwd_kernel<scalar_t>(p.n, p.quats.data_ptr<scalar_t>(), p.scales.data_ptr<scalar_t>(),
                               p.covars.data_ptr<scalar_t>());
  });
  return p.covars;
}

std::tuple<at::Tensor, at::Tensor> quat_scale_to_covar_bwd_cpu(const at::Tensor& quats_in,
                                                               const at::Tensor& scales_in,
                                                               const at::Tensor& v_covars_in) {
  const char* op = "quat_scale_to_covar_bwd";
  const CovarBwdPrepared p = prepare_covar_bwd(op, quats_in, scales_in, v_covars_in);
  AT_DISPATCH_FLOATING_TYPES(p.quats.scalar_type(), "quat_scale_to_covar", [&] {
    covar_bwd_kernel<scalar_t>(p.n, p.quats.data_ptr<scalar_t>(), p.scales.data_ptr<scalar_t>(),
                               p.v_covars.data_ptr<scalar_t>(), p.v_quats.data_ptr<scalar_t>(),
                               p.v_scales.data_ptr<scalar_t>());
  });
  return {p.v_quats, p.v_scales};
}

}  // namespace

TORCH_LIBRARY_IMPL(moegs, CPU, m) {
  m.impl("quat_scale_to_covar_fwd", &quat_scale_to_covar_fwd_cpu);
  m.impl("quat_scale_to_covar_bwd", &quat_scale_to_covar_bwd_cpu);
}

}  // namespace moegs
