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
#include "../ops/projection_checks.h"

namespace moegs {
namespace {

constexpr int64_t kGrain = 1024;

template <typename T>
void project_fwd_kernel(const ProjectionParams& params, int64_t nb, int64_t nc, int64_t nn,
                        const T* means, const T* covars, const T* viewmats, const T* ks,
                        const T* opacities, int32_t* radii, T* means2d, T* depths, T* conics,
                        T* compensations) {
  at::parallel_for(0, nb * nc * nn, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / (nc * nn), c = (i / nn) % nc, n = i % nn;
      const int64_t g = b * nn + n;     // Gaussian
      const int64_t cam = b * nc + c;  // camera
      const Projected<T> o = project_gaussian(params, means + 3 * g, covars + 6 * g,
                                              viewmats + 16 * cam, ks + 9 * cam,
                                              opacities != nullptr ? opacities + g : nullptr);
      radii[2 * i] = o.radius[0];
      radii[2 * i + 1] = o.radius[1];
      means2d[2 * i] = o.mean2d.x;
      means2d[2 * i + 1] = o.mean2d.y;
      depths[i] = o.depth;
      conics[3 * i] = o.conic[0];
      conics[3 * i + 1] = o.conic[1];
      conics[3 * i + 2] = o.conic[2];
      if (compensations != nullptr) compensations[i] = o.compensation;
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> project_fwd_cpu(
    const at::Tensor& means_in, const at::Tensor& covars_in, const at::Tensor& viewmats_in,
    const at::Tensor& ks_in, const std::optional<at::Tensor>& opacities_in, int64_t width,
    int64_t height, double eps2d, double near_plane, double far_plane, double radius_clip,
    bool calc_compensations, int64_t camera_model) {
  const char* op = "project_fwd";
  const auto [nb, nc, nn] = check_project_fwd_inputs(op, means_in, covars_in, viewmats_in, ks_in,
                                                     opacities_in, width, height, camera_model);
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

  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_fwd", [&] {
    project_fwd_kernel<scalar_t>(
        params, nb, nc, nn, means.data_ptr<scalar_t>(), covars.data_ptr<scalar_t>(),
        viewmats.data_ptr<scalar_t>(), ks.data_ptr<scalar_t>(),
        opacities.defined() ? opacities.data_ptr<scalar_t>() : nullptr, radii.data_ptr<int32_t>(),
        means2d.data_ptr<scalar_t>(), depths.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(),
        calc_compensations ? compensations.data_ptr<scalar_t>() : nullptr);
  });
  return {radii, means2d, depths, conics, compensations};
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
  const char* op = "project_bwd";
  const auto [nb, nc, nn] = check_project_bwd_inputs(
      op, means_in, covars_in, viewmats_in, ks_in, width, height, camera_model, radii_in,
      conics_in, compensations_in, v_means2d_in, v_depths_in, v_conics_in, v_compensations_in);

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
    project_bwd_gaussians<scalar_t>(params, nb, nc, nn, a, v_means.data_ptr<scalar_t>(),
                                    v_covars.data_ptr<scalar_t>(), partials);
    if (viewmats_requires_grad) {
      project_bwd_cameras<scalar_t>(nb, nc, nn, partials, v_viewmats.data_ptr<scalar_t>());
    }
  });
  return {v_means, v_covars, v_viewmats};
}

}  // namespace

TORCH_LIBRARY_IMPL(moegs, CPU, m) {
  m.impl("project_fwd", &project_fwd_cpu);
  m.impl("project_bwd", &project_bwd_cpu);
}

}  // namespace moegs
