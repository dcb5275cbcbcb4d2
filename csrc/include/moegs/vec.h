// Small fixed-size vectors and matrices for the host/device math headers.
//
// Matrices are row-major: m[r][c]. Only what the formulas need is here; no
// expression templates, everything is a plain value type.
#pragma once

#include "moegs/hd.h"

namespace moegs {

template <typename T>
struct vec2 {
  T x, y;
};

template <typename T>
struct vec3 {
  T x, y, z;
};

template <typename T>
struct vec4 {
  T w, x, y, z;  // quaternion order (w, x, y, z)
};

template <typename T>
struct mat2 {
  T m[2][2];
};

template <typename T>
struct mat3 {
  T m[3][3];
};

// ---------------------------------------------------------------- vec2
template <typename T>
MOEGS_HD vec2<T> operator+(vec2<T> a, vec2<T> b) { return {a.x + b.x, a.y + b.y}; }
template <typename T>
MOEGS_HD vec2<T> operator-(vec2<T> a, vec2<T> b) { return {a.x - b.x, a.y - b.y}; }
template <typename T>
MOEGS_HD vec2<T> operator*(T s, vec2<T> a) { return {s * a.x, s * a.y}; }

// ---------------------------------------------------------------- vec3
template <typename T>
MOEGS_HD vec3<T> operator+(vec3<T> a, vec3<T> b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
template <typename T>
MOEGS_HD vec3<T> operator-(vec3<T> a, vec3<T> b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
template <typename T>
MOEGS_HD vec3<T> operator*(T s, vec3<T> a) { return {s * a.x, s * a.y, s * a.z}; }
template <typename T>
MOEGS_HD T dot(vec3<T> a, vec3<T> b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
template <typename T>
MOEGS_HD vec3<T> cross(vec3<T> a, vec3<T> b) {
  return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}

// ---------------------------------------------------------------- mat3
template <typename T>
MOEGS_HD mat3<T> zeros3() {
  mat3<T> r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) r.m[i][j] = T(0);
  return r;
}

template <typename T>
MOEGS_HD mat3<T> transpose(const mat3<T>& a) {
  mat3<T> r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) r.m[i][j] = a.m[j][i];
  return r;
}

template <typename T>
MOEGS_HD mat3<T> operator*(const mat3<T>& a, const mat3<T>& b) {
  mat3<T> r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      r.m[i][j] = a.m[i][0] * b.m[0][j] + a.m[i][1] * b.m[1][j] + a.m[i][2] * b.m[2][j];
  return r;
}

template <typename T>
MOEGS_HD mat3<T> operator+(const mat3<T>& a, const mat3<T>& b) {
  mat3<T> r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) r.m[i][j] = a.m[i][j] + b.m[i][j];
  return r;
}

template <typename T>
MOEGS_HD vec3<T> operator*(const mat3<T>& a, vec3<T> v) {
  return {a.m[0][0] * v.x + a.m[0][1] * v.y + a.m[0][2] * v.z,
          a.m[1][0] * v.x + a.m[1][1] * v.y + a.m[1][2] * v.z,
          a.m[2][0] * v.x + a.m[2][1] * v.y + a.m[2][2] * v.z};
}

// Outer product a b^T.
template <typename T>
MOEGS_HD mat3<T> outer(vec3<T> a, vec3<T> b) {
  mat3<T> r;
  const T av[3] = {a.x, a.y, a.z};
  const T bv[3] = {b.x, b.y, b.z};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) r.m[i][j] = av[i] * bv[j];
  return r;
}

// Symmetric 3x3 from its upper triangle (xx, xy, xz, yy, yz, zz).
template <typename T>
MOEGS_HD mat3<T> sym3_from_triu(const T* t) {
  mat3<T> r;
  r.m[0][0] = t[0]; r.m[0][1] = t[1]; r.m[0][2] = t[2];
  r.m[1][0] = t[1]; r.m[1][1] = t[3]; r.m[1][2] = t[4];
  r.m[2][0] = t[2]; r.m[2][1] = t[4]; r.m[2][2] = t[5];
  return r;
}

// Upper triangle of a symmetric matrix.
template <typename T>
MOEGS_HD void sym3_to_triu(const mat3<T>& a, T* t) {
  t[0] = a.m[0][0]; t[1] = a.m[0][1]; t[2] = a.m[0][2];
  t[3] = a.m[1][1]; t[4] = a.m[1][2]; t[5] = a.m[2][2];
}

// Gradient of a loss w.r.t. the upper triangle, given the gradient G w.r.t. the
// full symmetric matrix built by sym3_from_triu: off-diagonal entries get both
// halves.
template <typename T>
MOEGS_HD void sym3_grad_to_triu(const mat3<T>& g, T* t) {
  t[0] = g.m[0][0];
  t[1] = g.m[0][1] + g.m[1][0];
  t[2] = g.m[0][2] + g.m[2][0];
  t[3] = g.m[1][1];
  t[4] = g.m[1][2] + g.m[2][1];
  t[5] = g.m[2][2];
}

}  // namespace moegs
