// Quaternion + scale -> 3D covariance, and its vector-Jacobian product.
//
//   R = rotation of normalize(q),  M = R diag(s),  Sigma = M M^T
//
// Quaternions are (w, x, y, z) and need not be normalised: the normalisation
// is part of the formula, so its gradient is part of the VJP.
#pragma once

#include "moegs/hd.h"
#include "moegs/vec.h"

namespace moegs {

// Rotation matrix of a *unit* quaternion.
template <typename T>
MOEGS_HD mat3<T> quat_to_rotmat(vec4<T> q) {
  const T w = q.w, x = q.x, y = q.y, z = q.z;
  mat3<T> r;
  r.m[0][0] = T(1) - T(2) * (y * y + z * z);
  r.m[0][1] = T(2) * (x * y - w * z);
  r.m[0][2] = T(2) * (x * z + w * y);
  r.m[1][0] = T(2) * (x * y + w * z);
  r.m[1][1] = T(1) - T(2) * (x * x + z * z);
  r.m[1][2] = T(2) * (y * z - w * x);
  r.m[2][0] = T(2) * (x * z - w * y);
  r.m[2][1] = T(2) * (y * z + w * x);
  r.m[2][2] = T(1) - T(2) * (x * x + y * y);
  return r;
}

// VJP of quat_to_rotmat for a unit quaternion q: returns dL/dq given dL/dR.
template <typename T>
MOEGS_HD vec4<T> quat_to_rotmat_vjp(vec4<T> q, const mat3<T>& v_r) {
  const T w = q.w, x = q.x, y = q.y, z = q.z;
  const auto& g = v_r.m;
  vec4<T> v;
  v.w = T(2) * (-z * g[0][1] + y * g[0][2] + z * g[1][0] - x * g[1][2] - y * g[2][0] + x * g[2][1]);
  v.x = T(2) * (y * g[0][1] + z * g[0][2] + y * g[1][0] - T(2) * x * g[1][1] - w * g[1][2] +
                z * g[2][0] + w * g[2][1] - T(2) * x * g[2][2]);
  v.y = T(2) * (-T(2) * y * g[0][0] + x * g[0][1] + w * g[0][2] + x * g[1][0] + z * g[1][2] -
                w * g[2][0] + z * g[2][1] - T(2) * y * g[2][2]);
  v.z = T(2) * (-T(2) * z * g[0][0] - w * g[0][1] + x * g[0][2] + w * g[1][0] -
                T(2) * z * g[1][1] + y * g[1][2] + x * g[2][0] + y * g[2][1]);
  return v;
}

template <typename T>
MOEGS_HD vec4<T> quat_normalize(vec4<T> q) {
  const T inv = T(1) / std::sqrt(q.w * q.w + q.x * q.x + q.y * q.y + q.z * q.z);
  return {q.w * inv, q.x * inv, q.y * inv, q.z * inv};
}

// VJP of q / |q|: dL/dq given dL/dq_hat.
template <typename T>
MOEGS_HD vec4<T> quat_normalize_vjp(vec4<T> q, vec4<T> v_qn) {
  const T inv = T(1) / std::sqrt(q.w * q.w + q.x * q.x + q.y * q.y + q.z * q.z);
  const vec4<T> qn = {q.w * inv, q.x * inv, q.y * inv, q.z * inv};
  const T d = qn.w * v_qn.w + qn.x * v_qn.x + qn.y * v_qn.y + qn.z * v_qn.z;
  return {(v_qn.w - qn.w * d) * inv, (v_qn.x - qn.x * d) * inv, (v_qn.y - qn.y * d) * inv,
          (v_qn.z - qn.z * d) * inv};
}

// Sigma = R diag(s)^2 R^T for an unnormalised quaternion.
template <typename T>
MOEGS_HD mat3<T> quat_scale_to_covar(vec4<T> q, vec3<T> s) {
  const mat3<T> r = quat_to_rotmat(quat_normalize(q));
  mat3<T> m;  // M = R diag(s)
  for (int i = 0; i < 3; ++i) {
    m.m[i][0] = r.m[i][0] * s.x;
    m.m[i][1] = r.m[i][1] * s.y;
    m.m[i][2] = r.m[i][2] * s.z;
  }
  return m * transpose(m);
}

// VJP of quat_scale_to_covar. v_covar is dL/dSigma for a symmetric Sigma, as a
// full matrix (use sym3 helpers to go from/to the upper triangle).
template <typename T>
MOEGS_HD void quat_scale_to_covar_vjp(vec4<T> q, vec3<T> s, const mat3<T>& v_covar,
                                      vec4<T>* v_q, vec3<T>* v_s) {
  const vec4<T> qn = quat_normalize(q);
  const mat3<T> r = quat_to_rotmat(qn);
  mat3<T> m;
  for (int i = 0; i < 3; ++i) {
    m.m[i][0] = r.m[i][0] * s.x;
    m.m[i][1] = r.m[i][1] * s.y;
    m.m[i][2] = r.m[i][2] * s.z;
  }
  // Sigma = M M^T  =>  dL/dM = (G + G^T) M
  const mat3<T> v_m = (v_covar + transpose(v_covar)) * m;
  mat3<T> v_r;
  T vs[3] = {T(0), T(0), T(0)};
  const T sv[3] = {s.x, s.y, s.z};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      v_r.m[i][j] = v_m.m[i][j] * sv[j];
      vs[j] += v_m.m[i][j] * r.m[i][j];
    }
  *v_s = {vs[0], vs[1], vs[2]};
  *v_q = quat_normalize_vjp(q, quat_to_rotmat_vjp(qn, v_r));
}

