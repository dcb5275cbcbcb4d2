// EWA projection of 3D Gaussians onto an image, and its vector-Jacobian products.
//
// Per Gaussian (mean p, covariance S, world units) and camera (viewmat [R | t],
// intrinsics K, OpenCV axes: x right, y down, z forward):
//
//   p_c   = R p + t                     camera-space mean; depth = p_c.z
//   S_c   = R S R^T                     camera-space covariance
//   m2d   = pi(p_c)                     pixel mean (pixel centres at +0.5)
//   J     = d pi / d p_c (2x3)          local affine approximation of pi
//   S2    = J S_c J^T + eps2d I         2D covariance with a low-pass "blur"
//   comp  = sqrt(max(0, det(J S_c J^T) / det S2))
//   conic = S2^-1                       stored as its upper triangle (a, b, c)
//
// Culling and radii follow gsplat 1.5.3's fused EWA kernel (see
// project_gaussian). Every forward step has its VJP next to it; gradients are
// named v_*. Matrices are row-major, as in vec.h.
#pragma once

#include "moegs/hd.h"
#include "moegs/vec.h"

namespace moegs {

// ------------------------------------------------------------ parameters

// Values of the camera_model argument of the projection ops.
enum class CameraModel : int32_t {
  kPinhole = 0,  // perspective, EWA Jacobian with a clamped field of view
  kOrtho = 1,    // orthographic: m2d = f * p_c.xy + c
  kFisheye = 2,  // equidistant fisheye: pixel radius f * theta, theta = atan2(|xy|, z)
};

MOEGS_HD bool camera_model_supported(int32_t model) {
  return model == static_cast<int32_t>(CameraModel::kPinhole) ||
         model == static_cast<int32_t>(CameraModel::kOrtho) ||
         model == static_cast<int32_t>(CameraModel::kFisheye);
}

// Scalar arguments shared by the forward and backward kernels.
// Real-valued fields are double so float64 kernels see the exact Python values;
// float32 kernels round them once (static_cast<T>), as a float parameter would.
struct ProjectionParams {
  int32_t width;            // image width, pixels
  int32_t height;           // image height, pixels
  double eps2d;             // added to the 2D covariance diagonal, pixels^2
  double near_plane;        // cull if camera z < near_plane
  double far_plane;         // cull if camera z > far_plane
  double radius_clip;       // cull if both pixel radii <= radius_clip
  int32_t camera_model;     // a CameraModel value
  bool calc_compensations;  // forward: output comp (and fold it into the opacity cull)
};

// Bounding-box extent, in standard deviations, when no opacity is known.
// (double, so that static_cast<T> gives the nearest T: 3.33f for float.)
constexpr double kMaxExtend = 3.33;

// Off-screen margin of the pinhole Jacobian clamp, as a fraction of tan(fov/2).
constexpr double kFovMargin = 0.3;

template <typename T>
struct Intrinsics {
  T fx, fy, cx, cy;
};

// From a row-major 3x3 K.
template <typename T>
MOEGS_HD Intrinsics<T> intrinsics_from_k(const T* k) {
  return {k[0], k[4], k[2], k[5]};
}

// World -> camera transform [R | t], read from a row-major 4x4 viewmat (the
// last row is ignored).
template <typename T>
struct Rigid {
  mat3<T> r;
  vec3<T> t;
};

template <typename T>
MOEGS_HD Rigid<T> rigid_from_viewmat(const T* v) {
  Rigid<T> x;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) x.r.m[i][j] = v[4 * i + j];
  }
  x.t = {v[3], v[7], v[11]};
  return x;
}

// ------------------------------------------------------------ 2x2 / 2x3 helpers
// (mat2 has no operators in vec.h; the 2x3 Jacobian type lives here.)

template <typename T>
struct mat23 {
  T m[2][3];
};

template <typename T>
MOEGS_HD mat2<T> mul(const mat2<T>& a, const mat2<T>& b) {
  mat2<T> r;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) r.m[i][j] = a.m[i][0] * b.m[0][j] + a.m[i][1] * b.m[1][j];
  return r;
}

template <typename T>
MOEGS_HD mat2<T> transpose(const mat2<T>& a) {
  mat2<T> r;
  r.m[0][0] = a.m[0][0]; r.m[0][1] = a.m[1][0];
  r.m[1][0] = a.m[0][1]; r.m[1][1] = a.m[1][1];
  return r;
}

