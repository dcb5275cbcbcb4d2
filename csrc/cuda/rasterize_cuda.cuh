// Launch configuration and tile indexing shared by the CUDA rasterization
// kernels (rasterize_fwd_cuda.cu, rasterize_bwd_cuda.cu). No math here: the
// formulas are in moegs/composite.h.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "moegs/checks.h"
#include "moegs/composite.h"

namespace moegs {
namespace rasterize_cuda {

constexpr int kWarpSize = 32;
// One thread per pixel of a tile, at most 1024 threads per block.
constexpr int64_t kMaxTileSize = 32;
// Most Gaussians staged in shared memory at a time.
constexpr int kMaxBatch = 256;

// Compile-time bounds on the number of experts K; a call runs the smallest
// bound >= K, so the per-thread expert state of K = 1 stays in registers. The
// one list of specialisations.
template <typename Fn>
void dispatch_expert_bound(int32_t num_experts, Fn&& fn) {
  static_assert(kMaxExperts == 16, "update the list of expert bounds");
  if (num_experts <= 1) {
    fn(std::integral_constant<int, 1>{});
  } else if (num_experts <= 4) {
    fn(std::integral_constant<int, 4>{});
  } else if (num_experts <= 8) {
    fn(std::integral_constant<int, 8>{});
  } else {
    fn(std::integral_constant<int, 16>{});
  }
}

// Threads per block: one per pixel of a tile, rounded up to whole warps (the
// extra threads hold no pixel but take part in loads and reductions).
inline int block_threads(int32_t tile_size) {
  const int pixels = tile_size * tile_size;
  return (pixels + kWarpSize - 1) / kWarpSize * kWarpSize;
}

// Gaussians per shared-memory batch.
inline int batch_size(int threads) { return std::min(threads, kMaxBatch); }

// Device-side checks of the CUDA wrappers, after the shared checks passed.
inline void check_cuda_launch(const char* op, const at::Tensor& means2d, const RasterizeDims& d) {
  MOEGS_CHECK(op, means2d.is_cuda(), "expected CUDA tensors, got means2d on ", means2d.device());
  MOEGS_CHECK(op, d.tile_size <= kMaxTileSize, "tile_size must be at most ", kMaxTileSize,
              " on CUDA (one thread per pixel of a tile), got ", d.tile_size);
  const int64_t num_tiles = d.num_images * d.tiles_x * d.tiles_y;
  MOEGS_CHECK(op, num_tiles <= std::numeric_limits<int32_t>::max(), "too many tiles (", num_tiles,
              ") for one launch");
  MOEGS_CHECK(op, d.num_isects <= std::numeric_limits<int32_t>::max(),
              "at most 2^31 - 1 intersections on CUDA, got ", d.num_isects);
}

// The block of one tile must fit the kernel's register budget on this device
// (the backward kernels use more registers per thread than the forward).
template <typename Kernel>
void check_block_fits(const char* op, Kernel* kernel, int threads, int32_t tile_size) {
  cudaFuncAttributes attr;
  C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
  MOEGS_CHECK(op, threads <= attr.maxThreadsPerBlock, "tile_size ", tile_size, " needs ",
              threads, " threads per block, this kernel runs at most ", attr.maxThreadsPerBlock,
              " on this device; use a smaller tile_size");
}

// Launches one block of `threads` per tile, kernel_for(bound) giving the
// kernel specialised for the expert bound of d.num_experts.
template <typename KernelFor, typename... Args>
void launch_per_tile(const char* op, const RasterizeDims& d, int64_t num_tiles, int threads,
                     size_t smem, cudaStream_t stream, KernelFor&& kernel_for,
                     const Args&... args) {
  dispatch_expert_bound(d.num_experts, [&](auto bound) {
    auto* kernel = kernel_for(bound);
    check_block_fits(op, kernel, threads, d.tile_size);
    kernel<<<static_cast<unsigned int>(num_tiles), threads, smem, stream>>>(args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

// The pixel of this thread in the block's tile (blockIdx.x numbers the tiles
// of all images consecutively, as tile_range does).
struct TilePixel {
  int64_t tile;    // flat tile index over [I, TH, TW]
  int64_t image;   // i
  int64_t pixel;   // y * W + x inside the image
  int32_t x, y;
  bool inside;     // the thread holds a pixel of the image
};

__device__ __forceinline__ TilePixel tile_pixel(const RasterizeDims& d) {
  TilePixel p;
  const int64_t tiles_per_image = int64_t(d.tiles_x) * d.tiles_y;
  p.tile = blockIdx.x;
  p.image = p.tile / tiles_per_image;
  const int32_t ty = static_cast<int32_t>((p.tile % tiles_per_image) / d.tiles_x);
  const int32_t tx = static_cast<int32_t>(p.tile % d.tiles_x);
  const int32_t tid = static_cast<int32_t>(threadIdx.x);
  p.x = tx * d.tile_size + tid % d.tile_size;
  p.y = ty * d.tile_size + tid / d.tile_size;
  p.inside = tid < d.tile_size * d.tile_size && p.x < d.width && p.y < d.height;
  p.pixel = int64_t(p.y) * d.width + p.x;
  return p;
}

// Bit mask of the first num_experts experts.
__device__ __forceinline__ uint32_t all_experts(int32_t num_experts) {
  return num_experts >= 32 ? ~0u : (1u << num_experts) - 1u;
}

}  // namespace rasterize_cuda
}  // namespace moegs
