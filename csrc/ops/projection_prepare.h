// Device-agnostic preparation of the EWA projection ops, shared by the CPU and
// CUDA wrappers: argument checks, contiguous inputs, parameters, allocated
// outputs, and the raw-pointer views both backends' kernels take.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <tuple>

#include "moegs/projection.h"
#include "projection_checks.h"

namespace moegs {

// Outputs of the forward kernels.

struct ProjectFwdPrepared {
  int64_t nb, nc, nn;      // B, C, N
  ProjectionParams params;
  at::Tensor means;        // [B, N, 3] contiguous
  at::Tensor covars;       // [B, N, 6] contiguous
  at::Tensor viewmats;     // [B, C, 4, 4] contiguous
  at::Tensor ks;           // [B, C, 3, 3] contiguous
  at::Tensor opacities;    // [B, N] contiguous, undefined when not given
  at::Tensor radii;        // [B, C, N, 2] int32 output
  at::Tensor means2d;      // [B, C, N, 2] output
  at::Tensor depths;       // [B, C, N] output
  at::Tensor conics;       // [B, C, N, 3] output
  at::Tensor compensations;  // [B, C, N] output, or [0] without calc_compensations

  template <typename T>
  const T* opacities_ptr() const {
    return opacities.defined() ? opacities.data_ptr<T>() : nullptr;
  }

  template <typename T>
  ProjectFwdOut<T> out() const {
    return {radii.data_ptr<int32_t>(), means2d.data_ptr<T>(), depths.data_ptr<T>(),
            conics.data_ptr<T>(),
            params.calc_compensations ? compensations.data_ptr<T>() : nullptr};
  }

  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs() const {
    return {radii, means2d, depths, conics, compensations};
  }
};

inline ProjectFwdPrepared prepare_project_fwd(
    const char* op, const at::Tensor& means, const at::Tensor& covars, const at::Tensor& viewmats,
    const at::Tensor& ks, const std::optional<at::Tensor>& opacities, int64_t width,
    int64_t height, double eps2d, double near_plane, double far_plane, double radius_clip,
    bool calc_compensations, int64_t camera_model) {
  ProjectFwdPrepared p;
  std::tie(p.nb, p.nc, p.nn) = check_project_fwd_inputs(op, means, covars, viewmats, ks,
                                                        opacities, width, height, camera_model);
  p.means = means.contiguous();
  p.covars = covars.contiguous();
  p.viewmats = viewmats.contiguous();
  p.ks = ks.contiguous();
  p.opacities = opacities.has_value() ? opacities->contiguous() : at::Tensor();

  p.params = ProjectionParams{static_cast<int32_t>(width), static_cast<int32_t>(height),
                              eps2d, near_plane, far_plane, radius_clip,
                              static_cast<int32_t>(camera_model), calc_compensations};
  const auto opts = p.means.options();
  const int64_t nb = p.nb, nc = p.nc, nn = p.nn;
  p.radii = at::empty({nb, nc, nn, 2}, opts.dtype(at::kInt));
  p.means2d = at::empty({nb, nc, nn, 2}, opts);
  p.depths = at::empty({nb, nc, nn}, opts);
  p.conics = at::empty({nb, nc, nn, 3}, opts);
  p.compensations = calc_compensations ? at::empty({nb, nc, nn}, opts) : at::empty({0}, opts);
  return p;
}

struct ProjectBwdPrepared {
  int64_t nb, nc, nn;  // B, C, N
  ProjectionParams params;
  bool with_comp;               // the compensation VJP runs
  bool viewmats_requires_grad;
  at::Tensor means;             // [B, N, 3] contiguous
  at::Tensor covars;            // [B, N, 6] contiguous
  at::Tensor viewmats;          // [B, C, 4, 4] contiguous
  at::Tensor ks;                // [B, C, 3, 3] contiguous
  at::Tensor radii;             // [B, C, N, 2] int32 contiguous
  at::Tensor conics;            // [B, C, N, 3] contiguous
  at::Tensor compensations;     // [B, C, N] contiguous, undefined without with_comp
  at::Tensor v_means2d;         // [B, C, N, 2] contiguous
  at::Tensor v_depths;          // [B, C, N] contiguous
  at::Tensor v_conics;          // [B, C, N, 3] contiguous
  at::Tensor v_compensations;   // [B, C, N] contiguous, undefined without with_comp
  at::Tensor v_means;           // [B, N, 3] output
  at::Tensor v_covars;          // [B, N, 6] output
  at::Tensor v_viewmats;        // [B, C, 4, 4] output, or [0] without viewmats_requires_grad
  at::Tensor view_partials;     // [B, C, N, kViewGradSize] scratch, undefined without it