// [2x3] * [3x3]
template <typename T>
MOEGS_HD mat23<T> mul(const mat23<T>& a, const mat3<T>& b) {
  mat23<T> r;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      r.m[i][j] = a.m[i][0] * b.m[0][j] + a.m[i][1] * b.m[1][j] + a.m[i][2] * b.m[2][j];
  return r;
}

// [2x2] * [2x3]
template <typename T>
MOEGS_HD mat23<T> mul(const mat2<T>& a, const mat23<T>& b) {
  mat23<T> r;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) r.m[i][j] = a.m[i][0] * b.m[0][j] + a.m[i][1] * b.m[1][j];
  return r;
}

// a b^T for two 2x3 matrices -> 2x2
template <typename T>
MOEGS_HD mat2<T> mul_abt(const mat23<T>& a, const mat23<T>& b) {
  mat2<T> r;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      r.m[i][j] = a.m[i][0] * b.m[j][0] + a.m[i][1] * b.m[j][1] + a.m[i][2] * b.m[j][2];
  return r;
}

// a^T b for two 2x3 matrices -> 3x3
template <typename T>
MOEGS_HD mat3<T> mul_atb(const mat23<T>& a, const mat23<T>& b) {
  mat3<T> r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) r.m[i][j] = a.m[0][i] * b.m[0][j] + a.m[1][i] * b.m[1][j];
  return r;
}

// ------------------------------------------------------------ world -> camera

template <typename T>
MOEGS_HD vec3<T> world_to_cam_point(const Rigid<T>& x, vec3<T> p) {
  return x.r * p + x.t;
}

// p_c = R p + t. Accumulates dL/dR and dL/dt into *v_x; returns dL/dp.
template <typename T>
MOEGS_HD vec3<T> world_to_cam_point_vjp(const Rigid<T>& x, vec3<T> p, vec3<T> v_pc, Rigid<T>* v_x) {
  v_x->r = v_x->r + outer(v_pc, p);
  v_x->t = v_x->t + v_pc;
  return transpose(x.r) * v_pc;
}

template <typename T>
MOEGS_HD mat3<T> world_to_cam_covar(const mat3<T>& r, const mat3<T>& s) {
  return r * s * transpose(r);
}

// S_c = R S R^T with G = dL/dS_c. Accumulates dL/dR = G R S^T + G^T R S into
// *v_r; returns dL/dS = R^T G R (as a full matrix).
template <typename T>
MOEGS_HD mat3<T> world_to_cam_covar_vjp(const mat3<T>& r, const mat3<T>& s, const mat3<T>& v_sc,
                                        mat3<T>* v_r) {
  *v_r = *v_r + v_sc * r * transpose(s) + transpose(v_sc) * r * s;
  return transpose(r) * v_sc * r;
}

// ------------------------------------------------------------ camera models

// Pinhole: the Jacobian is evaluated at x/z, y/z clamped to the image extent
// plus kFovMargin * tan(fov/2) on each side, so Gaussians far off-screen do not
// get huge, badly conditioned footprints.
template <typename T>
struct FovLimits {
  T x_pos, x_neg, y_pos, y_neg;  // allowed x/z in [-x_neg, x_pos], y/z in [-y_neg, y_pos]
};

template <typename T>
MOEGS_HD FovLimits<T> fov_limits(const Intrinsics<T>& k, int32_t width, int32_t height) {
  const T w = static_cast<T>(width), h = static_cast<T>(height);
  const T tan_fovx = T(0.5) * w / k.fx;
  const T tan_fovy = T(0.5) * h / k.fy;
  const T margin = static_cast<T>(kFovMargin);
  return {(w - k.cx) / k.fx + margin * tan_fovx, k.cx / k.fx + margin * tan_fovx,
          (h - k.cy) / k.fy + margin * tan_fovy, k.cy / k.fy + margin * tan_fovy};
}

template <typename T>
MOEGS_HD vec2<T> pinhole_mean(vec3<T> p, const Intrinsics<T>& k) {
  const T rz = T(1) / p.z;
  return {k.fx * p.x * rz + k.cx, k.fy * p.y * rz + k.cy};
}

