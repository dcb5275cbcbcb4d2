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

namespace moegs {
namespace {

constexpr int64_t kGrain = 1024;

// Per-pair viewmat partial: rows 0..2 of [v_r | v_t], row-major.
constexpr int64_t kViewGradSize = 12;

void check_shape(const char* op, const at::Tensor& x, const char* name, at::IntArrayRef want) {
  MOEGS_CHECK(op, x.sizes() == want, name, " must have shape ", want, ", got ", x.sizes());
}

void check_floating_like(const char* op, const at::Tensor& x, const char* name,
                         const at::Tensor& means) {
  MOEGS_CHECK(op, x.scalar_type() == means.scalar_type(), name, " must have the dtype of means (",
              means.scalar_type(), "), got ", x.scalar_type());
  MOEGS_CHECK(op, x.device() == means.device(), name, " is on ", x.device(),
              " but means is on ", means.device());
}

// Shapes of the forward inputs; returns (B, C, N).
std::tuple<int64_t, int64_t, int64_t> check_camera_inputs(const char* op, const at::Tensor& means,
                                                          const at::Tensor& covars,
                                                          const at::Tensor& viewmats,
                                                          const at::Tensor& ks, int64_t width,
                                                          int64_t height, int64_t camera_model) {
  MOEGS_CHECK_FLOAT(op, means);
  MOEGS_CHECK(op, means.dim() == 3 && means.size(2) == 3, "means must be [B, N, 3], got ",
              means.sizes());
  MOEGS_CHECK(op, viewmats.dim() == 4, "viewmats must be [B, C, 4, 4], got ", viewmats.sizes());
  const int64_t b = means.size(0), n = means.size(1), c = viewmats.size(1);
  check_shape(op, covars, "covars [B, N, 6]", {b, n, 6});
  check_shape(op, viewmats, "viewmats [B, C, 4, 4]", {b, c, 4, 4});
  check_shape(op, ks, "Ks [B, C, 3, 3]", {b, c, 3, 3});
  check_floating_like(op, covars, "covars", means);
  check_floating_like(op, viewmats, "viewmats", means);
  check_floating_like(op, ks, "Ks", means);
  MOEGS_CHECK(op, width > 0 && height > 0 && width <= INT32_MAX && height <= INT32_MAX,
              "image size must be positive, got width ", width, " and height ", height);
  MOEGS_CHECK(op,
              camera_model >= 0 && camera_model <= INT32_MAX &&
                  camera_model_supported(static_cast<int32_t>(camera_model)),
              "unsupported camera_model ", camera_model, " (0 = pinhole, 1 = orthographic)");
  return {b, c, n};
}

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
  const auto [nb, nc, nn] = check_camera_inputs(op, means_in, covars_in, viewmats_in, ks_in, width,
                                                height, camera_model);
  if (opacities_in.has_value()) {
    check_shape(op, *opacities_in, "opacities [B, N]", {nb, nn});
    check_floating_like(op, *opacities_in, "opacities", means_in);
  }
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

// Forward inputs and outputs, and the output cotangents, of the backward.
template <typename T>
struct BwdArgs {
  const T* means;            // [B, N, 3]
  const T* covars;           // [B, N, 6]
  const T* viewmats;         // [B, C, 4, 4]
  const T* ks;               // [B, C, 3, 3]
  const int32_t* radii;      // [B, C, N, 2]
  const T* conics;           // [B, C, N, 3]
  const T* compensations;    // [B, C, N] or nullptr
  const T* v_means2d;        // [B, C, N, 2]
  const T* v_depths;         // [B, C, N]
  const T* v_conics;         // [B, C, N, 3]
  const T* v_compensations;  // [B, C, N] or nullptr
};

// Pass 1, over (b, n): v_means, v_covars summed over c in order, and each
// pair's viewmat partial into view_partials [B, C, N, 12] (when not nullptr).
template <typename T>
void project_bwd_gaussians(const ProjectionParams& params, int64_t nb, int64_t nc, int64_t nn,
                           const BwdArgs<T>& a, T* v_means, T* v_covars, T* view_partials) {
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, nc));
  at::parallel_for(0, nb * nn, grain, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const int64_t b = g / nn, n = g % nn;
      T vm[3] = {T(0), T(0), T(0)};
      T vc[6] = {T(0), T(0), T(0), T(0), T(0), T(0)};
      for (int64_t c = 0; c < nc; ++c) {
        const int64_t cam = b * nc + c;
        const int64_t i = cam * nn + n;  // (b, c, n)
        T* partial = view_partials != nullptr ? view_partials + kViewGradSize * i : nullptr;
        if (a.radii[2 * i] <= 0 || a.radii[2 * i + 1] <= 0) {
          if (partial != nullptr) std::fill(partial, partial + kViewGradSize, T(0));
          continue;
        }
        const ProjectionGrad<T> d = project_gaussian_vjp(
            params, a.means + 3 * g, a.covars + 6 * g, a.viewmats + 16 * cam, a.ks + 9 * cam,
            a.conics + 3 * i, a.compensations != nullptr ? a.compensations[i] : T(0),
            vec2<T>{a.v_means2d[2 * i], a.v_means2d[2 * i + 1]}, a.v_depths[i],
            a.v_conics + 3 * i, a.v_compensations != nullptr ? a.v_compensations + i : nullptr);
        vm[0] += d.v_mean.x;
        vm[1] += d.v_mean.y;
        vm[2] += d.v_mean.z;
        for (int k = 0; k < 6; ++k) vc[k] += d.v_covar[k];
        if (partial != nullptr) {
          const T t[3] = {d.v_view.t.x, d.v_view.t.y, d.v_view.t.z};
          for (int r = 0; r < 3; ++r) {
            for (int k = 0; k < 3; ++k) partial[4 * r + k] = d.v_view.r.m[r][k];
            partial[4 * r + 3] = t[r];
          }
        }
      }
      for (int k = 0; k < 3; ++k) v_means[3 * g + k] = vm[k];
      for (int k = 0; k < 6; ++k) v_covars[6 * g + k] = vc[k];
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
  const auto [nb, nc, nn] = check_camera_inputs(op, means_in, covars_in, viewmats_in, ks_in, width,
                                                height, camera_model);
  MOEGS_CHECK_DTYPE(op, radii_in, at::kInt);
  check_shape(op, radii_in, "radii [B, C, N, 2]", {nb, nc, nn, 2});
  check_shape(op, conics_in, "conics [B, C, N, 3]", {nb, nc, nn, 3});
  check_shape(op, v_means2d_in, "v_means2d [B, C, N, 2]", {nb, nc, nn, 2});
  check_shape(op, v_depths_in, "v_depths [B, C, N]", {nb, nc, nn});
  check_shape(op, v_conics_in, "v_conics [B, C, N, 3]", {nb, nc, nn, 3});
  check_floating_like(op, conics_in, "conics", means_in);
  check_floating_like(op, v_means2d_in, "v_means2d", means_in);
  check_floating_like(op, v_depths_in, "v_depths", means_in);
  check_floating_like(op, v_conics_in, "v_conics", means_in);
  MOEGS_CHECK(op, radii_in.device() == means_in.device(), "radii is on ", radii_in.device(),
              " but means is on ", means_in.device());
  if (v_compensations_in.has_value()) {
    MOEGS_CHECK(op, compensations_in.has_value(),
                "v_compensations needs the forward's compensations");
    check_shape(op, *v_compensations_in, "v_compensations [B, C, N]", {nb, nc, nn});
    check_floating_like(op, *v_compensations_in, "v_compensations", means_in);
  }
  if (compensations_in.has_value()) {
    check_shape(op, *compensations_in, "compensations [B, C, N]", {nb, nc, nn});
    check_floating_like(op, *compensations_in, "compensations", means_in);
  }

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
    BwdArgs<scalar_t> a;
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
