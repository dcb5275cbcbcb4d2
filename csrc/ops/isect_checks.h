// Argument checks of the tile-intersection ops, shared by the CPU and CUDA
// wrappers. The data-dependent key check of isect_offset_encode is computed by
// each backend and reported through check_isect_keys_sorted.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <limits>

#include "moegs/checks.h"
#include "moegs/tiles.h"

namespace moegs {

constexpr int64_t kIsectInt32Max = std::numeric_limits<int32_t>::max();

// The image x tile grid must fit the key's id fields (moegs/tiles.h).
inline void check_isect_grid(const char* op, int64_t n_images, int64_t tile_width,
                             int64_t tile_height) {
  MOEGS_CHECK(op, n_images >= 0, "n_images must be >= 0, got ", n_images);
  MOEGS_CHECK(op, tile_width >= 1 && tile_height >= 1 && tile_width <= kIsectInt32Max &&
                      tile_height <= kIsectInt32Max,
              "tile_width and tile_height must be >= 1, got ", tile_width, " x ", tile_height);
  const int64_t n_tiles = tile_width * tile_height;
  MOEGS_CHECK(op, n_tiles <= kIsectInt32Max && isect_key_fits(n_images, n_tiles),
              "too many images or tiles for the 64-bit intersection key: ", n_images,
              " images need ", bit_length(static_cast<uint64_t>(n_images)), " bits and ",
              tile_width, " x ", tile_height, " tiles need ",
              bit_length(static_cast<uint64_t>(n_tiles)), " bits, at most ", kIsectIdBits,
              " in total");
}

// means2d [M, 2] float, radii [M, 2] int32, depths [M] (dtype of means2d),
// image_ids [M] int32 with values in [0, n_images), all on one device. Reading
// the image_ids range synchronises a CUDA stream.
inline void check_isect_inputs(const char* op, const at::Tensor& means2d, const at::Tensor& radii,
                               const at::Tensor& depths, const at::Tensor& image_ids,
                               int64_t n_images, int64_t tile_size) {
  MOEGS_CHECK_FLOAT(op, means2d);
  MOEGS_CHECK_DIM(op, means2d, 2);
  MOEGS_CHECK_SIZE(op, means2d, 1, 2);
  const int64_t m = means2d.size(0);
  MOEGS_CHECK_DTYPE(op, radii, at::kInt);
  MOEGS_CHECK(op, radii.dim() == 2 && radii.size(0) == m && radii.size(1) == 2,
              "radii must be [M, 2] like means2d ", means2d.sizes(), ", got ", radii.sizes());
  MOEGS_CHECK_SAME_DTYPE(op, means2d, depths);
  MOEGS_CHECK(op, depths.dim() == 1 && depths.size(0) == m, "depths must be [M] with M = ", m,
              ", got ", depths.sizes());
  MOEGS_CHECK_DTYPE(op, image_ids, at::kInt);
  MOEGS_CHECK(op, image_ids.dim() == 1 && image_ids.size(0) == m,
              "image_ids must be [M] with M = ", m, ", got ", image_ids.sizes());
  MOEGS_CHECK(op, radii.device() == means2d.device(), "radii is on ", radii.device(),
              " but means2d is on ", means2d.device());
  MOEGS_CHECK(op, depths.device() == means2d.device(), "depths is on ", depths.device(),
              " but means2d is on ", means2d.device());
  MOEGS_CHECK(op, image_ids.device() == means2d.device(), "image_ids is on ", image_ids.device(),
              " but means2d is on ", means2d.device());
  MOEGS_CHECK(op, m <= kIsectInt32Max, "at most 2^31 - 1 entries (int32 flatten ids), got ", m);
  MOEGS_CHECK(op, tile_size >= 1 && tile_size <= kIsectInt32Max, "tile_size must be >= 1, got ",
              tile_size);
  if (m > 0) {
    const int64_t lo = image_ids.min().item<int64_t>();
    const int64_t hi = image_ids.max().item<int64_t>();
    MOEGS_CHECK(op, lo >= 0 && hi < n_images, "image_ids must lie in [0, n_images = ", n_images,
                "), got values in [", lo, ", ", hi, "]");
  }
}

// n intersections must be addressable by the int32 offsets and flatten ids.
inline void check_isect_count(const char* op, int64_t n) {
  MOEGS_CHECK(op, n <= kIsectInt32Max, n,
              " intersections exceed the int32 offsets limit (2^31 - 1)");
}

// isect_ids [n] int64; returns n.
inline int64_t check_offset_encode_inputs(const char* op, const at::Tensor& isect_ids) {
  MOEGS_CHECK_DTYPE(op, isect_ids, at::kLong);
  MOEGS_CHECK_DIM(op, isect_ids, 1);
  const int64_t n = isect_ids.size(0);
  check_isect_count(op, n);
  return n;
}

// first_bad is the first entry whose key names no valid (image, tile) or
// comes before its predecessor's bucket (n when all are valid); bad_key is
// that entry's key (unused when first_bad == n).
inline void check_isect_keys_sorted(const char* op, int64_t first_bad, int64_t n, int64_t bad_key,
                                    int64_t n_images, int64_t tile_width, int64_t tile_height) {
  MOEGS_CHECK(op, first_bad == n, "isect_ids must be sorted keys of ", n_images, " images and ",
              tile_width, " x ", tile_height, " tiles; entry ", first_bad, " (",
              first_bad < n ? bad_key : 0, ") is out of range or out of order");
}

}  // namespace moegs
