// CUDA kernels for the spherical-harmonics ops: one thread per Gaussian, math
// in moegs/sh.h (the same functions the CPU loops call).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "moegs/sh.h"
#include "launch.cuh"
#include "../ops/spherical_harmonics_prepare.h"

namespace moegs {
namespace {


// dirs [M, 3], coeffs [M, Kc, 3] -> colors [M, 3]
template <typename T>
__global__ void sh_fwd_kernel(int64_t m, int64_t kc, int degree, const T* __restrict__ dirs,
                              const T* __restrict__ coeffs, T* __restrict__ colors) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < m; i += stride)
    sh_fwd_element(i, kc, degree, dirs, coeffs, colors);
}

// dirs [M, 3], coeffs [M, Kc, 3], colors [M, 3], v_colors [M, 3]
//   -> v_dirs [M, 3] (skipped when null), v_coeffs [M, Kc, 3]
template <typename T>
__global__ void sh_bwd_kernel(int64_t m, int64_t kc, int degree, const T* __restrict__ dirs,
                              const T* __restrict__ coeffs, const T* __restrict__ colors,
                              const T* __restrict__ v_colors, T* __restrict__ v_dirs,
                              T* __restrict__ v_coeffs) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < m; i += stride)
    sh_bwd_element(i, kc, degree, dirs, coeffs, colors, v_colors, v_dirs, v_coeffs);
}

// dirs [M, 3], coeffs [M, Kc, 3] -> colors [M, 3]
at::Tensor spherical_harmonics_fwd_cuda(int64_t degree, const at::Tensor& dirs_in,
                                        const at::Tensor& coeffs_in) {
  const char* op = "spherical_harmonics_fwd";
  const ShFwdPrepared p = prepare_sh_fwd(op, degree, dirs_in, coeffs_in);
  if (p.m == 0) return p.colors;
  const c10::cuda::CUDAGuard guard(p.dirs.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(p.dirs.scalar_type(), "spherical_harmonics_fwd", [&] {
    sh_fwd_kernel<scalar_t><<<blocks_for(p.m), kThreads, 0, stream>>>(
        p.m, p.kc, p.degree, p.dirs.data_ptr<scalar_t>(), p.coeffs.data_ptr<scalar_t>(),
        p.colors.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return p.colors;
}

// dirs [M, 3], coeffs [M, Kc, 3], colors [M, 3], v_colors [M, 3]
//   -> (v_dirs [M, 3] or [0], v_coeffs [M, Kc, 3])
std::tuple<at::Tensor, at::Tensor> spherical_harmonics_bwd_cuda(
    int64_t degree, const at::Tensor& dirs_in, const at::Tensor& coeffs_in,
    const at::Tensor& colors_in, const at::Tensor& v_colors_in, bool compute_v_dirs) {
  const char* op = "spherical_harmonics_bwd";
  const ShBwdPrepared p =
      prepare_sh_bwd(op, degree, dirs_in, coeffs_in, colors_in, v_colors_in, compute_v_dirs);
  if (p.m == 0) return {p.v_dirs, p.v_coeffs};
  const c10::cuda::CUDAGuard guard(p.dirs.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(p.dirs.scalar_type(), "spherical_harmonics_bwd", [&] {
    sh_bwd_kernel<scalar_t><<<blocks_for(p.m), kThreads, 0, stream>>>(
        p.m, p.kc, p.degree, p.dirs.data_ptr<scalar_t>(), p.coeffs.data_ptr<scalar_t>(),
        p.colors.data_ptr<scalar_t>(), p.v_colors.data_ptr<scalar_t>(),
        p.compute_v_dirs ? p.v_dirs.data_ptr<scalar_t>() : nullptr,
        p.v_coeffs.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {p.v_dirs, p.v_coeffs};
}

}  // namespace

TORCH_LIBRARY_IMPL(moegs, CUDA, m) {
  m.impl("spherical_harmonics_fwd", &spherical_harmonics_fwd_cuda);
  m.impl("spherical_harmonics_bwd", &spherical_harmonics_bwd_cuda);
}

}  // namespace moegs