template <typename T>
MOEGS_HD mat23<T> pinhole_jacobian(vec3<T> p, const Intrinsics<T>& k, const FovLimits<T>& lim) {
  const T rz = T(1) / p.z;
  const T rz2 = rz * rz;
  const T tx = p.z * clamp_max(clamp_min(p.x * rz, -lim.x_neg), lim.x_pos);
  const T ty = p.z * clamp_max(clamp_min(p.y * rz, -lim.y_neg), lim.y_pos);
  mat23<T> j;
  j.m[0][0] = k.fx * rz; j.m[0][1] = T(0); j.m[0][2] = -k.fx * tx * rz2;
  j.m[1][0] = T(0); j.m[1][1] = k.fy * rz; j.m[1][2] = -k.fy * ty * rz2;
  return j;
}

// dL/dp_c from dL/dm2d and dL/dJ for the pinhole model. Where x/z (or y/z) is
// clamped, J's last column depends on z only (tx = z * limit).
template <typename T>
MOEGS_HD vec3<T> pinhole_vjp(vec3<T> p, const Intrinsics<T>& k, const FovLimits<T>& lim,
                             vec2<T> v_m2d, const mat23<T>& v_j) {
  const T rz = T(1) / p.z;
  const T rz2 = rz * rz;
  const T rz3 = rz2 * rz;
  const T u = p.x * rz, w = p.y * rz;
  // Mean: m = f * xy / z + c.
  vec3<T> v = {k.fx * rz * v_m2d.x, k.fy * rz * v_m2d.y,
               -(k.fx * p.x * v_m2d.x + k.fy * p.y * v_m2d.y) * rz2};
  // J[0][0] = fx / z, J[1][1] = fy / z.
  v.z += -k.fx * rz2 * v_j.m[0][0] - k.fy * rz2 * v_j.m[1][1];
  // J[0][2] = -fx * x / z^2 unclamped, -fx * lim / z clamped (same for y).
  if (u <= lim.x_pos && u >= -lim.x_neg) {
    v.x += -k.fx * rz2 * v_j.m[0][2];
    v.z += T(2) * k.fx * p.x * rz3 * v_j.m[0][2];
  } else {
    const T tx = p.z * clamp_max(clamp_min(u, -lim.x_neg), lim.x_pos);
    v.z += k.fx * tx * rz3 * v_j.m[0][2];
  }
  if (w <= lim.y_pos && w >= -lim.y_neg) {
    v.y += -k.fy * rz2 * v_j.m[1][2];
    v.z += T(2) * k.fy * p.y * rz3 * v_j.m[1][2];
  } else {
    const T ty = p.z * clamp_max(clamp_min(w, -lim.y_neg), lim.y_pos);
    v.z += k.fy * ty * rz3 * v_j.m[1][2];
  }
  return v;
}

template <typename T>
MOEGS_HD vec2<T> ortho_mean(vec3<T> p, const Intrinsics<T>& k) {
  return {k.fx * p.x + k.cx, k.fy * p.y + k.cy};
}

template <typename T>
MOEGS_HD mat23<T> ortho_jacobian(const Intrinsics<T>& k) {
  mat23<T> j;
  j.m[0][0] = k.fx; j.m[0][1] = T(0); j.m[0][2] = T(0);
  j.m[1][0] = T(0); j.m[1][1] = k.fy; j.m[1][2] = T(0);
  return j;
}

// J is constant, so only the mean contributes.
template <typename T>
MOEGS_HD vec3<T> ortho_vjp(const Intrinsics<T>& k, vec2<T> v_m2d) {
  return {k.fx * v_m2d.x, k.fy * v_m2d.y, T(0)};
}

// Equidistant fisheye. With rho = |(x, y)| and a small kFisheyeEps keeping the
// optical axis finite (the same regularisation as gsplat 1.5.3):
//   r = rho + eps,  theta = atan2(r, z + eps),
//   m2d = f * (x, y) * theta / r + c.
// The Jacobian is the analytic one of the un-regularised map, written with
//   x2 = x^2 + eps, y2 = y^2, s = x2 + y2, q = 1 / (s + z^2),
//   a = z q / s,  b = atan2(r, z) / (r s):
//   J = [[fx (x2 a + y2 b), fx x y (a - b), -fx x q],
//        [fy x y (a - b),   fy (y2 a + x2 b), -fy y q]].
constexpr double kFisheyeEps = 1e-7;

