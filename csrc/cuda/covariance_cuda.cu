// CUDA kernels for the covariance ops: one thread per Gaussian, math in
// moegs/covariance.h (the same functions the CPU loops call).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "moegs/covariance.h"
#include "launch.cuh"
#include "../ops/covariance_checks.h"

namespace moegs {
namespace {


// quats [M, 4], scales [M, 3] -> covars [M, 6]
template <typename T>
__global__ void covar_fwd_kernel(int64_t n, const T* __restrict__ quats,
                                 const T* __restrict__ scales, T* __restrict__ covars) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const T* q = quats + 4 * i;
    const T* s = scales + 3 * i;
    const mat3<T> c =
        quat_scale_to_covar(vec4<T>{q[0], q[1], q[2], q[3]}, vec3<T>{s[0], s[1], s[2]});
    sym3_to_triu(c, covars + 6 * i);
  }
}

// quats [M, 4], scales [M, 3], v_covars [M, 6] -> v_quats [M, 4], v_scales [M, 3]
template <typename T>
__global__ void covar_bwd_kernel(int64_t n, const T* __restrict__ quats,
                                 const T* __restrict__ scales, const T* __restrict__ v_covars,
                                 T* __restrict__ v_quats, T* __restrict__ v_scales) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const T* q = quats + 4 * i;
    const T* s = scales + 3 * i;
    vec4<T> vq;
    vec3<T> vs;
    quat_scale_to_covar_vjp_triu(vec4<T>{q[0], q[1], q[2], q[3]}, vec3<T>{s[0], s[1], s[2]},
                                 v_covars + 6 * i, &vq, &vs);
    T* oq = v_quats + 4 * i;
    oq[0] = vq.w; oq[1] = vq.x; oq[2] = vq.y; oq[3] = vq.z;
    T* os = v_scales + 3 * i;
    os[0] = vs.x; os[1] = vs.y; os[2] = vs.z;
  }
}

// quats [M, 4], scales [M, 3] -> covars [M, 6]
at::Tensor quat_scale_to_covar_fwd_cuda(const at::Tensor& quats_in, const at::Tensor& scales_in) {
  const char* op = "quat_scale_to_covar_fwd";
  check_covar_inputs(op, quats_in, scales_in);
  const c10::cuda::CUDAGuard guard(quats_in.device());
  const at::Tensor quats = quats_in.contiguous();
  const at::Tensor scales = scales_in.contiguous();
  const int64_t n = quats.size(0);
  at::Tensor covars = at::empty({n, 6}, quats.options());
  if (n == 0) return covars;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(quats.scalar_type(), "quat_scale_to_covar", [&] {
    covar_fwd_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        n, quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(), covars.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return covars;
}

// quats [M, 4], scales [M, 3], v_covars [M, 6] -> (v_quats [M, 4], v_scales [M, 3])
std::tuple<at::Tensor, at::Tensor> quat_scale_to_covar_bwd_cuda(const at::Tensor& quats_in,
                                                                const at::Tensor& scales_in,
                                                                const at::Tensor& v_covars_in) {
  const char* op = "quat_scale_to_covar_bwd";
  check_covar_bwd_inputs(op, quats_in, scales_in, v_covars_in);
  const c10::cuda::CUDAGuard guard(quats_in.device());
  const at::Tensor quats = quats_in.contiguous();
  const at::Tensor scales = scales_in.contiguous();
  const at::Tensor v_covars = v_covars_in.contiguous();
  at::Tensor v_quats = at::empty_like(quats);
  at::Tensor v_scales = at::empty_like(scales);
  const int64_t n = quats.size(0);
  if (n == 0) return {v_quats, v_scales};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(quats.scalar_type(), "quat_scale_to_covar", [&] {
    covar_bwd_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        n, quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(), v_covars.data_ptr<scalar_t>(),
        v_quats.data_ptr<scalar_t>(), v_scales.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {v_quats, v_scales};
}

}  // namespace

TORCH_LIBRARY_IMPL(moegs, CUDA, m) {
  m.impl("quat_scale_to_covar_fwd", &quat_scale_to_covar_fwd_cuda);
  m.impl("quat_scale_to_covar_bwd", &quat_scale_to_covar_bwd_cuda);
}

}  // namespace moegs
