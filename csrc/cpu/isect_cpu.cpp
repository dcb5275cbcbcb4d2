// CPU tile intersection and per-tile offsets; tile ranges and key layout in
// moegs/tiles.h.
//
// isect_tiles orders the entries once by (depth bits, flatten id) with a
// radix sort, then bins their intersections by (image, tile) bucket with a
// chunked counting sort that keeps that order inside every bucket, so the
// result is the same for any thread count. When the bucket array would dwarf
// the intersections (many images or tiles, few hits), a stable global key
// sort is used instead.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "moegs/checks.h"
#include "moegs/tiles.h"
#include "../ops/isect_prepare.h"

namespace moegs {
namespace {

constexpr int64_t kGrain = 1024;
constexpr int64_t kBucketGrain = 256;

// Tile rectangle and count of every entry.
// means2d [M, 2], radii [M, 2] -> rects [M], tiles_per_gauss [M]
template <typename T>
void tile_rects_kernel(int64_t m, const T* means2d, const int32_t* radii, int32_t tile_size,
                       int32_t tile_width, int32_t tile_height, TileRect* rects,
                       int32_t* tiles_per_gauss) {
  at::parallel_for(0, m, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const TileRect r = tile_rect(means2d[2 * i], means2d[2 * i + 1], radii[2 * i],
                                   radii[2 * i + 1], tile_size, tile_width, tile_height);
      rects[i] = r;
      tiles_per_gauss[i] = static_cast<int32_t>(tile_rect_area(r));
    }
  });
}

// Calls visit(tile) for the flat tile index ty * tile_width + tx of every tile
// of r, row by row.
template <typename Visit>
inline void for_each_tile(const TileRect& r, int32_t tile_width, const Visit& visit) {
  for (int32_t ty = r.y0; ty < r.y1; ++ty)
    for (int32_t tx = r.x0; tx < r.x1; ++tx) visit(int64_t(ty) * tile_width + tx);
}

// Entries with at least one tile, ordered by (depth bits, entry index): a
// stable LSD radix sort of the 32 depth bits over the entries in index order.
template <typename T>
std::vector<int32_t> entries_by_depth(int64_t m, const TileRect* rects, const T* depths) {
  std::vector<int32_t> order, tmp;
  order.reserve(m);
  for (int64_t i = 0; i < m; ++i)
    if (rects[i].x0 != rects[i].x1 && rects[i].y0 != rects[i].y1) order.push_back(int32_t(i));
  const int64_t k = static_cast<int64_t>(order.size());
  std::vector<uint32_t> bits(m);
  for (int64_t q = 0; q < k; ++q) bits[order[q]] = depth_key_bits(depths[order[q]]);
  tmp.resize(k);
  for (int shift = 0; shift < 32; shift += 8) {
    int64_t count[257] = {0};
    for (int64_t q = 0; q < k; ++q) ++count[((bits[order[q]] >> shift) & 0xff) + 1];
    if (count[1] == k) continue;  // every digit 0 here: the pass would not move anything
    for (int d = 0; d < 256; ++d) count[d + 1] += count[d];
    for (int64_t q = 0; q < k; ++q) tmp[count[(bits[order[q]] >> shift) & 0xff]++] = order[q];
    order.swap(tmp);
  }
  return order;
}

