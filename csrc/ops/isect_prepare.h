// Device-agnostic preparation of the tile-intersection ops, shared by the CPU
// and CUDA wrappers: argument checks, contiguous inputs, grid sizes and the
// outputs whose size is known before the data is read.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "isect_checks.h"
#include "moegs/tiles.h"

namespace moegs {

struct IsectTilesPrepared {
  int64_t m;                   // M
  int64_t n_tiles;             // tile_width * tile_height
  int tile_n_bits;             // bits of the key's tile field
  at::Tensor means2d;          // [M, 2] contiguous
  at::Tensor radii;            // [M, 2] int32 contiguous
  at::Tensor depths;           // [M] contiguous
  at::Tensor image_ids;        // [M] int32 contiguous
  at::Tensor tiles_per_gauss;  // [M] int32 output
};

inline IsectTilesPrepared prepare_isect_tiles(const char* op, const at::Tensor& means2d,
                                              const at::Tensor& radii, const at::Tensor& depths,
                                              const at::Tensor& image_ids, int64_t n_images,
                                              int64_t tile_size, int64_t tile_width,
                                              int64_t tile_height) {
  check_isect_grid(op, n_images, tile_width, tile_height);
  check_isect_inputs(op, means2d, radii, depths, image_ids, n_images, tile_size);
  IsectTilesPrepared p;
  p.means2d = means2d.contiguous();
  p.radii = radii.contiguous();
  p.depths = depths.contiguous();
  p.image_ids = image_ids.contiguous();
  p.m = p.means2d.size(0);
  p.n_tiles = tile_width * tile_height;
  p.tile_n_bits = bit_length(static_cast<uint64_t>(p.n_tiles));
  p.tiles_per_gauss = at::empty({p.m}, p.means2d.options().dtype(at::kInt));
  return p;
}

struct IsectOffsetPrepared {
  int64_t n;              // intersections
  int64_t n_tiles;        // tile_width * tile_height
  int64_t n_buckets;      // n_images * n_tiles
  int tile_n_bits;        // bits of the key's tile field
  at::Tensor isect_ids;   // [n] int64 contiguous
  at::Tensor offsets;     // [n_images, tile_height, tile_width] int32 output
};

inline IsectOffsetPrepared prepare_isect_offset_encode(const char* op,
                                                       const at::Tensor& isect_ids,
                                                       int64_t n_images, int64_t tile_width,
                                                       int64_t tile_height) {
  check_isect_grid(op, n_images, tile_width, tile_height);
  IsectOffsetPrepared p;
  p.n = check_offset_encode_inputs(op, isect_ids);
  p.isect_ids = isect_ids.contiguous();
  p.n_tiles = tile_width * tile_height;
  p.n_buckets = n_images * p.n_tiles;
  p.tile_n_bits = bit_length(static_cast<uint64_t>(p.n_tiles));
  p.offsets =
      at::empty({n_images, tile_height, tile_width}, p.isect_ids.options().dtype(at::kInt));
  return p;
}

}  // namespace moegs