template <typename T>
MOEGS_HD vec2<T> fisheye_mean(vec3<T> p, const Intrinsics<T>& k) {
  const T eps = static_cast<T>(kFisheyeEps);
  const T r = std::sqrt(p.x * p.x + p.y * p.y) + eps;
  const T theta = std::atan2(r, p.z + eps);
  const T g = theta / r;
  return {k.fx * p.x * g + k.cx, k.fy * p.y * g + k.cy};
}

// The intermediate values of the fisheye Jacobian, shared with its VJP.
template <typename T>
struct FisheyeTerms {
  T r, x2, y2, xy, s, q, theta0, a, b;
};

template <typename T>
MOEGS_HD FisheyeTerms<T> fisheye_terms(vec3<T> p) {
  const T eps = static_cast<T>(kFisheyeEps);
  FisheyeTerms<T> t;
  t.r = std::sqrt(p.x * p.x + p.y * p.y) + eps;
  t.x2 = p.x * p.x + eps;
  t.y2 = p.y * p.y;
  t.xy = p.x * p.y;
  t.s = t.x2 + t.y2;
  t.q = T(1) / (t.s + p.z * p.z);
  t.theta0 = std::atan2(t.r, p.z);
  t.b = t.theta0 / t.r / t.s;
  t.a = p.z * t.q / t.s;
  return t;
}

template <typename T>
MOEGS_HD mat23<T> fisheye_jacobian(vec3<T> p, const Intrinsics<T>& k) {
  const FisheyeTerms<T> t = fisheye_terms(p);
  mat23<T> j;
  j.m[0][0] = k.fx * (t.x2 * t.a + t.y2 * t.b);
  j.m[0][1] = k.fx * t.xy * (t.a - t.b);
  j.m[0][2] = -k.fx * p.x * t.q;
  j.m[1][0] = k.fy * t.xy * (t.a - t.b);
  j.m[1][1] = k.fy * (t.y2 * t.a + t.x2 * t.b);
  j.m[1][2] = -k.fy * p.y * t.q;
  return j;
}

// dL/dp_c from dL/dm2d and dL/dJ for the fisheye model: reverse mode through
// the scalar steps of fisheye_mean and fisheye_jacobian. On the optical axis
// (x = y = 0) the derivative of rho is taken as 0.
template <typename T>
MOEGS_HD vec3<T> fisheye_vjp(vec3<T> p, const Intrinsics<T>& k, vec2<T> v_m2d,
                             const mat23<T>& v_j) {
  const T eps = static_cast<T>(kFisheyeEps);
  const FisheyeTerms<T> t = fisheye_terms(p);
  vec3<T> v = {T(0), T(0), T(0)};
  T v_r = T(0);

  // Mean: m = f * (x, y) * g + c with g = theta / r, theta = atan2(r, z + eps).
  const T ze = p.z + eps;
  const T theta = std::atan2(t.r, ze);
  const T g = theta / t.r;
  const T v_g = k.fx * p.x * v_m2d.x + k.fy * p.y * v_m2d.y;
  v.x += k.fx * g * v_m2d.x;
  v.y += k.fy * g * v_m2d.y;
  const T v_theta = v_g / t.r;
  v_r += -v_g * g / t.r;
  const T den_m = t.r * t.r + ze * ze;
  v_r += v_theta * ze / den_m;
  v.z += -v_theta * t.r / den_m;

  // Jacobian entries.
  const T j00 = v_j.m[0][0], j01 = v_j.m[0][1], j02 = v_j.m[0][2];
  const T j10 = v_j.m[1][0], j11 = v_j.m[1][1], j12 = v_j.m[1][2];
  T v_x2 = k.fx * t.a * j00 + k.fy * t.b * j11;
  T v_y2 = k.fx * t.b * j00 + k.fy * t.a * j11;
  T v_a = k.fx * t.x2 * j00 + k.fy * t.y2 * j11 + (k.fx * j01 + k.fy * j10) * t.xy;
  T v_b = k.fx * t.y2 * j00 + k.fy * t.x2 * j11 - (k.fx * j01 + k.fy * j10) * t.xy;
  const T v_xy = (k.fx * j01 + k.fy * j10) * (t.a - t.b);
  T v_q = -k.fx * p.x * j02 - k.fy * p.y * j12;
  v.x += -k.fx * t.q * j02;
  v.y += -k.fy * t.q * j12;

  // b = theta0 / (r s), theta0 = atan2(r, z).
  T v_s = -v_b * t.b / t.s;
  v_r += -v_b * t.b / t.r;
  const T v_theta0 = v_b / (t.r * t.s);
  const T den_j = t.r * t.r + p.z * p.z;
  v_r += v_theta0 * p.z / den_j;
  v.z += -v_theta0 * t.r / den_j;
  // a = z q / s.
  v.z += v_a * t.q / t.s;
  v_q += v_a * p.z / t.s;
  v_s += -v_a * t.a / t.s;
  // q = 1 / (s + z^2).
  v_s += -t.q * t.q * v_q;
  v.z += T(-2) * p.z * t.q * t.q * v_q;
  // s = x2 + y2; x2 = x^2 + eps; y2 = y^2; xy = x y.
  v_x2 += v_s;
  v_y2 += v_s;
  v.x += T(2) * p.x * v_x2 + p.y * v_xy;
  v.y += T(2) * p.y * v_y2 + p.x * v_xy;
  // r = |(x, y)| + eps.
  const T rho = t.r - eps;
  if (rho > T(0)) {
    v.x += v_r * p.x / rho;
    v.y += v_r * p.y / rho;
  }
  return v;
}

