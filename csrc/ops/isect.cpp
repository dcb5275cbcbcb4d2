// Schema of the tile-intersection ops (no gradients: integer outputs).
#include <torch/library.h>

// isect_tiles(means2d [M, 2], radii [M, 2] int32, depths [M], image_ids [M] int32,
//             n_images, tile_size, tile_width, tile_height)
//   -> (tiles_per_gauss [M] int32, isect_ids [n] int64, flatten_ids [n] int32)
//   One entry per (image, Gaussian) pair; radii <= 0 marks a culled entry.
//   means2d in pixels, depths camera-space z (same dtype as means2d). The n
//   intersections are sorted by key (see moegs/tiles.h), ties by flatten id m.
// isect_offset_encode(isect_ids [n] int64 sorted, n_images, tile_width, tile_height)
//   -> offsets [n_images, tile_height, tile_width] int32: index of the first
//   intersection of each tile; an empty tile gets the start of the next one (or n).
TORCH_LIBRARY_FRAGMENT(moegs, m) {
  m.def(
      "isect_tiles(Tensor means2d, Tensor radii, Tensor depths, Tensor image_ids, int n_images, "
      "int tile_size, int tile_width, int tile_height) -> (Tensor, Tensor, Tensor)");
  m.def(
      "isect_offset_encode(Tensor isect_ids, int n_images, int tile_width, int tile_height) -> "
      "Tensor");
}
