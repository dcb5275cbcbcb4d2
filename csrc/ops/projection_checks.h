// Argument checks of the EWA projection ops, shared by the CPU and CUDA
// wrappers. Every tensor must have the dtype and device of means.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <tuple>

#include "moegs/checks.h"
#include "moegs/projection.h"

namespace moegs {

inline void project_check_shape(const char* op, const at::Tensor& x, const char* name,
                                at::IntArrayRef want) {
  MOEGS_CHECK(op, x.sizes() == want, name, " must have shape ", want, ", got ", x.sizes());
}

inline void project_check_like_means(const char* op, const at::Tensor& x, const char* name,
                                     const at::Tensor& means) {
  MOEGS_CHECK(op, x.scalar_type() == means.scalar_type(), name, " must have the dtype of means (",
              means.scalar_type(), "), got ", x.scalar_type());
  MOEGS_CHECK(op, x.device() == means.device(), name, " is on ", x.device(),
              " but means is on ", means.device());
}

// means [B, N, 3], covars [B, N, 6], viewmats [B, C, 4, 4], Ks [B, C, 3, 3] and
// the scalar arguments both directions share; returns (B, C, N).
inline std::tuple<int64_t, int64_t, int64_t> check_camera_inputs(
    const char* op, const at::Tensor& means, const at::Tensor& covars, const at::Tensor& viewmats,
    const at::Tensor& ks, int64_t width, int64_t height, int64_t camera_model) {
  MOEGS_CHECK_FLOAT(op, means);
  MOEGS_CHECK(op, means.dim() == 3 && means.size(2) == 3, "means must be [B, N, 3], got ",
              means.sizes());
  MOEGS_CHECK(op, viewmats.dim() == 4, "viewmats must be [B, C, 4, 4], got ", viewmats.sizes());
  const int64_t b = means.size(0), n = means.size(1), c = viewmats.size(1);
  project_check_shape(op, covars, "covars [B, N, 6]", {b, n, 6});
  project_check_shape(op, viewmats, "viewmats [B, C, 4, 4]", {b, c, 4, 4});
  project_check_shape(op, ks, "Ks [B, C, 3, 3]", {b, c, 3, 3});
  project_check_like_means(op, covars, "covars", means);
  project_check_like_means(op, viewmats, "viewmats", means);
  project_check_like_means(op, ks, "Ks", means);
  MOEGS_CHECK(op, width > 0 && height > 0 && width <= INT32_MAX && height <= INT32_MAX,
              "image size must be positive, got width ", width, " and height ", height);
  MOEGS_CHECK(op,
              camera_model >= 0 && camera_model <= INT32_MAX &&
                  camera_model_supported(static_cast<int32_t>(camera_model)),
              "unsupported camera_model ", camera_model, " (0 = pinhole, 1 = orthographic, 2 = fisheye)");
  return {b, c, n};
}

// The forward's tensors, opacities [B, N] or none; returns (B, C, N).
inline std::tuple<int64_t, int64_t, int64_t> check_project_fwd_inputs(
    const char* op, const at::Tensor& means, const at::Tensor& covars, const at::Tensor& viewmats,
    const at::Tensor& ks, const std::optional<at::Tensor>& opacities, int64_t width,
    int64_t height, int64_t camera_model) {
  const auto dims = check_camera_inputs(op, means, covars, viewmats, ks, width, height,
                                        camera_model);
  if (opacities.has_value()) {
    const auto [nb, nc, nn] = dims;
    project_check_shape(op, *opacities, "opacities [B, N]", {nb, nn});
    project_check_like_means(op, *opacities, "opacities", means);
  }
  return dims;
}

// The backward's tensors: the forward inputs, radii [B, C, N, 2] int32,
// conics [B, C, N, 3], compensations [B, C, N] or none, and the cotangents
// v_means2d [B, C, N, 2], v_depths [B, C, N], v_conics [B, C, N, 3],
// v_compensations [B, C, N] or none (needs compensations); returns (B, C, N).
inline std::tuple<int64_t, int64_t, int64_t> check_project_bwd_inputs(
    const char* op, const at::Tensor& means, const at::Tensor& covars, const at::Tensor& viewmats,
    const at::Tensor& ks, int64_t width, int64_t height, int64_t camera_model,
    const at::Tensor& radii, const at::Tensor& conics,
    const std::optional<at::Tensor>& compensations, const at::Tensor& v_means2d,
    const at::Tensor& v_depths, const at::Tensor& v_conics,
    const std::optional<at::Tensor>& v_compensations) {
  const auto dims = check_camera_inputs(op, means, covars, viewmats, ks, width, height,
                                        camera_model);
  const auto [nb, nc, nn] = dims;
  MOEGS_CHECK_DTYPE(op, radii, at::kInt);
  project_check_shape(op, radii, "radii [B, C, N, 2]", {nb, nc, nn, 2});
  project_check_shape(op, conics, "conics [B, C, N, 3]", {nb, nc, nn, 3});
  project_check_shape(op, v_means2d, "v_means2d [B, C, N, 2]", {nb, nc, nn, 2});
  project_check_shape(op, v_depths, "v_depths [B, C, N]", {nb, nc, nn});
  project_check_shape(op, v_conics, "v_conics [B, C, N, 3]", {nb, nc, nn, 3});
  project_check_like_means(op, conics, "conics", means);
  project_check_like_means(op, v_means2d, "v_means2d", means);
  project_check_like_means(op, v_depths, "v_depths", means);
  project_check_like_means(op, v_conics, "v_conics", means);
  MOEGS_CHECK(op, radii.device() == means.device(), "radii is on ", radii.device(),
              " but means is on ", means.device());
  if (v_compensations.has_value()) {
    MOEGS_CHECK(op, compensations.has_value(),
                "v_compensations needs the forward's compensations");
    project_check_shape(op, *v_compensations, "v_compensations [B, C, N]", {nb, nc, nn});
    project_check_like_means(op, *v_compensations, "v_compensations", means);
  }
  if (compensations.has_value()) {
    project_check_shape(op, *compensations, "compensations [B, C, N]", {nb, nc, nn});
    project_check_like_means(op, *compensations, "compensations", means);
  }
  return dims;
}

}  // namespace moegs