// Pixel mean and Jacobian of a camera-space point under `model` (which the
// caller has validated with camera_model_supported).
template <typename T>
MOEGS_HD void project_point(int32_t model, vec3<T> p, const Intrinsics<T>& k, int32_t width,
                            int32_t height, vec2<T>* m2d, mat23<T>* j) {
  switch (static_cast<CameraModel>(model)) {
    case CameraModel::kOrtho:
      *m2d = ortho_mean(p, k);
      *j = ortho_jacobian(k);
      break;
    case CameraModel::kFisheye:
      *m2d = fisheye_mean(p, k);
      *j = fisheye_jacobian(p, k);
      break;
    case CameraModel::kPinhole:
    default:
      *m2d = pinhole_mean(p, k);
      *j = pinhole_jacobian(p, k, fov_limits(k, width, height));
      break;
  }
}

template <typename T>
MOEGS_HD vec3<T> project_point_vjp(int32_t model, vec3<T> p, const Intrinsics<T>& k, int32_t width,
                                   int32_t height, vec2<T> v_m2d, const mat23<T>& v_j) {
  switch (static_cast<CameraModel>(model)) {
    case CameraModel::kOrtho:
      return ortho_vjp(k, v_m2d);
    case CameraModel::kFisheye:
      return fisheye_vjp(p, k, v_m2d, v_j);
    case CameraModel::kPinhole:
    default:
      return pinhole_vjp(p, k, fov_limits(k, width, height), v_m2d, v_j);
  }
}

// ------------------------------------------------------------ 2D covariance

// S2 = J S_c J^T
template <typename T>
MOEGS_HD mat2<T> project_covar(const mat23<T>& j, const mat3<T>& sc) {
  return mul_abt(mul(j, sc), j);
}

// With G = dL/dS2: accumulates dL/dS_c = J^T G J into *v_sc and returns
// dL/dJ = G J S_c^T + G^T J S_c.
template <typename T>
MOEGS_HD mat23<T> project_covar_vjp(const mat23<T>& j, const mat3<T>& sc, const mat2<T>& v_s2,
                                    mat3<T>* v_sc) {
  *v_sc = *v_sc + mul_atb(j, mul(v_s2, j));
  const mat23<T> a = mul(mul(v_s2, j), transpose(sc));
  const mat23<T> b = mul(mul(transpose(v_s2), j), sc);
  mat23<T> r;
  for (int i = 0; i < 2; ++i)
    for (int c = 0; c < 3; ++c) r.m[i][c] = a.m[i][c] + b.m[i][c];
  return r;
}

template <typename T>
MOEGS_HD T det2(const mat2<T>& a) {
  return a.m[0][0] * a.m[1][1] - a.m[0][1] * a.m[1][0];
}

// Adds eps2d to the diagonal of *cov in place; writes
// comp = sqrt(max(0, det_before / det_after)) and returns det_after.
template <typename T>
MOEGS_HD T add_blur(T eps2d, mat2<T>* cov, T* comp) {
  const T det_orig = det2(*cov);
  cov->m[0][0] += eps2d;
  cov->m[1][1] += eps2d;
  const T det_blur = det2(*cov);
  *comp = std::sqrt(clamp_min(det_orig / det_blur, T(0)));
  return det_blur;
}

