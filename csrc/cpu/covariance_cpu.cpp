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
    for (int64_t i = begin; i < end; ++i) {
      const T* q = quats + 4 * i;
      const T* s = scales + 3 * i;
      const mat3<T> c = quat_scale_to_covar(vec4<T>{q[0], q[1], q[2], q[3]}, vec3<T>{s[0], s[1], s[2]});
      sym3_to_triu(c, covars + 6 * i);
    }
  });
}

template <typename T>
void covar_bwd_kernel(int64_t n, const T* quats, const T* scales, const T* v_covars, T* v_quats,
                      T* v_scales) {
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T* q = quats + 4 * i;
      const T* s = scales + 3 * i;
      const T* g = v_covars + 6 * i;
      vec4<T> vq;
      vec3<T> vs;
      quat_scale_to_covar_vjp_triu(vec4<T>{q[0], q[1], q[2], q[3]}, vec3<T>{s[0], s[1], s[2]}, g,
                                   &vq, &vs);
      T* oq = v_quats + 4 * i;
      oq[0] = vq.w; oq[1] = vq.x; oq[2] = vq.y; oq[3] = vq.z;
      T* os = v_scales + 3 * i;
      os[0] = vs.x; os[1] = vs.y; os[2] = vs.z;
    }
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
