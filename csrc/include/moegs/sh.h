// View-dependent colour from real spherical harmonics, and its vector-Jacobian
// product.
//
//   u      = d / max(|d|, eps)                      (view direction, normalised here)
//   raw_c  = sum_k Y_k(u) coeffs[k][c],  k < (degree + 1)^2
//   color  = max(raw + 1/2, 0)
//
// Y_k is the real SH basis of 3DGS / gsplat (Sloan, "Efficient Spherical
// Harmonic Evaluation", JCGT 2013), with the same constants and signs: for
// degree 1, (Y_1, Y_2, Y_3) = C1 (-y, z, -x). Degrees 0..3 (at most 16 bases).
#pragma once

#include "moegs/hd.h"
#include "moegs/vec.h"

namespace moegs {

constexpr int kShMaxDegree = 3;
constexpr int kShMaxBases = (kShMaxDegree + 1) * (kShMaxDegree + 1);

// Norms at or below this are treated as this (as torch.nn.functional.normalize).
constexpr double kShDirEps = 1e-12;

MOEGS_HD constexpr int sh_num_bases(int degree) { return (degree + 1) * (degree + 1); }

// Y_0 .. Y_{(degree+1)^2 - 1} at the unit direction u.
template <typename T>
MOEGS_HD void sh_basis(int degree, vec3<T> u, T* y) {
  y[0] = T(0.2820947917738781);
  if (degree < 1) return;
  const T x = u.x, yy = u.y, z = u.z;
  const T c1 = T(0.4886025119029199);
  y[1] = -c1 * yy;
  y[2] = c1 * z;
  y[3] = -c1 * x;
  if (degree < 2) return;
  const T xx = x * x, y2 = yy * yy, zz = z * z;
  y[4] = T(1.0925484305920792) * x * yy;
  y[5] = T(-1.0925484305920792) * yy * z;
  y[6] = T(0.9461746957575601) * zz - T(0.3153915652525201);
  y[7] = T(-1.0925484305920792) * x * z;
  y[8] = T(0.5462742152960395) * (xx - y2);
  if (degree < 3) return;
  const T q = T(-2.285228997322329) * zz + T(0.4570457994644658);
  y[9] = T(-0.5900435899266435) * (T(3) * xx * yy - y2 * yy);
  y[10] = T(2.890611442640554) * x * yy * z;
  y[11] = q * yy;
  y[12] = z * (T(1.865881662950577) * zz - T(1.119528997770346));
  y[13] = q * x;
  y[14] = T(1.445305721320277) * z * (xx - y2);
  y[15] = T(-0.5900435899266435) * (xx * x - T(3) * x * y2);
}

// dL/du given dL/dY_k (v_y, one entry per basis), for the unit direction u,
// treating u's components as independent (the sphere constraint is handled by
// sh_dir_normalize_vjp).
template <typename T>
MOEGS_HD vec3<T> sh_basis_vjp(int degree, vec3<T> u, const T* v_y) {
  vec3<T> g = {T(0), T(0), T(0)};
  if (degree < 1) return g;
  const T x = u.x, yy = u.y, z = u.z;
  const T c1 = T(0.4886025119029199);
  g.x += -c1 * v_y[3];
  g.y += -c1 * v_y[1];
  g.z += c1 * v_y[2];
  if (degree < 2) return g;
  const T b = T(1.0925484305920792);  // = 2 * 0.5462742152960395
  g.x += b * yy * v_y[4] - b * z * v_y[7] + b * x * v_y[8];
  g.y += b * x * v_y[4] - b * z * v_y[5] - b * yy * v_y[8];
  g.z += -b * yy * v_y[5] + T(2 * 0.9461746957575601) * z * v_y[6] - b * x * v_y[7];
  if (degree < 3) return g;
  const T xx = x * x, y2 = yy * yy, zz = z * z;
  const T d = T(-0.5900435899266435);
  const T e = T(1.445305721320277);
  const T q = T(-2.285228997322329) * zz + T(0.4570457994644658);
  const T dq = T(-2 * 2.285228997322329) * z;  // dq/dz
  // Y_9 = d (3x^2 y - y^3), Y_10 = 2e xyz, Y_11 = q y, Y_12 = z(G z^2 - H),
  // Y_13 = q x, Y_14 = e z (x^2 - y^2), Y_15 = d (x^3 - 3 x y^2)
  g.x += d * T(6) * x * yy * v_y[9] + T(2) * e * yy * z * v_y[10] + q * v_y[13] +
         T(2) * e * z * x * v_y[14] + d * T(3) * (xx - y2) * v_y[15];
  g.y += d * T(3) * (xx - y2) * v_y[9] + T(2) * e * x * z * v_y[10] + q * v_y[11] -
         T(2) * e * z * yy * v_y[14] - d * T(6) * x * yy * v_y[15];
  g.z += T(2) * e * x * yy * v_y[10] + dq * yy * v_y[11] +
         (T(3 * 1.865881662950577) * zz - T(1.119528997770346)) * v_y[12] + dq * x * v_y[13] +
         e * (xx - y2) * v_y[14];
  return g;
}

// u = d / max(|d|, eps); *norm receives max(|d|, eps).
template <typename T>
MOEGS_HD vec3<T> sh_dir_normalize(vec3<T> d, T* norm) {
  const T n = clamp_min(std::sqrt(dot(d, d)), T(kShDirEps));
  *norm = n;
  const T inv = T(1) / n;
  return inv * d;
}

// dL/dd given dL/du, for u = sh_dir_normalize(d).
template <typename T>
MOEGS_HD vec3<T> sh_dir_normalize_vjp(vec3<T> d, vec3<T> v_u) {
  const T r = std::sqrt(dot(d, d));
  if (!(r > T(kShDirEps))) return T(1 / kShDirEps) * v_u;  // u = d / eps: linear
  const T inv = T(1) / r;
  const vec3<T> u = inv * d;
  return inv * (v_u - dot(v_u, u) * u);
}

// Colour of one Gaussian: coeffs is [Kc, 3] row-major (only the first
// (degree + 1)^2 rows are read), color is [3].
template <typename T>
MOEGS_HD void sh_to_color(int degree, vec3<T> dir, const T* coeffs, T* color) {
  T y[kShMaxBases];
  T n;
  sh_basis(degree, sh_dir_normalize(dir, &n), y);
  const int nb = sh_num_bases(degree);
  for (int c = 0; c < 3; ++c) {
    T acc = T(0);
    for (int k = 0; k < nb; ++k) acc += y[k] * coeffs[3 * k + c];
    color[c] = clamp_min(acc + T(0.5), T(0));
  }
}

// VJP of sh_to_color. color is the forward output (the gradient is cut where
// it was clamped to 0). Writes v_coeffs[0 .. (degree+1)^2 - 1][3] (the caller
// zeroes the unused rows) and, when v_dir is not null, dL/d(dir).
template <typename T>
MOEGS_HD void sh_to_color_vjp(int degree, vec3<T> dir, const T* coeffs, const T* color,
                              const T* v_color, T* v_coeffs, vec3<T>* v_dir) {
  T y[kShMaxBases];
  T n;
  const vec3<T> u = sh_dir_normalize(dir, &n);
  sh_basis(degree, u, y);
  const int nb = sh_num_bases(degree);
  T vc[3];
  for (int c = 0; c < 3; ++c) vc[c] = color[c] > T(0) ? v_color[c] : T(0);
  T v_y[kShMaxBases];
  for (int k = 0; k < nb; ++k) {
    const T* ck = coeffs + 3 * k;
    T* vk = v_coeffs + 3 * k;
    vk[0] = y[k] * vc[0];
    vk[1] = y[k] * vc[1];
    vk[2] = y[k] * vc[2];
    v_y[k] = ck[0] * vc[0] + ck[1] * vc[1] + ck[2] * vc[2];
  }
  if (v_dir != nullptr) *v_dir = sh_dir_normalize_vjp(dir, sh_basis_vjp(degree, u, v_y));
}

// The body of one element of the SH ops over flat arrays, shared by the CPU
// and CUDA loops. dirs [M, 3], coeffs [M, Kc, 3], colors [M, 3].
template <typename T>
MOEGS_HD void sh_fwd_element(int64_t i, int64_t kc, int degree, const T* dirs, const T* coeffs,
                             T* colors) {
  const T* d = dirs + 3 * i;
  sh_to_color(degree, vec3<T>{d[0], d[1], d[2]}, coeffs + 3 * kc * i, colors + 3 * i);
}

// v_colors [M, 3] -> v_coeffs [M, Kc, 3] (zero for the unused bases) and
// v_dirs [M, 3] (skipped when null).
template <typename T>
MOEGS_HD void sh_bwd_element(int64_t i, int64_t kc, int degree, const T* dirs, const T* coeffs,
                             const T* colors, const T* v_colors, T* v_dirs, T* v_coeffs) {
  const T* d = dirs + 3 * i;
  T* vc = v_coeffs + 3 * kc * i;
  for (int64_t j = 3 * sh_num_bases(degree); j < 3 * kc; ++j) vc[j] = T(0);
  vec3<T> vd;
  sh_to_color_vjp(degree, vec3<T>{d[0], d[1], d[2]}, coeffs + 3 * kc * i, colors + 3 * i,
                  v_colors + 3 * i, vc, v_dirs != nullptr ? &vd : nullptr);
  if (v_dirs != nullptr) {
    T* o = v_dirs + 3 * i;
    o[0] = vd.x;
    o[1] = vd.y;
    o[2] = vd.z;
  }
}

}  // namespace moegs