// VJP of comp w.r.t. the covariance before the blur (the same as w.r.t. the
// blurred one), given conic = (cov + eps2d I)^-1. With r = comp^2:
//   dr/dcov = (1 - r) conic - eps2d det(conic) I,   dcomp = dr / (2 comp).
// Accumulates into *v_cov. Where comp is 0 (the ratio was clamped) the
// gradient is 0.
template <typename T>
MOEGS_HD void add_blur_vjp(T eps2d, const mat2<T>& conic, T comp, T v_comp, mat2<T>* v_cov) {
  if (!(comp > T(0))) return;
  const T v_r = v_comp / (T(2) * comp);
  const T one_minus_r = T(1) - comp * comp;
  const T eps_det = eps2d * det2(conic);
  v_cov->m[0][0] += v_r * (one_minus_r * conic.m[0][0] - eps_det);
  v_cov->m[0][1] += v_r * (one_minus_r * conic.m[0][1]);
  v_cov->m[1][0] += v_r * (one_minus_r * conic.m[1][0]);
  v_cov->m[1][1] += v_r * (one_minus_r * conic.m[1][1] - eps_det);
}

// Inverse of a 2x2 matrix with a known non-zero determinant.
template <typename T>
MOEGS_HD mat2<T> inverse2(const mat2<T>& a, T det) {
  const T inv = T(1) / det;
  mat2<T> r;
  r.m[0][0] = a.m[1][1] * inv;
  r.m[0][1] = -a.m[0][1] * inv;
  r.m[1][0] = -a.m[1][0] * inv;
  r.m[1][1] = a.m[0][0] * inv;
  return r;
}

// P = A^-1: dL/dA = -P^T (dL/dP) P^T.
template <typename T>
MOEGS_HD mat2<T> inverse2_vjp(const mat2<T>& p, const mat2<T>& v_p) {
  const mat2<T> pt = transpose(p);
  const mat2<T> g = mul(mul(pt, v_p), pt);
  mat2<T> r;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) r.m[i][j] = -g.m[i][j];
  return r;
}

// Symmetric 2x2 from the stored upper triangle (a, b, c).
template <typename T>
MOEGS_HD mat2<T> sym2_from_triu(const T* t) {
  mat2<T> r;
  r.m[0][0] = t[0]; r.m[0][1] = t[1];
  r.m[1][0] = t[1]; r.m[1][1] = t[2];
  return r;
}

// ------------------------------------------------------------ screen extent

// Bounding-box extent in standard deviations: kMaxExtend, tightened for faint
// Gaussians to where their peak alpha falls to kAlphaThreshold,
// sqrt(2 ln(opacity / threshold)) (arXiv:2402.00525, appendix B.2).
template <typename T>
MOEGS_HD T opacity_extend(T opacity) {
  const T e = std::sqrt(T(2) * std::log(opacity / static_cast<T>(kAlphaThreshold)));
  return clamp_max(static_cast<T>(kMaxExtend), e);
}

// ------------------------------------------------------------ one Gaussian, one camera

template <typename T>
struct Projected {
  int32_t radius[2];  // pixels; both 0 when culled
  vec2<T> mean2d;     // pixels
  T depth;            // camera z
  T conic[3];         // upper triangle of the inverse blurred 2D covariance
  T compensation;     // sqrt(det before blur / det after)
};

template <typename T>
MOEGS_HD Projected<T> culled_projection() {
  Projected<T> o;
  o.radius[0] = 0;
  o.radius[1] = 0;
  o.mean2d = {T(0), T(0)};
  o.depth = T(0);
  o.conic[0] = T(0);
  o.conic[1] = T(0);
  o.conic[2] = T(0);
  o.compensation = T(0);
  return o;
}

