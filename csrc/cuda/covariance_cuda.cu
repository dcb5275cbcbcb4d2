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
#include "../ops/covariance_prepare.h"

namespace moegs {
namespace {

// quats [M, 4], scales [M, 3] -> covars [M, 6]
template <typename T>
__global__ void covar_fwd_kernel(int64_t n, const T* __restrict__ quats,
                                 const T* __restrict__ scales, T* __restrict__ covars) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    covar_fwd_element(i, quats, scales, covars);
}

// quats [M, 4], scales [M, 3], v_covars [M, 6] -> v_quats [M, 4], v_scales [M, 3]
template <typename T>
__global__ void covar_bwd_kernel(int64_t n, const T* __restrict__ quats,
                                 const T* __restrict__ scales, const T* __restrict__ v_covars,
                                 T* __restrict__ v_quats, T* __restrict__ v_scales) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    covar_bwd_element(i, quats, scales, v_covars, v_quats, v_scales);
}

// quats [M, 4], scales [M, 3] -> covars [M, 6]
at::Tensor quat_scale_to_covar_fwd_cuda(const at::Tensor& quats_in, const at::Tensor& scales_in) {
  const char* op = "quat_scale_to_covar_fwd";
  const CovarFwdPrepared p = prepare_covar_fwd(op, quats_in, scales_in);
  if (p.n == 0) return p.covars;
  const c10::cuda::CUDAGuard guard(p.quats.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(p.quats.scalar_type(), "quat_scale_to_covar", [&] {
    covar_fwd_kernel<scalar_t><<<blocks_for(p.n), kThreads, 0, stream>>>(
        p.n, p.quats.data_ptr<scalar_t>(), p.scales.data_ptr<scalar_t>(),
        p.covars.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return p.covars;
}

// quats [M, 4], scales [M, 3], v_covars [M, 6] -> (v_quats [M, 4], v_scales [M, 3])
std::tuple<at::Tensor, at::Tensor> quat_scale_to_covar_bwd_cuda(const at::Tensor& quats_in,
                                                                const at::Tensor& scales_in,
                                                                const at::Tensor& v_covars_in) {
  const char* op = "quat_scale_to_covar_bwd";
  const CovarBwdPrepared p = prepare_covar_bwd(op, quats_in, scales_in, v_covars_in);
  if (p.n == 0) return {p.v_quats, p.v_scales};
  const c10::cuda::CUDAGuard guard(p.quats.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(p.quats.scalar_type(), "quat_scale_to_covar", [&] {
    covar_bwd_kernel<scalar_t><<<blocks_for(p.n), kThreads, 0, stream>>>(
        p.n, p.quats.data_ptr<scalar_t>(), p.scales.data_ptr<scalar_t>(),
        p.v_covars.data_ptr<scalar_t>(), p.v_quats.data_ptr<scalar_t>(),
        p.v_scales.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {p.v_quats, p.v_scales};
}

}  // namespace

TORCH_LIBRARY_IMPL(moegs, CUDA, m) {
  m.impl("quat_scale_to_covar_fwd", &quat_scale_to_covar_fwd_cuda);
  m.impl("quat_scale_to_covar_bwd", &quat_scale_to_covar_bwd_cuda);
}

}  // namespace moegs
