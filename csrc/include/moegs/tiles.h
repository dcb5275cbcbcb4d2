// Tile binning: which screen tiles a projected Gaussian touches, and the 64-bit
// sort key of one (Gaussian, tile) intersection. Same rules and key layout as
// gsplat 1.5.3.
//
// A visible entry (both pixel radii > 0) with mean m and radius r covers, per
// axis, tiles [floor((m - r) / ts), ceil((m + r) / ts)), each bound clamped to
// [0, tiles along that axis]. Key, high to low bits:
//
//   image id (image_n_bits) | tile id = ty * tile_width + tx (tile_n_bits) | depth (32)
//
// where the depth field is the bit pattern of the float32 depth. For positive
// depths this integer order is the depth order, so sorting keys sorts by image,
// then tile, then depth.
#pragma once

#include <cstring>

#include "moegs/hd.h"

namespace moegs {

// Image and tile fields together must leave the key's sign bit clear, so the
// signed int64 key order is the (image, tile, depth) order.
constexpr int kIsectIdBits = 31;

// Number of bits needed to write n (0 for n = 0), like Python's int.bit_length.
MOEGS_HD int bit_length(uint64_t n) {
  int b = 0;
  while (n != 0) {
    ++b;
    n >>= 1;
  }
  return b;
}

MOEGS_HD bool isect_key_fits(int64_t n_images, int64_t n_tiles) {
  return bit_length(static_cast<uint64_t>(n_images)) + bit_length(static_cast<uint64_t>(n_tiles)) <=
         kIsectIdBits;
}

// Half-open tile range [x0, x1) x [y0, y1); empty when x0 == x1 or y0 == y1.
struct TileRect {
  int32_t x0, y0, x1, y1;
};

MOEGS_HD int64_t tile_rect_area(TileRect r) {
  return static_cast<int64_t>(r.x1 - r.x0) * static_cast<int64_t>(r.y1 - r.y0);
}

// An already rounded tile coordinate clamped to [0, hi]; NaN maps to 0.
template <typename T>
MOEGS_HD int32_t clamp_tile(T v, int32_t hi) {
  if (!(v > T(0))) return 0;
  if (v >= T(hi)) return hi;
  return static_cast<int32_t>(v);
}

// Tiles covered by one entry; culled entries (a radius <= 0) cover none.
template <typename T>
MOEGS_HD TileRect tile_rect(T mx, T my, int32_t rx, int32_t ry, int32_t tile_size,
                            int32_t tile_width, int32_t tile_height) {
  TileRect r = {0, 0, 0, 0};
  if (rx <= 0 || ry <= 0) return r;
  const T ts = T(tile_size);
  const T cx = mx / ts, cy = my / ts;
  const T hx = T(rx) / ts, hy = T(ry) / ts;
  r.x0 = clamp_tile(std::floor(cx - hx), tile_width);
  r.x1 = clamp_tile(std::ceil(cx + hx), tile_width);
  r.y0 = clamp_tile(std::floor(cy - hy), tile_height);
  r.y1 = clamp_tile(std::ceil(cy + hy), tile_height);
  return r;
}

// Bit pattern of the depth rounded to float32, zero-extended.
template <typename T>
MOEGS_HD uint32_t depth_key_bits(T depth) {
  const float f = static_cast<float>(depth);
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}

// The image and tile fields of a key, shifted down by 32: (image << tile_n_bits) | tile.
MOEGS_HD int64_t isect_key_high(int64_t image_id, int64_t tile_id, int tile_n_bits) {
  return (image_id << tile_n_bits) | tile_id;
}

MOEGS_HD int64_t isect_key(int64_t image_id, int64_t tile_id, uint32_t depth_bits,
                           int tile_n_bits) {
  return (isect_key_high(image_id, tile_id, tile_n_bits) << 32) |
         static_cast<int64_t>(depth_bits);
}

// Flat (image, tile) index image * n_tiles + tile of a key; -1 when the tile
// field is not a valid tile (a key from another grid).
MOEGS_HD int64_t isect_key_bucket(int64_t key, int tile_n_bits, int64_t n_tiles) {
  const int64_t high = key >> 32;
  const int64_t tile = high & ((int64_t(1) << tile_n_bits) - 1);
  if (high < 0 || tile >= n_tiles) return -1;
  return (high >> tile_n_bits) * n_tiles + tile;
}

// Whether entry j of a key array breaks the contract of the offsets: its key
// names no (image, tile) bucket of the grid, or a bucket before entry j - 1's.
MOEGS_HD bool isect_key_bad(const int64_t* keys, int64_t j, int tile_n_bits, int64_t n_tiles,
                            int64_t n_buckets) {
  const int64_t b = isect_key_bucket(keys[j], tile_n_bits, n_tiles);
  return b < 0 || b >= n_buckets ||
         (j > 0 && b < isect_key_bucket(keys[j - 1], tile_n_bits, n_tiles));
}

// Offsets written by entry j of n sorted, valid keys: entry j starts every
// bucket in (bucket(j - 1), bucket(j)], and the last entry also ends the rest
// (their offset is n). Each bucket of offsets [n_buckets] is written by
// exactly one entry, so the entries can be processed in any order.
MOEGS_HD void isect_write_offsets(const int64_t* keys, int64_t j, int64_t n, int tile_n_bits,
                                  int64_t n_tiles, int64_t n_buckets, int32_t* offsets) {
  const int64_t cur = isect_key_bucket(keys[j], tile_n_bits, n_tiles);
  const int64_t prev = j > 0 ? isect_key_bucket(keys[j - 1], tile_n_bits, n_tiles) : -1;
  for (int64_t b = prev + 1; b <= cur; ++b) offsets[b] = static_cast<int32_t>(j);
  if (j == n - 1)
    for (int64_t b = cur + 1; b < n_buckets; ++b) offsets[b] = static_cast<int32_t>(n);
}

}  // namespace moegs