// Projects one Gaussian into one camera. mean [3], covar [6] (upper triangle),
// viewmat [4, 4], k [3, 3], all row-major; opacity is nullptr when unknown.
// A culled Gaussian comes back all zeros. Culled when:
//   z < near or z > far; det of the blurred 2D covariance <= 0;
//   opacity (times comp when params.calc_compensations) < kAlphaThreshold;
//   both radii <= radius_clip; the box [m2d +- radius] lies entirely off-image.
template <typename T>
MOEGS_HD Projected<T> project_gaussian(const ProjectionParams& params, const T* mean, const T* covar,
                                       const T* viewmat, const T* k, const T* opacity) {
  const Rigid<T> x = rigid_from_viewmat(viewmat);
  const Intrinsics<T> intr = intrinsics_from_k(k);
  const vec3<T> pc = world_to_cam_point(x, vec3<T>{mean[0], mean[1], mean[2]});
  if (pc.z < static_cast<T>(params.near_plane) || pc.z > static_cast<T>(params.far_plane)) {
    return culled_projection<T>();
  }
  const mat3<T> sc = world_to_cam_covar(x.r, sym3_from_triu(covar));

  vec2<T> m2d;
  mat23<T> j;
  project_point(params.camera_model, pc, intr, params.width, params.height, &m2d, &j);
  mat2<T> s2 = project_covar(j, sc);

  T comp;
  const T det = add_blur(static_cast<T>(params.eps2d), &s2, &comp);
  if (!(det > T(0))) return culled_projection<T>();
  const mat2<T> conic = inverse2(s2, det);

  T extend = static_cast<T>(kMaxExtend);
  if (opacity != nullptr) {
    const T o = params.calc_compensations ? *opacity * comp : *opacity;
    if (o < static_cast<T>(kAlphaThreshold)) return culled_projection<T>();
    extend = opacity_extend(o);
  }
  const T rx = std::ceil(extend * std::sqrt(s2.m[0][0]));
  const T ry = std::ceil(extend * std::sqrt(s2.m[1][1]));
  const T clip = static_cast<T>(params.radius_clip);
  if (rx <= clip && ry <= clip) return culled_projection<T>();
  if (m2d.x + rx <= T(0) || m2d.x - rx >= static_cast<T>(params.width) || m2d.y + ry <= T(0) ||
      m2d.y - ry >= static_cast<T>(params.height)) {
    return culled_projection<T>();
  }

  Projected<T> o;
  o.radius[0] = static_cast<int32_t>(rx);
  o.radius[1] = static_cast<int32_t>(ry);
  o.mean2d = m2d;
  o.depth = pc.z;
  o.conic[0] = conic.m[0][0];
  o.conic[1] = conic.m[0][1];
  o.conic[2] = conic.m[1][1];
  o.compensation = comp;
  return o;
}

// Gradients of one visible (Gaussian, camera) pair.
template <typename T>
struct ProjectionGrad {
  vec3<T> v_mean;   // world mean
  T v_covar[6];     // upper-triangle parameters (off-diagonals get both halves)
  Rigid<T> v_view;  // viewmat rows 0..2: [v_r | v_t]
};

// VJP of project_gaussian for a pair it kept visible. conic [3] and
// compensation are its outputs; v_conic [3] is dL/d(a, b, c) of the stored
// triangle; v_comp is nullptr when the compensation has no gradient.
template <typename T>
MOEGS_HD ProjectionGrad<T> project_gaussian_vjp(const ProjectionParams& params, const T* mean,
                                                const T* covar, const T* viewmat, const T* k,
                                                const T* conic, T compensation, vec2<T> v_mean2d,
                                                T v_depth, const T* v_conic, const T* v_comp) {
  const Rigid<T> x = rigid_from_viewmat(viewmat);
  const Intrinsics<T> intr = intrinsics_from_k(k);
  const vec3<T> p = {mean[0], mean[1], mean[2]};
  const mat3<T> s = sym3_from_triu(covar);
  const vec3<T> pc = world_to_cam_point(x, p);
  const mat3<T> sc = world_to_cam_covar(x.r, s);

  // conic = S2^-1; b appears twice in the symmetric matrix, so each copy gets half.
  const mat2<T> p2 = sym2_from_triu(conic);
  mat2<T> v_p2;
  v_p2.m[0][0] = v_conic[0];
  v_p2.m[0][1] = v_conic[1] / T(2);
  v_p2.m[1][0] = v_conic[1] / T(2);
  v_p2.m[1][1] = v_conic[2];
  mat2<T> v_s2 = inverse2_vjp(p2, v_p2);
  if (v_comp != nullptr) {
    add_blur_vjp(static_cast<T>(params.eps2d), p2, compensation, *v_comp, &v_s2);
  }

  // S2 = J S_c J^T and m2d = pi(p_c), J = J(p_c).
  vec2<T> m2d;
  mat23<T> j;
  project_point(params.camera_model, pc, intr, params.width, params.height, &m2d, &j);
  mat3<T> v_sc = zeros3<T>();
  const mat23<T> v_j = project_covar_vjp(j, sc, v_s2, &v_sc);
  vec3<T> v_pc =
      project_point_vjp(params.camera_model, pc, intr, params.width, params.height, v_mean2d, v_j);
  v_pc.z += v_depth;

  ProjectionGrad<T> g;
  g.v_view.r = zeros3<T>();
  g.v_view.t = {T(0), T(0), T(0)};
  g.v_mean = world_to_cam_point_vjp(x, p, v_pc, &g.v_view);
  const mat3<T> v_s = world_to_cam_covar_vjp(x.r, s, v_sc, &g.v_view.r);
  sym3_grad_to_triu(v_s, g.v_covar);
  return g;
}

