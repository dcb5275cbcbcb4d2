// CUDA tile intersection and per-tile offsets; tile ranges, key layout and the
// offset rule in moegs/tiles.h (the same functions the CPU loops call).
//
// isect_tiles: per-entry tile rectangles and counts -> exclusive scan of the
// counts (each entry's first slot) -> keys and flatten ids written in
// flatten-id order -> stable radix sort of the keys. The CPU orders exact key
// ties by flatten id; a stable sort of keys filled in flatten-id order gives
// that same order, so the outputs equal the CPU's bit for bit.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cub/cub.cuh>

#include <algorithm>

#include "moegs/tiles.h"
#include "launch.cuh"
#include "../ops/isect_prepare.h"

namespace moegs {
namespace {


// Tile rectangle and count of every entry.
// means2d [M, 2], radii [M, 2] -> rects [M], tiles_per_gauss [M] int32, counts [M] int64
template <typename T>
__global__ void tile_rects_kernel(int64_t m, const T* __restrict__ means2d,
                                  const int32_t* __restrict__ radii, int32_t tile_size,
                                  int32_t tile_width, int32_t tile_height,
                                  TileRect* __restrict__ rects, int32_t* __restrict__ tiles_per_gauss,
                                  int64_t* __restrict__ counts) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < m; i += stride) {
    const TileRect r = tile_rect(means2d[2 * i], means2d[2 * i + 1], radii[2 * i],
                                 radii[2 * i + 1], tile_size, tile_width, tile_height);
    rects[i] = r;
    const int64_t area = tile_rect_area(r);
    tiles_per_gauss[i] = static_cast<int32_t>(area);
    counts[i] = area;
  }
}

// Keys and flatten ids of every intersection, entry i at slots
// [first[i], first[i] + count): rects, depths, image_ids, first [M]
// -> isect_ids [n] int64, flatten_ids [n] int32 (unsorted).
template <typename T>
__global__ void fill_isects_kernel(int64_t m, const TileRect* __restrict__ rects,
                                   const T* __restrict__ depths,
                                   const int32_t* __restrict__ image_ids,
                                   const int64_t* __restrict__ first, int32_t tile_width,
                                   int tile_n_bits, int64_t* __restrict__ isect_ids,
                                   int32_t* __restrict__ flatten_ids) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < m; i += stride) {
    const TileRect r = rects[i];
    const uint32_t depth_bits = depth_key_bits(depths[i]);
    int64_t j = first[i];
    for (int32_t ty = r.y0; ty < r.y1; ++ty)
      for (int32_t tx = r.x0; tx < r.x1; ++tx, ++j) {
        isect_ids[j] =
            isect_key(image_ids[i], int64_t(ty) * tile_width + tx, depth_bits, tile_n_bits);
        flatten_ids[j] = static_cast<int32_t>(i);
      }
  }
}

// Lowers *first_bad to the index of every entry of keys [n] that breaks the
// offsets contract (integer atomicMin: the result is the first such entry).
__global__ void find_bad_key_kernel(int64_t n, const int64_t* __restrict__ keys, int tile_n_bits,
                                    int64_t n_tiles, int64_t n_buckets,
                                    unsigned long long* first_bad) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < n; j += stride) {
    if (isect_key_bad(keys, j, tile_n_bits, n_tiles, n_buckets)) {
      atomicMin(first_bad, static_cast<unsigned long long>(j));
    }
  }
}

// keys [n] sorted and valid -> offsets [n_buckets]; every bucket written once.
__global__ void write_offsets_kernel(int64_t n, const int64_t* __restrict__ keys, int tile_n_bits,
                                     int64_t n_tiles, int64_t n_buckets,
                                     int32_t* __restrict__ offsets) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < n; j += stride) {
    isect_write_offsets(keys, j, n, tile_n_bits, n_tiles, n_buckets, offsets);
  }
}

// Scratch memory for CUB, from the caching allocator.
at::Tensor cub_temp(size_t bytes, const at::TensorOptions& opts) {
  return at::empty({static_cast<int64_t>(std::max<size_t>(bytes, 1))}, opts.dtype(at::kByte));
}

// counts [m + 1] int64 (last entry 0) -> first [m + 1]: exclusive prefix sums;
// first[m] is the total.
void exclusive_sum(const at::Tensor& counts, at::Tensor& first, cudaStream_t stream) {
  const int64_t len = counts.size(0);
  size_t bytes = 0;
  C10_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, counts.data_ptr<int64_t>(),
                                               first.data_ptr<int64_t>(), len, stream));
  at::Tensor temp = cub_temp(bytes, counts.options());
  C10_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp.data_ptr(), bytes,
                                               counts.data_ptr<int64_t>(),
                                               first.data_ptr<int64_t>(), len, stream));
}

// Stable sort of (keys_in, ids_in) [n] by the low end_bit bits of the keys
// into (keys_out, ids_out). Keys are non-negative, so these bits hold their
// whole value.
void sort_isects(const at::Tensor& keys_in, const at::Tensor& ids_in, at::Tensor& keys_out,
                 at::Tensor& ids_out, int end_bit, cudaStream_t stream) {
  const int64_t n = keys_in.size(0);
  size_t bytes = 0;
  C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, keys_in.data_ptr<int64_t>(), keys_out.data_ptr<int64_t>(),
      ids_in.data_ptr<int32_t>(), ids_out.data_ptr<int32_t>(), n, 0, end_bit, stream));
  at::Tensor temp = cub_temp(bytes, keys_in.options());
  C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      temp.data_ptr(), bytes, keys_in.data_ptr<int64_t>(), keys_out.data_ptr<int64_t>(),
      ids_in.data_ptr<int32_t>(), ids_out.data_ptr<int32_t>(), n, 0, end_bit, stream));
}

