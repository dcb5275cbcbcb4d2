// Front-to-back alpha compositing of 2D Gaussians with one transmittance per
// expert, and the vector-Jacobian products of every step.
//
// Per pixel and expert k: T_k = 1, acc_k = 0. Gaussians are visited front to
// back; Gaussian g of expert e, with d = mean_g - pixel and conic (a, b, c),
//
//   sigma = 1/2 (a dx^2 + c dy^2) + b dx dy
//   alpha = min(alpha_max, o exp(-sigma))        skipped if sigma < 0 or alpha < 1/255
//   next  = T_e (1 - alpha)                       expert e stops if next <= min_transmittance
//   acc_e += f_g alpha T_e,  T_e = next           otherwise
//
// and finally render_k = acc_k + T_k bg_k, alphas_k = 1 - T_k. A Gaussian only
// touches its own expert's state, so K experts in one pass equal K separate
// single-expert passes. With K = 1 these are the rules of gsplat 1.5.3.
#pragma once

#include "moegs/hd.h"
#include "moegs/vec.h"

namespace moegs {

// Largest number of experts one pass keeps state for (fixed-size arrays).
constexpr int kMaxExperts = 16;

// last_ids value of a (pixel, expert) that no Gaussian contributed to.
constexpr int32_t kNoContributor = -1;

// Compositing rules; gsplat's values in brackets.
struct CompositeParams {
  double alpha_max;          // opacity clamp [0.999]
  double min_transmittance;  // an expert stops before T would fall to or below this [1e-4]
  double pixel_offset;       // pixel (x, y) is sampled at (x + offset, y + offset) [0.5]
};

// Sizes of one rasterization call.
struct RasterizeDims {
  int64_t num_images;    // I
  int64_t num_entries;   // M: Gaussian entries addressed by flatten_ids
  int64_t num_features;  // F
  int64_t num_isects;    // length of flatten_ids
  int32_t num_experts;   // K
  int32_t width, height, tile_size;
  int32_t tiles_x, tiles_y;  // ceil(width / tile_size), ceil(height / tile_size)
};

// One Gaussian as the compositing loop reads it.
template <typename T>
struct Splat {
  vec2<T> mean;   // pixels
  vec3<T> conic;  // (a, b, c): upper triangle of the inverse 2D covariance
  T opacity;
  int32_t expert;
};

// Gaussian g of flat inputs means2d [M, 2], conics [M, 3], opacities [M], expert_ids [M].
template <typename T>
MOEGS_HD Splat<T> load_splat(const T* means2d, const T* conics, const T* opacities,
                             const int32_t* expert_ids, int64_t g) {
  Splat<T> s;
  s.mean = {means2d[2 * g], means2d[2 * g + 1]};
  s.conic = {conics[3 * g], conics[3 * g + 1], conics[3 * g + 2]};
  s.opacity = opacities[g];
  s.expert = expert_ids[g];
  return s;
}

// [begin, end) of tile t's run in flatten_ids; tiles of all images are
// numbered consecutively, the last one runs to num_isects.
MOEGS_HD void tile_range(const int32_t* isect_offsets, int64_t num_tiles, int64_t num_isects,
                         int64_t t, int64_t* begin, int64_t* end) {
  *begin = isect_offsets[t];
  *end = t + 1 < num_tiles ? isect_offsets[t + 1] : num_isects;
}

// ---------------------------------------------------------------- sigma

// Mahalanobis half-distance sigma for the offset d = mean - pixel.
template <typename T>
MOEGS_HD T conic_sigma(vec3<T> conic, vec2<T> d) {
  return T(0.5) * (conic.x * d.x * d.x + conic.z * d.y * d.y) + conic.y * d.x * d.y;
}

// VJP of conic_sigma: adds dL/dconic and dL/dd (= dL/dmean) for dL/dsigma = v_sigma.
template <typename T>
MOEGS_HD void conic_sigma_vjp(vec3<T> conic, vec2<T> d, T v_sigma, vec3<T>* v_conic,
                              vec2<T>* v_mean) {
  v_conic->x += T(0.5) * v_sigma * d.x * d.x;
  v_conic->y += v_sigma * d.x * d.y;
  v_conic->z += T(0.5) * v_sigma * d.y * d.y;
  v_mean->x += v_sigma * (conic.x * d.x + conic.y * d.y);
  v_mean->y += v_sigma * (conic.y * d.x + conic.z * d.y);
}

// ---------------------------------------------------------------- alpha

// A Gaussian evaluated at one pixel.
template <typename T>
struct SplatSample {
  vec2<T> d;  // mean - pixel
  T vis;      // exp(-sigma)
  T alpha;    // min(alpha_max, opacity * vis)
  bool valid;  // false: skipped (sigma < 0 or alpha < 1/255)
};

template <typename T>
MOEGS_HD SplatSample<T> splat_sample(const Splat<T>& s, vec2<T> pixel, T alpha_max) {
  SplatSample<T> r;
  r.d = s.mean - pixel;
  const T sigma = conic_sigma(s.conic, r.d);
  r.vis = std::exp(-sigma);
  r.alpha = clamp_max(s.opacity * r.vis, alpha_max);
  r.valid = !(sigma < T(0)) && !(r.alpha < T(kAlphaThreshold));
  return r;
}

// VJP of alpha = min(alpha_max, o exp(-sigma)): dL/dsigma and dL/do for
// dL/dalpha = v_alpha. Both are zero where the clamp is active.
template <typename T>
MOEGS_HD void splat_alpha_vjp(T opacity, T vis, T alpha_max, T v_alpha, T* v_sigma,
                              T* v_opacity) {
  if (opacity * vis <= alpha_max) {
    *v_sigma = -opacity * vis * v_alpha;
    *v_opacity = vis * v_alpha;
  } else {
    *v_sigma = T(0);
    *v_opacity = T(0);
  }
}

// ---------------------------------------------------------------- compositing

// Transmittance behind a Gaussian of opacity alpha. The forward pass and the
// backward pass's replay both call this, so they agree bit for bit.
template <typename T>
MOEGS_HD T transmittance_behind(T trans, T alpha) {
  return trans * (T(1) - alpha);
}

// Transmittance in front of a Gaussian of opacity alpha, from the one behind
// it: the inverse of transmittance_behind, up to rounding.
template <typename T>
MOEGS_HD T transmittance_in_front(T trans_behind, T alpha) {
  return trans_behind / (T(1) - alpha);
}

// One front-to-back step for the Gaussian's expert, F features. Returns false
// (and changes nothing) if the expert is saturated by this Gaussian: the
// Gaussian is not added and the expert takes no more Gaussians. Otherwise
// acc += feature * alpha * T and T moves behind the Gaussian.
template <typename T>
MOEGS_HD bool composite_step(const T* feature, int64_t F, T alpha, T min_transmittance, T* trans,
                             T* acc) {
  const T next = transmittance_behind(*trans, alpha);
  if (next <= min_transmittance) return false;
  const T w = alpha * *trans;
  for (int64_t f = 0; f < F; ++f) acc[f] += feature[f] * w;
  *trans = next;
  return true;
}

// render = acc + T bg (written to out, which may alias acc).
template <typename T>
MOEGS_HD void composite_finish(const T* acc, const T* background, int64_t F, T trans, T* out) {
  for (int64_t f = 0; f < F; ++f) out[f] = acc[f] + trans * background[f];
}

// VJP of composite_finish for the background, F features: adds dL/dbg =
// trans v_render to v_background and returns sum_f bg[f] v_render[f] (the
// v_bg_dot of composite_step_vjp).
template <typename T>
MOEGS_HD T composite_finish_vjp(const T* background, int64_t F, T trans, const T* v_render,
                                T* v_background) {
  T dot = T(0);
  for (int64_t f = 0; f < F; ++f) {
    dot += background[f] * v_render[f];
    v_background[f] += trans * v_render[f];
  }
  return dot;
}

// VJP of one composite_step that added a Gaussian, visited back to front.
//
//   trans        T in front of this Gaussian
//   trans_final  T behind the expert's last contributor (alphas = 1 - trans_final)
//   v_render     [F] dL/drender of this (pixel, expert); v_alphas: dL/dalphas
//   v_bg_dot     sum_f bg[f] v_render[f]
//   behind       [F] sum of feature * alpha * T over the expert's contributors
//                behind this one; updated to include this Gaussian
//   v_feature    [F] dL/dfeature of this Gaussian is added here
//
// Returns dL/dalpha of this Gaussian.
template <typename T>
MOEGS_HD T composite_step_vjp(const T* feature, int64_t F, T alpha, T trans, T trans_final,
                              const T* v_render, T v_alphas, T v_bg_dot, T* behind,
                              T* v_feature) {
  // Moving alpha scales everything behind (later Gaussians, background, and the
  // final transmittance) by 1 / (1 - alpha).
  const T ra = T(1) / (T(1) - alpha);
  const T w = alpha * trans;
  T v_alpha = trans_final * ra * (v_alphas - v_bg_dot);
  for (int64_t f = 0; f < F; ++f) {
    v_feature[f] += w * v_render[f];
    v_alpha += (feature[f] * trans - behind[f] * ra) * v_render[f];
    behind[f] += feature[f] * w;
  }
  return v_alpha;
}

}  // namespace moegs
