// CPU loops for the spherical-harmonics ops: one Gaussian per iteration, math
// in moegs/sh.h.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "moegs/checks.h"
#include "moegs/sh.h"
#include "../ops/spherical_harmonics_prepare.h"

namespace moegs {
namespace {

constexpr int64_t kGrain = 1024;

// dirs [M, 3], coeffs [M, Kc, 3] -> colors [M, 3]
template <typename T>
void sh_fwd_kernel(int64_t m, int64_t kc, int degree, const T* dirs, const T* coeffs, T* colors) {
  at::parallel_for(0, m, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) sh_fwd_element(i, kc, degree, dirs, coeffs, colors);
  });
}

// dirs [M, 3], coeffs [M, Kc, 3], colors [M, 3], v_colors [M, 3]
//   -> v_dirs [M, 3] (skipped when null), v_coeffs [M, Kc, 3]
template <typename T>
void sh_bwd_kernel(int64_t m, int64_t kc, int degree, const T* dirs, const T* coeffs,
                   const T* colors, const T* v_colors, T* v_dirs, T* v_coeffs) {
  at::parallel_for(0, m, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      sh_bwd_element(i, kc, degree, dirs, coeffs, colors, v_colors, v_dirs, v_coeffs);
  });
}

// dirs [M, 3], coeffs [M, Kc, 3] -> colors [M, 3]
at::Tensor spherical_harmonics_fwd_cpu(int64_t degree, const at::Tensor& dirs_in,
                                       const at::Tensor& coeffs_in) {
  const char* op = "spherical_harmonics_fwd";
  const ShFwdPrepared p = prepare_sh_fwd(op, degree, dirs_in, coeffs_in);
  AT_DISPATCH_FLOATING_TYPES(p.dirs.scalar_type(), "spherical_harmonics_fwd", [&] {
    sh_fwd_kernel<scalar_t>(p.m, p.kc, p.degree, p.dirs.data_ptr<scalar_t>(),
                            p.coeffs.data_ptr<scalar_t>(), p.colors.data_ptr<scalar_t>());
  });
  return p.colors;
}

// dirs [M, 3], coeffs [M, Kc, 3], colors [M, 3], v_colors [M, 3]
//   -> (v_dirs [M, 3] or [0], v_coeffs [M, Kc, 3])
std::tuple<at::Tensor, at::Tensor> spherical_harmonics_bwd_cpu(
    int64_t degree, const at::Tensor& dirs_in, const at::Tensor& coeffs_in,
    const at::Tensor& colors_in, const at::Tensor& v_colors_in, bool compute_v_dirs) {
  const char* op = "spherical_harmonics_bwd";
  const ShBwdPrepared p =
      prepare_sh_bwd(op, degree, dirs_in, coeffs_in, colors_in, v_colors_in, compute_v_dirs);
  AT_DISPATCH_FLOATING_TYPES(p.dirs.scalar_type(), "spherical_harmonics_bwd", [&] {
    sh_bwd_kernel<scalar_t>(p.m, p.kc, p.degree, p.dirs.data_ptr<scalar_t>(),
                            p.coeffs.data_ptr<scalar_t>(), p.colors.data_ptr<scalar_t>(),
                            p.v_colors.data_ptr<scalar_t>(),
                            p.compute_v_dirs ? p.v_dirs.data_ptr<scalar_t>() : nullptr,
                            p.v_coeffs.data_ptr<scalar_t>());
  });
  return {p.v_dirs, p.v_coeffs};
}

}  // namespace

TORCH_LIBRARY_IMPL(moegs, CPU, m) {
  m.impl("spherical_harmonics_fwd", &spherical_harmonics_fwd_cpu);
  m.impl("spherical_harmonics_bwd", &spherical_harmonics_bwd_cpu);
}

}  // namespace moegs