// quat_scale_to_covar_vjp with the gradient given w.r.t. the stored upper
// triangle v_triu [6] (xx, xy, xz, yy, yz, zz): each off-diagonal entry of the
// symmetric matrix gets half of its triangle entry's gradient.
template <typename T>
MOEGS_HD void quat_scale_to_covar_vjp_triu(vec4<T> q, vec3<T> s, const T* v_triu, vec4<T>* v_q,
                                           vec3<T>* v_s) {
  const T t[6] = {v_triu[0], v_triu[1] / T(2), v_triu[2] / T(2),
                  v_triu[3], v_triu[4] / T(2), v_triu[5]};
  quat_scale_to_covar_vjp(q, s, sym3_from_triu(t), v_q, v_s);
}

// The bodies of element i of the covariance ops over flat arrays, shared by the
// CPU and CUDA loops: quats [M, 4], scales [M, 3], covars / v_covars [M, 6].
template <typename T>
MOEGS_HD void covar_fwd_element(int64_t i, const T* quats, const T* scales, T* covars) {
  const T* q = quats + 4 * i;
  const T* s = scales + 3 * i;
  sym3_to_triu(quat_scale_to_covar(vec4<T>{q[0], q[1], q[2], q[3]}, vec3<T>{s[0], s[1], s[2]}),
               covars + 6 * i);
}

template <typename T>
MOEGS_HD void covar_bwd_element(int64_t i, const T* quats, const T* scales, const T* v_covars,
                                T* v_quats, T* v_scales) {
  const T* q = quats + 4 * i;
  const T* s = scales + 3 * i;
  vec4<T> vq;
  vec3<T> vs;
  quat_scale_to_covar_vjp_triu(vec4<T>{q[0], q[1], q[2], q[3]}, vec3<T>{s[0], s[1], s[2]},
                               v_covars + 6 * i, &vq, &vs);
  T* oq = v_quats + 4 * i;
  oq[0] = vq.w;
  oq[1] = vq.x;
  oq[2] = vq.y;
  oq[3] = vq.z;
  T* os = v_scales + 3 * i;
  os[0] = vs.x;
  os[1] = vs.y;
  os[2] = vs.z;
}

}  // namespace moegs