// Bins the intersections by (image, tile) bucket, each bucket in (depth bits,
// entry index) order. The entries are walked in that order, in chunks: a
// counting pass per chunk, then every chunk scatters into its own slots of
// each bucket, after the slots of the chunks before it. No atomics and no
// per-bucket sort; the result does not depend on the chunking or the thread
// count. rects [M], depths [M], image_ids [M]; starts [n_buckets + 1] receives
// the bucket boundaries; isect_ids [n], flatten_ids [n].
template <typename T>
void bucket_sort_isects(int64_t m, const TileRect* rects, const T* depths, const int32_t* image_ids,
                        int64_t n_tiles, int32_t tile_width, int tile_n_bits,
                        std::vector<int64_t>& starts, int64_t* isect_ids, int32_t* flatten_ids) {
  const int64_t n_buckets = static_cast<int64_t>(starts.size()) - 1;
  const std::vector<int32_t> order = entries_by_depth(m, rects, depths);
  const int64_t k = static_cast<int64_t>(order.size());
  const int64_t n_chunks =
      std::max<int64_t>(1, std::min<int64_t>(2 * at::get_num_threads(), k / kGrain + 1));
  // cursor[c * n_buckets + b]: chunk c's count in bucket b, then its first slot there
  std::vector<int64_t> cursor(n_chunks * n_buckets, 0);
  auto chunk_range = [&](int64_t c, int64_t* begin, int64_t* end) {
    *begin = k * c / n_chunks;
    *end = k * (c + 1) / n_chunks;
  };
  at::parallel_for(0, n_chunks, 1, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      int64_t* cnt = cursor.data() + c * n_buckets;
      int64_t qb, qe;
      chunk_range(c, &qb, &qe);
      for (int64_t q = qb; q < qe; ++q)
        for_each_tile(rects[order[q]], tile_width, [&](int64_t tile) {
          ++cnt[image_ids[order[q]] * n_tiles + tile];
        });
    }
  });
  int64_t next = 0;
  for (int64_t b = 0; b < n_buckets; ++b) {
    starts[b] = next;
    for (int64_t c = 0; c < n_chunks; ++c) {
      const int64_t cnt = cursor[c * n_buckets + b];
      cursor[c * n_buckets + b] = next;
      next += cnt;
    }
  }
  starts[n_buckets] = next;
  at::parallel_for(0, n_chunks, 1, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      int64_t* slot = cursor.data() + c * n_buckets;
      int64_t qb, qe;
      chunk_range(c, &qb, &qe);
      for (int64_t q = qb; q < qe; ++q) {
        const int32_t i = order[q];
        const uint32_t bits = depth_key_bits(depths[i]);
        const int64_t image = image_ids[i];
        for_each_tile(rects[i], tile_width, [&](int64_t tile) {
          const int64_t j = slot[image * n_tiles + tile]++;
          flatten_ids[j] = i;
          isect_ids[j] = isect_key(image, tile, bits, tile_n_bits);
        });
      }
    }
  });
}

// Fallback for sparse grids: fill keys in flatten-id order, then a stable sort
// by key (ties keep the flatten-id order). rects, tiles_per_gauss, depths,
// image_ids [M] -> sorted (isect_ids [n], flatten_ids [n]).
template <typename T>
std::tuple<at::Tensor, at::Tensor> global_sort_isects(int64_t m, int64_t n, const TileRect* rects,
                                                      const int32_t* tiles_per_gauss,
                                                      const T* depths, const int32_t* image_ids,
                                                      int32_t tile_width, int tile_n_bits,
                                                      const at::TensorOptions& opts) {
  std::vector<int64_t> first(m + 1);
  first[0] = 0;
  for (int64_t i = 0; i < m; ++i) first[i + 1] = first[i] + tiles_per_gauss[i];
  at::Tensor keys = at::empty({n}, opts.dtype(at::kLong));
  at::Tensor ids = at::empty({n}, opts.dtype(at::kInt));
  int64_t* k = keys.data_ptr<int64_t>();
  int32_t* f = ids.data_ptr<int32_t>();
  at::parallel_for(0, m, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const TileRect r = rects[i];
      const uint32_t depth_bits = depth_key_bits(depths[i]);
      int64_t j = first[i];
      for (int32_t ty = r.y0; ty < r.y1; ++ty)
        for (int32_t tx = r.x0; tx < r.x1; ++tx, ++j) {
          k[j] = isect_key(image_ids[i], int64_t(ty) * tile_width + tx, depth_bits, tile_n_bits);
          f[j] = static_cast<int32_t>(i);
        }
    }
  });
  auto [sorted, order] = keys.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  return {sorted, ids.index_select(0, order)};
}

