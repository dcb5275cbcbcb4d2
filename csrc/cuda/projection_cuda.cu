// CUDA kernels for the EWA projection ops, math in moegs/projection.h (the
// same functions the CPU loops call).
//
// Forward: one thread per (Gaussian, camera) pair. Backward, deterministic and
// free of float atomics:
//   pass 1, one thread per Gaussian (b, n): project_bwd_gaussian sums v_means
//     and v_covars over cameras in camera order, as the CPU does, and writes
//     each pair's viewmat partial;
//   pass 2, one block per camera: v_viewmats = sum over n of the partials, each
//     thread summing a fixed strided subset in order, then a fixed shared-memory
//     tree. The order depends only on kReduceThreads, not on scheduling; it is
//     not the CPU's sequential order, so float results may differ from the CPU
//     in the last bits.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "moegs/projection.h"
#include "launch.cuh"
#include "../ops/projection_prepare.h"

namespace moegs {
namespace {

constexpr int kReduceThreads = 256;  // a power of two (tree reduction)
constexpr int64_t kMaxReduceBlocks = 65535;

// means [B, N, 3], covars [B, N, 6], viewmats [B, C, 4, 4], Ks [B, C, 3, 3],
// opacities [B, N] or nullptr -> out (one thread per (b, c, n)).
template <typename T>
__global__ void project_fwd_kernel(ProjectionParams params, int64_t nb, int64_t nc, int64_t nn,
                                   const T* __restrict__ means, const T* __restrict__ covars,
                                   const T* __restrict__ viewmats, const T* __restrict__ ks,
                                   const T* __restrict__ opacities, ProjectFwdOut<T> out) {
  const int64_t total = nb * nc * nn;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride)
    project_fwd_element(params, i, nc, nn, means, covars, viewmats, ks, opacities, out);
}

// Pass 1, one thread per (b, n) -> v_means [B, N, 3], v_covars [B, N, 6] and,
// when not nullptr, view_partials [B, C, N, kViewGradSize].
template <typename T>
__global__ void project_bwd_gaussians_kernel(ProjectionParams params, int64_t nb, int64_t nc,
                                             int64_t nn, ProjectionBwdArgs<T> a,
                                             T* __restrict__ v_means, T* __restrict__ v_covars,
                                             T* __restrict__ view_partials) {
  const int64_t total = nb * nn;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < total; g += stride) {
    project_bwd_gaussian(params, nc, nn, g, a, v_means, v_covars, view_partials);
  }
}

// Pass 2, one block per camera (grid-stride over the n_cams = B * C cameras):
// view_partials [B, C, N, kViewGradSize] with N = nn > 0 -> v_viewmats
// [B, C, 4, 4], rows 0..2 the summed partials, row 3 zero.
template <typename T>
__global__ void __launch_bounds__(kReduceThreads)
    project_bwd_cameras_kernel(int64_t n_cams, int64_t nn, const T* __restrict__ view_partials,
                               T* __restrict__ v_viewmats) {
  __shared__ T buf[kViewGradSize][kReduceThreads];
  const int t = threadIdx.x;
  for (int64_t cam = blockIdx.x; cam < n_cams; cam += gridDim.x) {
    const T* p = view_partials + kViewGradSize * cam * nn;
    T acc[kViewGradSize];
    for (int k = 0; k < kViewGradSize; ++k) acc[k] = T(0);
    for (int64_t n = t; n < nn; n += kReduceThreads) {
      for (int k = 0; k < kViewGradSize; ++k) acc[k] += p[kViewGradSize * n + k];
    }
    for (int k = 0; k < kViewGradSize; ++k) buf[k][t] = acc[k];
    __syncthreads();
    for (int s = kReduceThreads / 2; s > 0; s >>= 1) {
      if (t < s) {
        for (int k = 0; k < kViewGradSize; ++k) buf[k][t] += buf[k][t + s];
      }
      __syncthreads();
    }
    if (t < 16) v_viewmats[16 * cam + t] = t < kViewGradSize ? buf[t][0] : T(0);
    __syncthreads();  // buf is reused by the next camera
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> project_fwd_cuda(
    const at::Tensor& means_in, const at::Tensor& covars_in, const at::Tensor& viewmats_in,
    const at::Tensor& ks_in, const std::optional<at::Tensor>& opacities_in, int64_t width,
    int64_t height, double eps2d, double near_plane, double far_plane, double radius_clip,
    bool calc_compensations, int64_t camera_model) {
  const ProjectFwdPrepared p = prepare_project_fwd(
      "project_fwd", means_in, covars_in, viewmats_in, ks_in, opacities_in, width, height, eps2d,
      near_plane, far_plane, radius_clip, calc_compensations, camera_model);
  const int64_t total = p.nb * p.nc * p.nn;
  if (total == 0) return p.outputs();

  const c10::cuda::CUDAGuard guard(p.means.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(p.means.scalar_type(), "project_fwd", [&] {
    project_fwd_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        p.params, p.nb, p.nc, p.nn, p.means.data_ptr<scalar_t>(), p.covars.data_ptr<scalar_t>(),
        p.viewmats.data_ptr<scalar_t>(), p.ks.data_ptr<scalar_t>(), p.opacities_ptr<scalar_t>(),
        p.out<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return p.outputs();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> project_bwd_cuda(
    const at::Tensor& means_in, const at::Tensor& covars_in, const at::Tensor& viewmats_in,
    const at::Tensor& ks_in, int64_t width, int64_t height, double eps2d, int64_t camera_model,
    const at::Tensor& radii_in, const at::Tensor& conics_in,
    const std::optional<at::Tensor>& compensations_in, const at::Tensor& v_means2d_in,
    const at::Tensor& v_depths_in, const at::Tensor& v_conics_in,
    const std::optional<at::Tensor>& v_compensations_in, bool viewmats_requires_grad) {
  const ProjectBwdPrepared p = prepare_project_bwd(
      "project_bwd", means_in, covars_in, viewmats_in, ks_in, width, height, eps2d, camera_model,
      radii_in, conics_in, compensations_in, v_means2d_in, v_depths_in, v_conics_in,
      v_compensations_in, viewmats_requires_grad);
  const c10::cuda::CUDAGuard guard(p.means.device());
  const int64_t n_gauss = p.nb * p.nn, n_cams = p.nb * p.nc;
  if (p.viewmats_requires_grad && p.nn == 0) p.v_viewmats.zero_();  // empty sums
  if (n_gauss == 0) return p.outputs();

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(p.means.scalar_type(), "project_bwd", [&] {
    scalar_t* partials = p.view_partials_ptr<scalar_t>();
    project_bwd_gaussians_kernel<scalar_t><<<blocks_for(n_gauss), kThreads, 0, stream>>>(
        p.params, p.nb, p.nc, p.nn, p.args<scalar_t>(), p.v_means.data_ptr<scalar_t>(),
        p.v_covars.data_ptr<scalar_t>(), partials);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (p.viewmats_requires_grad && n_cams > 0) {
      const auto blocks = static_cast<unsigned int>(std::min(n_cams, kMaxReduceBlocks));
      project_bwd_cameras_kernel<scalar_t><<<blocks, kReduceThreads, 0, stream>>>(
          n_cams, p.nn, partials, p.v_viewmats.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return p.outputs();
}

}  // namespace

TORCH_LIBRARY_IMPL(moegs, CUDA, m) {
  m.impl("project_fwd", &project_fwd_cuda);
  m.impl("project_bwd", &project_bwd_cuda);
}

}  // namespace moegs
