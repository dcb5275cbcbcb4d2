// CUDA forward of single-pass multi-expert rasterization: one block per
// (image, tile), one thread per pixel, the tile's run staged in shared memory
// batch by batch. Same walk as csrc/cpu/rasterize_fwd_cpu.cpp; math in
// moegs/composite.h.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "moegs/checks.h"
#include "moegs/composite.h"
#include "../ops/rasterize_prepare.h"
#include "rasterize_cuda.cuh"

namespace moegs {
namespace {

using namespace rasterize_cuda;

// Experts with at least one Gaussian in the run [begin, end) of the block's
// tile, as a bit mask (integer OR: the result does not depend on the order).
template <int KB>
__device__ uint32_t experts_present(const int32_t* expert_ids, const int32_t* flatten_ids,
                                    int64_t begin, int64_t end) {
  if (KB == 1) return begin < end ? 1u : 0u;
  __shared__ uint32_t s_present;
  if (threadIdx.x == 0) s_present = 0u;
  __syncthreads();
  uint32_t mine = 0u;
  for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x)
    mine |= 1u << expert_ids[flatten_ids[j]];
  if (mine != 0u) atomicOr(&s_present, mine);
  __syncthreads();
  return s_present;
}

// Per thread: the pixel's walk over the tile's run, front to back, with the
// state of up to KB experts (K = d.num_experts <= KB at run time).
template <typename T, int KB>
__global__ void rasterize_fwd_kernel(RasterizeFwdArgs<T> a, RasterizeDims d, CompositeParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int batch = min(static_cast<int>(blockDim.x), kMaxBatch);
  Splat<T>* s_splat = reinterpret_cast<Splat<T>*>(smem);      // [batch]
  int32_t* s_flat = reinterpret_cast<int32_t*>(s_splat + batch);  // [batch]

  const int32_t K = d.num_experts;
  const int64_t F = d.num_features;
  const int64_t plane = int64_t(d.height) * d.width;
  const int64_t num_tiles = d.num_images * d.tiles_x * d.tiles_y;
  const TilePixel px = tile_pixel(d);
  const T alpha_max = T(p.alpha_max);
  const T min_t = T(p.min_transmittance);
  const vec2<T> pixel = {T(px.x) + T(p.pixel_offset), T(px.y) + T(p.pixel_offset)};
  int64_t begin, end;
  tile_range(a.isect_offsets, num_tiles, d.num_isects, px.tile, &begin, &end);

  // Experts not in the run start as done (as on the CPU); so do all experts
  // of a thread without a pixel.
  const uint32_t all = all_experts(K);
  const uint32_t present = experts_present<KB>(a.expert_ids, a.flatten_ids, begin, end);
  uint32_t done = px.inside ? (all & ~present) : all;
  T trans[KB];
  int32_t last[KB];
  // Row of expert k of this pixel in render [I, K, H, W, F]: the accumulator.
  T* const acc0 = a.render + (px.image * K * plane + px.pixel) * F;
  const int64_t acc_stride = plane * F;
  for (int k = 0; k < KB; ++k) {
    trans[k] = T(1);
    last[k] = kNoContributor;
  }
  if (px.inside) {
    for (int32_t k = 0; k < K; ++k)
      for (int64_t f = 0; f < F; ++f) acc0[k * acc_stride + f] = T(0);
  }

  for (int64_t start = begin; start < end; start += batch) {
    // Also keeps the batch in shared memory until every thread is past it.
    if (__syncthreads_count(done == all) == static_cast<int>(blockDim.x)) break;
    const int n = static_cast<int>(min(int64_t(batch), end - start));
    for (int c = threadIdx.x; c < n; c += blockDim.x) {
      const int32_t g = a.flatten_ids[start + c];
      s_flat[c] = g;
      s_splat[c] = load_splat(a.means2d, a.conics, a.opacities, a.expert_ids, int64_t(g));
    }
    __syncthreads();
    for (int c = 0; c < n && done != all; ++c) {
      const Splat<T> s = s_splat[c];
      const int32_t e = s.expert;
      if ((done >> e) & 1u) continue;
      const SplatSample<T> smp = splat_sample(s, pixel, alpha_max);
      if (!smp.valid) continue;
      const T* feature = a.features + int64_t(s_flat[c]) * F;
      if (composite_step(feature, F, smp.alpha, min_t, &trans[e], acc0 + e * acc_stride)) {
        last[e] = static_cast<int32_t>(start + c);
      } else {
        done |= 1u << e;
      }
    }
  }

  if (!px.inside) return;
  for (int32_t k = 0; k < K; ++k) {
    const int64_t o = (px.image * K + k) * plane + px.pixel;
    T* acc = acc0 + k * acc_stride;
    composite_finish(acc, a.backgrounds + (px.image * K + k) * F, F, trans[k], acc);
    a.alphas[o] = T(1) - trans[k];
    a.last_ids[o] = last[k];
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rasterize_experts_fwd_cuda(
    const at::Tensor& means2d_in, const at::Tensor& conics_in, const at::Tensor& opacities_in,
    const at::Tensor& features_in, const at::Tensor& expert_ids_in,
    const at::Tensor& backgrounds_in, const at::Tensor& isect_offsets_in,
    const at::Tensor& flatten_ids_in, int64_t width, int64_t height, int64_t tile_size,
    int64_t num_experts, double alpha_max, double min_transmittance, double pixel_offset,
    bool /*absgrad: read by the backward only*/) {
  const char* op = "rasterize_experts_fwd";
  const RasterizeFwdPrepared p = prepare_rasterize_fwd(
      op, means2d_in, conics_in, opacities_in, features_in, expert_ids_in, backgrounds_in,
      isect_offsets_in, flatten_ids_in, width, height, tile_size, num_experts, alpha_max,
      min_transmittance, pixel_offset,
      [&](const RasterizeDims& d) { check_cuda_launch(op, means2d_in, d); });
  const RasterizeDims& d = p.d;
  const int64_t num_tiles = d.num_images * d.tiles_x * d.tiles_y;
  if (num_tiles == 0) return p.outputs();

  const c10::cuda::CUDAGuard guard(p.in.means2d.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int threads = block_threads(d.tile_size);
  AT_DISPATCH_FLOATING_TYPES(p.in.means2d.scalar_type(), "rasterize_experts_fwd", [&] {
    const RasterizeFwdArgs<scalar_t> a = p.args<scalar_t>();
    const size_t smem = batch_size(threads) * (sizeof(Splat<scalar_t>) + sizeof(int32_t));
    launch_per_tile(
        op, d, num_tiles, threads, smem, stream,
        [](auto bound) { return rasterize_fwd_kernel<scalar_t, decltype(bound)::value>; }, a, d,
        p.params);
  });
  return p.outputs();
}

}  // namespace

TORCH_LIBRARY_IMPL(moegs, CUDA, m) {
  m.impl("rasterize_experts_fwd", &rasterize_experts_fwd_cuda);
}

}  // namespace moegs
