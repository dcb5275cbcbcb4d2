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
#include "../ops/projection_checks.h"

namespace moegs {
namespace {

constexpr int kReduceThreads = 256;  // a power of two (tree reduction)
constexpr int64_t kMaxReduceBlocks = 65535;

// Forward outputs of project_fwd_kernel.
template <typename T>
struct FwdOut {
  int32_t* radii;    // [B, C, N, 2]
  T* means2d;        // [B, C, N, 2]
  T* depths;         // [B, C, N]
  T* conics;         // [B, C, N, 3]
  T* compensations;  // [B, C, N] or nullptr
};

// means [B, N, 3], covars [B, N, 6], viewmats [B, C, 4, 4], Ks [B, C, 3, 3],
// opacities [B, N] or nullptr -> out (one thread per (b, c, n)).
template <typename T>
__global__ void project_fwd_kernel(ProjectionParams params, int64_t nb, int64_t nc, int64_t nn,
                                   const T* __restrict__ means, const T* __restrict__ covars,
                                   const T* __restrict__ viewmats, const T* __restrict__ ks,
                                   const T* __restrict__ opacities, FwdOut<T> out) {
  const int64_t total = nb * nc * nn;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t b = i / (nc * nn), c = (i / nn) % nc, n = i % nn;
    const int64_t g = b * nn + n;    // Gaussian
    const int64_t cam = b * nc + c;  // camera
    const Projected<T> o = project_gaussian(params, means + 3 * g, covars + 6 * g,
                                            viewmats + 16 * cam, ks + 9 * cam,
                                            opacities != nullptr ? opacities + g : nullptr);
    out.radii[2 * i] = o.radius[0];
    out.radii[2 * i + 1] = o.radius[1];
    out.means2d[2 * i] = o.mean2d.x;
    out.means2d[2 * i + 1] = o.mean2d.y;
    out.depths[i] = o.depth;
    out.conics[3 * i] = o.conic[0];
    out.conics[3 * i + 1] = o.conic[1];
    out.conics[3 * i + 2] = o.conic[2];
    if (out.compensations != nullptr) out.compensations[i] = o.compensation;
  }
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
  const char* op = "project_fwd";
  // (Plain variables: the dispatch lambda captures them.)
  int64_t nb, nc, nn;
  std::tie(nb, nc, nn) = check_project_fwd_inputs(op, means_in, covars_in, viewmats_in, ks_in,
                                                  opacities_in, width, height, camera_model);
  const c10::cuda::CUDAGuard guard(means_in.device());
  const at::Tensor means = means_in.contiguous();
  const at::Tensor covars = covars_in.contiguous();
  const at::Tensor viewmats = viewmats_in.contiguous();
  const at::Tensor ks = ks_in.contiguous();
  const at::Tensor opacities = opacities_in.has_value() ? opacities_in->contiguous() : at::Tensor();