// means2d [M, 2], radii [M, 2] int32, depths [M], image_ids [M] int32
//   -> (tiles_per_gauss [M] int32, isect_ids [n] int64, flatten_ids [n] int32)
std::tuple<at::Tensor, at::Tensor, at::Tensor> isect_tiles_cpu(
    const at::Tensor& means2d_in, const at::Tensor& radii_in, const at::Tensor& depths_in,
    const at::Tensor& image_ids_in, int64_t n_images, int64_t tile_size, int64_t tile_width,
    int64_t tile_height) {
  const char* op = "isect_tiles";
  const IsectTilesPrepared p = prepare_isect_tiles(op, means2d_in, radii_in, depths_in,
                                                   image_ids_in, n_images, tile_size, tile_width,
                                                   tile_height);
  const at::Tensor& means2d = p.means2d;
  const at::Tensor& radii = p.radii;
  const at::Tensor& depths = p.depths;
  const at::Tensor& image_ids = p.image_ids;
  const at::Tensor& tiles_per_gauss = p.tiles_per_gauss;
  const int64_t m = p.m, n_tiles = p.n_tiles;
  const int tile_n_bits = p.tile_n_bits;
  const auto opts = means2d.options();

  std::vector<TileRect> rects(m);
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "isect_tiles", [&] {
    tile_rects_kernel<scalar_t>(m, means2d.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(),
                                static_cast<int32_t>(tile_size), static_cast<int32_t>(tile_width),
                                static_cast<int32_t>(tile_height), rects.data(),
                                tiles_per_gauss.data_ptr<int32_t>());
  });
  const int32_t* tpg = tiles_per_gauss.data_ptr<int32_t>();
  const int64_t n = at::parallel_reduce(
      0, m, kGrain, int64_t(0),
      [&](int64_t begin, int64_t end, int64_t acc) {
        for (int64_t i = begin; i < end; ++i) acc += tpg[i];
        return acc;
      },
      [](int64_t a, int64_t b) { return a + b; });
  check_isect_count(op, n);

  const int64_t n_buckets = n_images * n_tiles;
  if (n_buckets > 4 * n + (int64_t(1) << 20)) {
    at::Tensor isect_ids, flatten_ids;
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "isect_tiles", [&] {
      std::tie(isect_ids, flatten_ids) = global_sort_isects<scalar_t>(
          m, n, rects.data(), tpg, depths.data_ptr<scalar_t>(), image_ids.data_ptr<int32_t>(),
          static_cast<int32_t>(tile_width), tile_n_bits, opts);
    });
    return {tiles_per_gauss, isect_ids, flatten_ids};
  }
  at::Tensor isect_ids = at::empty({n}, opts.dtype(at::kLong));
  at::Tensor flatten_ids = at::empty({n}, opts.dtype(at::kInt));
  if (n > 0) {
    std::vector<int64_t> starts(n_buckets + 1);
    AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "isect_tiles", [&] {
      bucket_sort_isects<scalar_t>(m, rects.data(), depths.data_ptr<scalar_t>(),
                                   image_ids.data_ptr<int32_t>(), n_tiles,
                                   static_cast<int32_t>(tile_width), tile_n_bits, starts,
                                   isect_ids.data_ptr<int64_t>(), flatten_ids.data_ptr<int32_t>());
    });
  }
  return {tiles_per_gauss, isect_ids, flatten_ids};
}

// isect_ids [n] int64 -> offsets [n_images, tile_height, tile_width] int32
at::Tensor isect_offset_encode_cpu(const at::Tensor& isect_ids_in, int64_t n_images,
                                   int64_t tile_width, int64_t tile_height) {
  const char* op = "isect_offset_encode";
  const IsectOffsetPrepared p =
      prepare_isect_offset_encode(op, isect_ids_in, n_images, tile_width, tile_height);
  const at::Tensor& isect_ids = p.isect_ids;
  const at::Tensor& offsets = p.offsets;
  const int64_t n = p.n, n_tiles = p.n_tiles, n_buckets = p.n_buckets;
  const int tile_n_bits = p.tile_n_bits;
  if (n == 0) return offsets.zero_();
  const int64_t* keys = isect_ids.data_ptr<int64_t>();

  // One pass per chunk of keys: check that each names a valid (image, tile)
  // bucket not before its predecessor's, and write the offsets it starts
  // (isect_write_offsets, with each key decoded once). Each offset is written
  // by exactly one key, so chunks are independent; the first bad key found is
  // reported and the partly written offsets are discarded with the error.
  int32_t* out = offsets.data_ptr<int32_t>();
  const int64_t first_bad = at::parallel_reduce(
      0, n, kGrain * 16, n,
      [&](int64_t begin, int64_t end, int64_t acc) {
        int64_t prev = begin > 0 ? isect_key_bucket(keys[begin - 1], tile_n_bits, n_tiles) : -1;
        for (int64_t j = begin; j < end; ++j) {
          const int64_t cur = isect_key_bucket(keys[j], tile_n_bits, n_tiles);
          if (cur < 0 || cur >= n_buckets || cur < prev) return std::min(acc, j);
          for (int64_t b = prev + 1; b <= cur; ++b) out[b] = static_cast<int32_t>(j);
          prev = cur;
        }
        if (end == n)
          for (int64_t b = prev + 1; b < n_buckets; ++b) out[b] = static_cast<int32_t>(n);
        return acc;
      },
      [](int64_t a, int64_t b) { return std::min(a, b); });
  check_isect_keys_sorted(op, first_bad, n, first_bad < n ? keys[first_bad] : 0, n_images,
                          tile_width, tile_height);
  return offsets;
}

}  // namespace

TORCH_LIBRARY_IMPL(moegs, CPU, m) {
  m.impl("isect_tiles", &isect_tiles_cpu);
  m.impl("isect_offset_encode", &isect_offset_encode_cpu);
}

}  // namespace moegs
