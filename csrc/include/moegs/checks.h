// Input checks shared by the host-side op wrappers (CPU and CUDA).
//
// Every check names the op, so a failing call says where it failed, and raises
// a Python RuntimeError through TORCH_CHECK: never a crash.
#pragma once

#include <ATen/ATen.h>

#define MOEGS_CHECK(op, cond, ...) TORCH_CHECK(cond, "moegs::", op, ": ", __VA_ARGS__)

#define MOEGS_CHECK_FLOAT(op, x)                                                         \
  MOEGS_CHECK(op, (x).scalar_type() == at::kFloat || (x).scalar_type() == at::kDouble, \
              #x " must be float32 or float64, got ", (x).scalar_type())

#define MOEGS_CHECK_DTYPE(op, x, dtype) \
  MOEGS_CHECK(op, (x).scalar_type() == (dtype), #x " must be ", dtype, ", got ", (x).scalar_type())

#define MOEGS_CHECK_SAME_DTYPE(op, x, y)                                                       \
  MOEGS_CHECK(op, (x).scalar_type() == (y).scalar_type(), #x " and " #y " must share a dtype, got ", \
              (x).scalar_type(), " and ", (y).scalar_type())

#define MOEGS_CHECK_DIM(op, x, d) \
  MOEGS_CHECK(op, (x).dim() == (d), #x " must have ", d, " dims, got shape ", (x).sizes())

#define MOEGS_CHECK_SIZE(op, x, dim, n)                                                      \
  MOEGS_CHECK(op, (x).size(dim) == (n), #x ".size(", dim, ") must be ", n, ", got shape ", \
              (x).sizes())

#define MOEGS_CHECK_DEVICE(op, x, expected_device)                                          \
  MOEGS_CHECK(op, (x).device() == (expected_device), #x " is on ", (x).device(), " but expected ", \
              expected_device)
