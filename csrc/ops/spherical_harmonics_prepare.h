// Device-agnostic preparation of the spherical-harmonics ops, shared by the
// CPU and CUDA wrappers: argument checks, contiguous inputs, allocated outputs.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "spherical_harmonics_checks.h"

namespace moegs {

struct ShFwdPrepared {
  int64_t m;          // M
  int64_t kc;         // Kc
  int degree;
  at::Tensor dirs;    // [M, 3] contiguous
  at::Tensor coeffs;  // [M, Kc, 3] contiguous
  at::Tensor colors;  // [M, 3] output
};

inline ShFwdPrepared prepare_sh_fwd(const char* op, int64_t degree, const at::Tensor& dirs,
                                    const at::Tensor& coeffs) {
  check_sh_inputs(op, degree, dirs, coeffs);
  ShFwdPrepared p;
  p.degree = static_cast<int>(degree);
  p.dirs = dirs.contiguous();
  p.coeffs = coeffs.contiguous();
  p.m = p.dirs.size(0);
  p.kc = p.coeffs.size(1);
  p.colors = at::empty({p.m, 3}, p.dirs.options());
  return p;
}

struct ShBwdPrepared {
  int64_t m;            // M
  int64_t kc;           // Kc
  int degree;
  bool compute_v_dirs;
  at::Tensor dirs;      // [M, 3] contiguous
  at::Tensor coeffs;    // [M, Kc, 3] contiguous
  at::Tensor colors;    // [M, 3] contiguous
  at::Tensor v_colors;  // [M, 3] contiguous
  at::Tensor v_coeffs;  // [M, Kc, 3] output
  at::Tensor v_dirs;    // [M, 3] output, or [0] without compute_v_dirs
};

inline ShBwdPrepared prepare_sh_bwd(const char* op, int64_t degree, const at::Tensor& dirs,
                                    const at::Tensor& coeffs, const at::Tensor& colors,
                                    const at::Tensor& v_colors, bool compute_v_dirs) {
  check_sh_bwd_inputs(op, degree, dirs, coeffs, colors, v_colors);
  ShBwdPrepared p;
  p.degree = static_cast<int>(degree);
  p.compute_v_dirs = compute_v_dirs;
  p.dirs = dirs.contiguous();
  p.coeffs = coeffs.contiguous();
  p.colors = colors.contiguous();
  p.v_colors = v_colors.contiguous();
  p.m = p.dirs.size(0);
  p.kc = p.coeffs.size(1);
  p.v_coeffs = at::empty_like(p.coeffs);
  p.v_dirs = compute_v_dirs ? at::empty_like(p.dirs) : at::empty({0}, p.dirs.options());
  return p;
}

}  // namespace moegs