// ------------------------------------------------------------ backward of one Gaussian

// Per-pair viewmat gradient: rows 0..2 of [v_r | v_t], row-major.
constexpr int kViewGradSize = 12;

// Forward inputs and outputs, and the output cotangents, of the backward.
template <typename T>
struct ProjectionBwdArgs {
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

// Backward of Gaussian g = b * nn + n over the nc cameras of its batch b.
// Writes v_means [3] and v_covars [6] of g, summed over cameras in order, and,
// when view_partials [B, C, N, kViewGradSize] is not nullptr, each pair's
// viewmat partial (zeros for culled pairs). Both backends call this per g, so
// the summation order is the same on each.
template <typename T>
MOEGS_HD void project_bwd_gaussian(const ProjectionParams& params, int64_t nc, int64_t nn,
                                   int64_t g, const ProjectionBwdArgs<T>& a, T* v_means,
                                   T* v_covars, T* view_partials) {
  const int64_t b = g / nn, n = g % nn;
  T vm[3] = {T(0), T(0), T(0)};
  T vc[6] = {T(0), T(0), T(0), T(0), T(0), T(0)};
  for (int64_t c = 0; c < nc; ++c) {
    const int64_t cam = b * nc + c;
    const int64_t i = cam * nn + n;  // (b, c, n)
    T* partial = view_partials != nullptr ? view_partials + kViewGradSize * i : nullptr;
    if (a.radii[2 * i] <= 0 || a.radii[2 * i + 1] <= 0) {
      if (partial != nullptr)
        for (int k = 0; k < kViewGradSize; ++k) partial[k] = T(0);
      continue;
    }
    const ProjectionGrad<T> d = project_gaussian_vjp(
        params, a.means + 3 * g, a.covars + 6 * g, a.viewmats + 16 * cam, a.ks + 9 * cam,
        a.conics + 3 * i, a.compensations != nullptr ? a.compensations[i] : T(0),
        vec2<T>{a.v_means2d[2 * i], a.v_means2d[2 * i + 1]}, a.v_depths[i], a.v_conics + 3 * i,
        a.v_compensations != nullptr ? a.v_compensations + i : nullptr);
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

// Outputs of the forward over flat [B, C, N, ...] arrays.
template <typename T>
struct ProjectFwdOut {
  int32_t* radii;    // [B, C, N, 2]
  T* means2d;        // [B, C, N, 2]
  T* depths;         // [B, C, N]
  T* conics;         // [B, C, N, 3]
  T* compensations;  // [B, C, N] or nullptr
};

// The body of one (scene b, camera c, Gaussian n) element of the forward,
// i = (b * C + c) * N + n, shared by the CPU and CUDA loops.
// means [B, N, 3], covars [B, N, 6], viewmats [B, C, 4, 4], ks [B, C, 3, 3],
// opacities [B, N] or nullptr.
template <typename T>
MOEGS_HD void project_fwd_element(const ProjectionParams& params, int64_t i, int64_t nc,
                                  int64_t nn, const T* means, const T* covars, const T* viewmats,
                                  const T* ks, const T* opacities, const ProjectFwdOut<T>& out) {
  const int64_t b = i / (nc * nn), c = (i / nn) % nc, n = i % nn;
  const int64_t g = b * nn + n;     // Gaussian
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

}  // namespace moegs
