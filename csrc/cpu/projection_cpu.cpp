// CPU loops for the EWA projection ops: one (Gaussian, camera) pair per
// iteration, math in moegs/projection.h.
//
// The backward is deterministic for any thread count: v_means / v_covars are
// summed over cameras inside one iteration over (b, n), and v_viewmats from
// per-pair partials summed over n in order, one camera per iteration.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "moegs/checks.h"
#include "moegs/projection.h"
#include "../ops/projection_prepare.h"

namespace moegs {
namespace {

constexpr int64_t kGrain = 1024;

template <typename T>
void project_fwd_kernel(const ProjectionParams& params, int64_t nb, int64_t nc, int64_t nn,
                        const T* means, const T* covars, const T* viewmats, const T* ks,
                        const T* opacities, const ProjectFwdOut<T>& out) {
  at::parallel_for(0, nb * nc * nn, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      project_fwd_element(params, i, nc, nn, means, covars, viewmats, ks, opacities, out);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> project_fwd_cpu(
    const at::Tensor& means_in, const at::Tensor& covars_in, const at::Tensor& viewmats_in,
    const at::Tensor& ks_in, const std::optional<at::Tensor>& opacities_in, int64_t width,
    int64_t height, double eps2d, double near_plane, double far_plane, double radius_clip,
    bool calc_compensations, int64_t camera_model) {
  const ProjectFwdPrepared p = prepare_project_fwd(
      "project_fwd", means_in, covars_in, viewmats_in, ks_in, opacities_in, width, height, eps2d,
      near_plane, far_plane, radius_clip, calc_compensations, camera_model);
  AT_DISPATCH_FLOATING_TYPES(p.means.scalar_type(), "project_fwd", [&] {
    project_fwd_kernel<scalar_t>(p.params, p.nb, p.nc, p.nn, p.means.data_ptr<scalar_t>(),
                                 p.covars.data_ptr<scalar_t>(), p.viewmats.data_ptr<scalar_t>(),
                                 p.ks.data_ptr<scalar_t>(), p.opacities_ptr<scalar_t>(),
                                 p.out<scalar_t>());
  });
  return p.outputs();
}

// Pass 1, over (b, n): v_means, v_covars summed over c in order, and each
// pair's viewmat partial into view_partials [B, C, N, 12] (when not nullptr).
template <typename T>
void project_bwd_gaussians(const ProjectionParams& params, int64_t nb, int64_t nc, int64_t nn,
                           const ProjectionBwdArgs<T>& a, T* v_means, T* v_covars,
                           T* view_partials) {
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, nc));
  at::parallel_for(0, nb * nn, grain, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      project_bwd_gaussian(params, nc, nn, g, a, v_means, v_covars, view_partials);
    }
  });
}

// Pass 2, over (b, c): v_viewmats rows 0..2 = sum over n (in order) of the
// partials; row 3 stays 0.
template <typename T>
void project_bwd_cameras(int64_t nb, int64_t nc, int64_t nn, const T* view_partials,
                         T* v_viewmats) {
  at::parallel_for(0, nb * nc, 1, [&](int64_t begin, int64_t end) {
    for (int64_t cam = begin; cam < end; ++cam) {
      T acc[kViewGradSize] = {};
      const T* p = view_partials + kViewGradSize * cam * nn;
      for (int64_t n = 0; n < nn; ++n, p += kViewGradSize) {
        for (int64_t k = 0; k < kViewGradSize; ++k) acc[k] += p[k];
      }
      T* out = v_viewmats + 16 * cam;
      for (int64_t k = 0; k < kViewGradSize; ++k) out[k] = acc[k];
      for (int64_t k = kViewGradSize; k < 16; ++k) out[k] = T(0);
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> project_bwd_cpu(
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
  AT_DISPATCH_FLOATING_TYPES(p.means.scalar_type(), "project_bwd", [&] {
    scalar_t* partials = p.view_partials_ptr<scalar_t>();
    project_bwd_gaussians<scalar_t>(p.params, p.nb, p.nc, p.nn, p.args<scalar_t>(),
                                    p.v_means.data_ptr<scalar_t>(),
                                    p.v_covars.data_ptr<scalar_t>(), partials);
    if (p.viewmats_requires_grad) {
      project_bwd_cameras<scalar_t>(p.nb, p.nc, p.nn, partials,
                                    p.v_viewmats.data_ptr<scalar_t>());
    }
  });
  return p.outputs();
}

}  // namespace

TORCH_LIBRARY_IMPL(moegs, CPU, m) {
  m.impl("project_fwd", &project_fwd_cpu);
  m.impl("project_bwd", &project_bwd_cpu);
}

}  // namespace moegs