// means2d [M, 2], radii [M, 2] int32, depths [M], image_ids [M] int32
//   -> (tiles_per_gauss [M] int32, isect_ids [n] int64, flatten_ids [n] int32)
std::tuple<at::Tensor, at::Tensor, at::Tensor> isect_tiles_cuda(
    const at::Tensor& means2d_in, const at::Tensor& radii_in, const at::Tensor& depths_in,
    const at::Tensor& image_ids_in, int64_t n_images, int64_t tile_size, int64_t tile_width,
    int64_t tile_height) {
  const char* op = "isect_tiles";
  const IsectTilesPrepared p = prepare_isect_tiles(op, means2d_in, radii_in, depths_in,
                                                   image_ids_in, n_images, tile_size, tile_width,
                                                   tile_height);
  const c10::cuda::CUDAGuard guard(p.means2d.device());
  const at::Tensor& means2d = p.means2d;
  const at::Tensor& radii = p.radii;
  const at::Tensor& depths = p.depths;
  const at::Tensor& image_ids = p.image_ids;
  const at::Tensor& tiles_per_gauss = p.tiles_per_gauss;
  const int64_t m = p.m;
  const int tile_n_bits = p.tile_n_bits;
  const int image_n_bits = bit_length(static_cast<uint64_t>(n_images));
  const auto opts = means2d.options();

  if (m == 0) {
    return {tiles_per_gauss, at::empty({0}, opts.dtype(at::kLong)),
            at::empty({0}, opts.dtype(at::kInt))};
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  // Rectangles and counts; counts[m] = 0 so that first[m] is the total.
  static_assert(sizeof(TileRect) == 4 * sizeof(int32_t), "TileRect is four int32");
  at::Tensor rects = at::empty({m, 4}, opts.dtype(at::kInt));
  at::Tensor counts = at::empty({m + 1}, opts.dtype(at::kLong));
  counts.narrow(0, m, 1).zero_();
  TileRect* rects_ptr = reinterpret_cast<TileRect*>(rects.data_ptr<int32_t>());
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "isect_tiles", [&] {
    tile_rects_kernel<scalar_t><<<blocks_for(m), kThreads, 0, stream>>>(
        m, means2d.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(),
        static_cast<int32_t>(tile_size), static_cast<int32_t>(tile_width),
        static_cast<int32_t>(tile_height), rects_ptr, tiles_per_gauss.data_ptr<int32_t>(),
        counts.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  at::Tensor first = at::empty({m + 1}, opts.dtype(at::kLong));
  exclusive_sum(counts, first, stream);
  const int64_t n = first[m].item<int64_t>();  // synchronises: n sizes the outputs
  check_isect_count(op, n);

  at::Tensor isect_ids = at::empty({n}, opts.dtype(at::kLong));
  at::Tensor flatten_ids = at::empty({n}, opts.dtype(at::kInt));
  if (n == 0) return {tiles_per_gauss, isect_ids, flatten_ids};

  at::Tensor keys_unsorted = at::empty({n}, opts.dtype(at::kLong));
  at::Tensor ids_unsorted = at::empty({n}, opts.dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "isect_tiles", [&] {
    fill_isects_kernel<scalar_t><<<blocks_for(m), kThreads, 0, stream>>>(
        m, rects_ptr, depths.data_ptr<scalar_t>(), image_ids.data_ptr<int32_t>(),
        first.data_ptr<int64_t>(), static_cast<int32_t>(tile_width), tile_n_bits,
        keys_unsorted.data_ptr<int64_t>(), ids_unsorted.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  // Only the depth, tile and image fields can be non-zero.
  sort_isects(keys_unsorted, ids_unsorted, isect_ids, flatten_ids, 32 + tile_n_bits + image_n_bits,
              stream);
  return {tiles_per_gauss, isect_ids, flatten_ids};
}

// isect_ids [n] int64 -> offsets [n_images, tile_height, tile_width] int32
at::Tensor isect_offset_encode_cuda(const at::Tensor& isect_ids_in, int64_t n_images,
                                    int64_t tile_width, int64_t tile_height) {
  const char* op = "isect_offset_encode";
  const IsectOffsetPrepared p =
      prepare_isect_offset_encode(op, isect_ids_in, n_images, tile_width, tile_height);
  const c10::cuda::CUDAGuard guard(p.isect_ids.device());
  const at::Tensor& isect_ids = p.isect_ids;
  const at::Tensor& offsets = p.offsets;
  const int64_t n = p.n, n_tiles = p.n_tiles, n_buckets = p.n_buckets;
  const int tile_n_bits = p.tile_n_bits;
  if (n == 0) return offsets.zero_();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t* keys = isect_ids.data_ptr<int64_t>();

  // Keys must name valid (image, tile) pairs in non-decreasing order.
  at::Tensor first_bad = at::full({1}, n, isect_ids.options());
  find_bad_key_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
      n, keys, tile_n_bits, n_tiles, n_buckets,
      reinterpret_cast<unsigned long long*>(first_bad.data_ptr<int64_t>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t bad = first_bad.item<int64_t>();
  check_isect_keys_sorted(op, bad, n, bad < n ? isect_ids[bad].item<int64_t>() : 0, n_images,
                          tile_width, tile_height);

  write_offsets_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
      n, keys, tile_n_bits, n_tiles, n_buckets, offsets.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return offsets;
}

}  // namespace

TORCH_LIBRARY_IMPL(moegs, CUDA, m) {
  m.impl("isect_tiles", &isect_tiles_cuda);
  m.impl("isect_offset_encode", &isect_offset_encode_cuda);
}

}  // namespace moegs