  const ProjectionParams params{static_cast<int32_t>(width), static_cast<int32_t>(height),
                                eps2d, near_plane, far_plane, radius_clip,
                                static_cast<int32_t>(camera_model), calc_compensations};
  const auto opts = means.options();
  at::Tensor radii = at::empty({nb, nc, nn, 2}, opts.dtype(at::kInt));
  at::Tensor means2d = at::empty({nb, nc, nn, 2}, opts);
  at::Tensor depths = at::empty({nb, nc, nn}, opts);
  at::Tensor conics = at::empty({nb, nc, nn, 3}, opts);
  at::Tensor compensations =
      calc_compensations ? at::empty({nb, nc, nn}, opts) : at::empty({0}, opts);
  const int64_t total = nb * nc * nn;
  if (total == 0) return {radii, means2d, depths, conics, compensations};

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_fwd", [&] {
    FwdOut<scalar_t> out;
    out.radii = radii.data_ptr<int32_t>();
    out.means2d = means2d.data_ptr<scalar_t>();
    out.depths = depths.data_ptr<scalar_t>();
    out.conics = conics.data_ptr<scalar_t>();
    out.compensations = calc_compensations ? compensations.data_ptr<scalar_t>() : nullptr;
    project_fwd_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        params, nb, nc, nn, means.data_ptr<scalar_t>(), covars.data_ptr<scalar_t>(),
        viewmats.data_ptr<scalar_t>(), ks.data_ptr<scalar_t>(),
        opacities.defined() ? opacities.data_ptr<scalar_t>() : nullptr, out);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {radii, means2d, depths, conics, compensations};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> project_bwd_cuda(
    const at::Tensor& means_in, const at::Tensor& covars_in, const at::Tensor& viewmats_in,
    const at::Tensor& ks_in, int64_t width, int64_t height, double eps2d, int64_t camera_model,
    const at::Tensor& radii_in, const at::Tensor& conics_in,
    const std::optional<at::Tensor>& compensations_in, const at::Tensor& v_means2d_in,
    const at::Tensor& v_depths_in, const at::Tensor& v_conics_in,
    const std::optional<at::Tensor>& v_compensations_in, bool viewmats_requires_grad) {
  const char* op = "project_bwd";
  int64_t nb, nc, nn;
  std::tie(nb, nc, nn) = check_project_bwd_inputs(
      op, means_in, covars_in, viewmats_in, ks_in, width, height, camera_model, radii_in,
      conics_in, compensations_in, v_means2d_in, v_depths_in, v_conics_in, v_compensations_in);
  const c10::cuda::CUDAGuard guard(means_in.device());

  const at::Tensor means = means_in.contiguous();
  const at::Tensor covars = covars_in.contiguous();
  const at::Tensor viewmats = viewmats_in.contiguous();
  const at::Tensor ks = ks_in.contiguous();
  const at::Tensor radii = radii_in.contiguous();
  const at::Tensor conics = conics_in.contiguous();
  const at::Tensor v_means2d = v_means2d_in.contiguous();
  const at::Tensor v_depths = v_depths_in.contiguous();
  const at::Tensor v_conics = v_conics_in.contiguous();
  // The compensation VJP needs both the value and its cotangent.
  const bool with_comp = v_compensations_in.has_value();
  const at::Tensor compensations = with_comp ? compensations_in->contiguous() : at::Tensor();
  const at::Tensor v_compensations = with_comp ? v_compensations_in->contiguous() : at::Tensor();

  // near/far/radius_clip only shape the forward's culling, which radii record.
  const ProjectionParams params{static_cast<int32_t>(width), static_cast<int32_t>(height),
                                eps2d, 0.0, 0.0, 0.0, static_cast<int32_t>(camera_model),
                                with_comp};
  at::Tensor v_means = at::empty_like(means);
  at::Tensor v_covars = at::empty_like(covars);
  at::Tensor v_viewmats =
      viewmats_requires_grad ? at::empty_like(viewmats) : at::empty({0}, means.options());
  at::Tensor view_partials = viewmats_requires_grad
                                 ? at::empty({nb, nc, nn, kViewGradSize}, means.options())
                                 : at::Tensor();
  const int64_t n_gauss = nb * nn, n_cams = nb * nc;
  if (viewmats_requires_grad && nn == 0) v_viewmats.zero_();  // empty sums
  if (n_gauss == 0) return {v_means, v_covars, v_viewmats};

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_bwd", [&] {
    ProjectionBwdArgs<scalar_t> a;
    a.means = means.data_ptr<scalar_t>();
    a.covars = covars.data_ptr<scalar_t>();
    a.viewmats = viewmats.data_ptr<scalar_t>();
    a.ks = ks.data_ptr<scalar_t>();
    a.radii = radii.data_ptr<int32_t>();
    a.conics = conics.data_ptr<scalar_t>();
    a.compensations = with_comp ? compensations.data_ptr<scalar_t>() : nullptr;
    a.v_means2d = v_means2d.data_ptr<scalar_t>();
    a.v_depths = v_depths.data_ptr<scalar_t>();
    a.v_conics = v_conics.data_ptr<scalar_t>();
    a.v_compensations = with_comp ? v_compensations.data_ptr<scalar_t>() : nullptr;
    scalar_t* partials = viewmats_requires_grad ? view_partials.data_ptr<scalar_t>() : nullptr;
    project_bwd_gaussians_kernel<scalar_t><<<blocks_for(n_gauss), kThreads, 0, stream>>>(
        params, nb, nc, nn, a, v_means.data_ptr<scalar_t>(), v_covars.data_ptr<scalar_t>(),
        partials);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (viewmats_requires_grad && n_cams > 0) {
      const auto blocks = static_cast<unsigned int>(std::min(n_cams, kMaxReduceBlocks));
      project_bwd_cameras_kernel<scalar_t><<<blocks, kReduceThreads, 0, stream>>>(
          n_cams, nn, partials, v_viewmats.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {v_means, v_covars, v_viewmats};
}

}  // namespace

TORCH_LIBRARY_IMPL(moegs, CUDA, m) {
  m.impl("project_fwd", &project_fwd_cuda);
  m.impl("project_bwd", &project_bwd_cuda);
}

}  // namespace moegs