  template <typename T>
  ProjectionBwdArgs<T> args() const {
    ProjectionBwdArgs<T> a;
    a.means = means.data_ptr<T>();
    a.covars = covars.data_ptr<T>();
    a.viewmats = viewmats.data_ptr<T>();
    a.ks = ks.data_ptr<T>();
    a.radii = radii.data_ptr<int32_t>();
    a.conics = conics.data_ptr<T>();
    a.compensations = with_comp ? compensations.data_ptr<T>() : nullptr;
    a.v_means2d = v_means2d.data_ptr<T>();
    a.v_depths = v_depths.data_ptr<T>();
    a.v_conics = v_conics.data_ptr<T>();
    a.v_compensations = with_comp ? v_compensations.data_ptr<T>() : nullptr;
    return a;
  }

  template <typename T>
  T* view_partials_ptr() const {
    return viewmats_requires_grad ? view_partials.data_ptr<T>() : nullptr;
  }

  std::tuple<at::Tensor, at::Tensor, at::Tensor> outputs() const {
    return {v_means, v_covars, v_viewmats};
  }
};

inline ProjectBwdPrepared prepare_project_bwd(
    const char* op, const at::Tensor& means, const at::Tensor& covars, const at::Tensor& viewmats,
    const at::Tensor& ks, int64_t width, int64_t height, double eps2d, int64_t camera_model,
    const at::Tensor& radii, const at::Tensor& conics,
    const std::optional<at::Tensor>& compensations, const at::Tensor& v_means2d,
    const at::Tensor& v_depths, const at::Tensor& v_conics,
    const std::optional<at::Tensor>& v_compensations, bool viewmats_requires_grad) {
  ProjectBwdPrepared p;
  std::tie(p.nb, p.nc, p.nn) = check_project_bwd_inputs(
      op, means, covars, viewmats, ks, width, height, camera_model, radii, conics, compensations,
      v_means2d, v_depths, v_conics, v_compensations);

  p.means = means.contiguous();
  p.covars = covars.contiguous();
  p.viewmats = viewmats.contiguous();
  p.ks = ks.contiguous();
  p.radii = radii.contiguous();
  p.conics = conics.contiguous();
  p.v_means2d = v_means2d.contiguous();
  p.v_depths = v_depths.contiguous();
  p.v_conics = v_conics.contiguous();
  // The compensation VJP needs both the value and its cotangent.
  p.with_comp = v_compensations.has_value();
  p.compensations = p.with_comp ? compensations->contiguous() : at::Tensor();
  p.v_compensations = p.with_comp ? v_compensations->contiguous() : at::Tensor();

  // near/far/radius_clip only shape the forward's culling, which radii record.
  p.params = ProjectionParams{static_cast<int32_t>(width), static_cast<int32_t>(height),
                              eps2d, 0.0, 0.0, 0.0, static_cast<int32_t>(camera_model),
                              p.with_comp};
  p.viewmats_requires_grad = viewmats_requires_grad;
  const auto opts = p.means.options();
  p.v_means = at::empty_like(p.means);
  p.v_covars = at::empty_like(p.covars);
  p.v_viewmats = viewmats_requires_grad ? at::empty_like(p.viewmats) : at::empty({0}, opts);
  p.view_partials = viewmats_requires_grad
                        ? at::empty({p.nb, p.nc, p.nn, kViewGradSize}, opts)
                        : at::Tensor();
  return p;
}

}  // namespace moegs
