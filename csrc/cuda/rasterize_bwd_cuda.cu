// CUDA backward of single-pass multi-expert rasterization; math in
// moegs/composite.h.
//
// Deterministic, with no floating-point atomics:
//  1. one block per (image, tile), one thread per pixel. Each pixel replays its
//     walk front to back for the exact final transmittance of every expert (as
//     the forward computed it), then walks back to front over its experts'
//     contributors. For each Gaussian of the run the block sums its pixels'
//     gradients in a fixed order (a shuffle tree within each warp, then the
//     warps in increasing order) and writes the intersection's row once;
//  2. a stable radix sort of (flatten id, intersection) gives every Gaussian
//     entry its intersections in increasing order; one thread per entry sums
//     its rows in that order, as the CPU does;
//  3. v_backgrounds sums the per-tile partials in tile order, as the CPU does.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cub/cub.cuh>
#include <torch/library.h>

#include <algorithm>
#include <cmath>

#include "moegs/checks.h"
#include "moegs/composite.h"
#include "../ops/rasterize_prepare.h"
#include "rasterize_cuda.cuh"

namespace moegs {
namespace {

using namespace rasterize_cuda;

// Columns summed per shared-memory round of BlockSum.
constexpr int kChunk = kWarpSize;

constexpr int kThreads1d = 256;
constexpr int64_t kMaxBlocks1d = int64_t(1) << 20;

// Blocks of a grid-stride loop over n > 0 items.
unsigned int blocks_1d(int64_t n) {
  return static_cast<unsigned int>(
      std::min<int64_t>((n + kThreads1d - 1) / kThreads1d, kMaxBlocks1d));
}

// The shared arguments plus per-thread scratch of the CUDA kernel.
template <typename T>
struct BwdArgs : RasterizeBwdArgs<T> {
  T* scratch;  // [I * TH * TW * threads, F]: one vector per thread
  T* behind;   // [I * TH * TW * threads, K, F]: one per thread
};

// Column sums over the threads of a block, in a fixed order: lanes by a
// shuffle tree, then warps in increasing order. Shared memory is double
// buffered, so one __syncthreads per round of kChunk columns suffices. Every
// thread of the block must make the same calls.
template <typename T>
struct BlockSum {
  T* part;    // [2, warps, kChunk] warp partial sums
  int* any;   // [2, warps] whether the warp had an active thread
  int warps;
  int buf;    // buffer of the next round

  // Sums value(c) over the threads with `active`, for c in [0, n), and calls
  // write(c, sum) from one thread per column, if any thread was active.
  template <typename Value, typename Write>
  __device__ void operator()(bool active, int64_t n, Value value, Write write) {
    const int lane = threadIdx.x % kWarpSize;
    const int warp = threadIdx.x / kWarpSize;
    const bool warp_active = __any_sync(0xffffffffu, active);
    for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
      const int m = static_cast<int>(min(int64_t(kChunk), n - c0));
      T* pb = part + buf * warps * kChunk;
      int* ab = any + buf * warps;
      if (warp_active) {
        for (int c = 0; c < m; ++c) {
          T v = active ? value(c0 + c) : T(0);
          for (int off = kWarpSize / 2; off > 0; off /= 2)
            v += __shfl_down_sync(0xffffffffu, v, off);
          if (lane == 0) pb[warp * kChunk + c] = v;
        }
      }
      if (lane == 0) ab[warp] = warp_active ? 1 : 0;
      __syncthreads();
      if (static_cast<int>(threadIdx.x) < m) {
        bool have = false;
        T sum = T(0);
        for (int w = 0; w < warps; ++w) {
          if (!ab[w]) continue;
          const T v = pb[w * kChunk + threadIdx.x];
          sum = have ? sum + v : v;
          have = true;
        }
        if (have) write(c0 + threadIdx.x, sum);
      }
      buf ^= 1;
    }
  }
};

// Stages the run positions [start, start + n) of flatten_ids in shared memory.
template <typename T>
__device__ void load_batch(const BwdArgs<T>& a, int64_t start, int n, Splat<T>* s_splat,
                           int32_t* s_flat) {
  for (int c = threadIdx.x; c < n; c += blockDim.x) {
    const int32_t g = a.flatten_ids[start + c];
    s_flat[c] = g;
    s_splat[c] = load_splat(a.means2d, a.conics, a.opacities, a.expert_ids, int64_t(g));
  }
}

// Per thread: the backward walk of one pixel with up to KB experts
// (K = d.num_experts <= KB at run time).
template <typename T, int KB>
__global__ void rasterize_bwd_kernel(BwdArgs<T> a, RasterizeDims d, CompositeParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int threads = blockDim.x;
  const int batch = min(threads, kMaxBatch);
  const int warps = threads / kWarpSize;
  T* s_part = reinterpret_cast<T*>(smem);                                 // [2, warps, kChunk]
  Splat<T>* s_splat = reinterpret_cast<Splat<T>*>(s_part + 2 * warps * kChunk);  // [batch]
  int32_t* s_flat = reinterpret_cast<int32_t*>(s_splat + batch);          // [batch]
  int* s_any = reinterpret_cast<int*>(s_flat + batch);                    // [2, warps]
  __shared__ int32_t s_last;

  const int32_t K = d.num_experts;
  const int64_t F = d.num_features;
  const int64_t plane = int64_t(d.height) * d.width;
  const int64_t num_tiles = d.num_images * d.tiles_x * d.tiles_y;
  const TilePixel px = tile_pixel(d);
  const T alpha_max = T(p.alpha_max);
  const vec2<T> pixel = {T(px.x) + T(p.pixel_offset), T(px.y) + T(p.pixel_offset)};
  int64_t begin, end;
  tile_range(a.isect_offsets, num_tiles, d.num_isects, px.tile, &begin, &end);

  // Last contributor of each expert (-1 for all of a thread without a pixel);
  // the block walks the run up to the largest.
  int32_t last[KB];
  T trans[KB];
  int32_t my_last = kNoContributor;
  for (int k = 0; k < KB; ++k) {
    last[k] = kNoContributor;
    trans[k] = T(1);
  }
  if (px.inside) {
    for (int32_t k = 0; k < K; ++k) {
      last[k] = a.last_ids[(px.image * K + k) * plane + px.pixel];
      my_last = max(my_last, last[k]);
    }
  }
  if (threadIdx.x == 0) s_last = kNoContributor;
  __syncthreads();
  if (my_last != kNoContributor) atomicMax(&s_last, my_last);
  __syncthreads();
  const int64_t walk_end = int64_t(s_last) + 1;  // <= begin if no pixel has a contributor

  // 1. Replay front to back: the exact transmittance behind each expert's last
  //    contributor. All of an expert's contributors precede its last id.
  for (int64_t start = begin; start < walk_end; start += batch) {
    const int n = static_cast<int>(min(int64_t(batch), walk_end - start));
    __syncthreads();
    load_batch(a, start, n, s_splat, s_flat);
    __syncthreads();
    for (int c = 0; c < n; ++c) {
      const int64_t j = start + c;
      if (j > my_last) break;
      const Splat<T> s = s_splat[c];
      const int32_t e = s.expert;
      if (j > last[e]) continue;
      const SplatSample<T> smp = splat_sample(s, pixel, alpha_max);
      if (!smp.valid) continue;
      trans[e] = transmittance_behind(trans[e], smp.alpha);
    }
  }

  // 2. Per expert: the background gradient (a per-tile partial) and the
  //    cotangent terms of the pixel.
  BlockSum<T> block_sum{s_part, s_any, warps, 0};
  const int64_t slot = px.tile * threads + threadIdx.x;
  T* const scratch = a.scratch + slot * F;
  T* const behind = a.behind + slot * K * F;
  const T* const v_render0 = a.v_render + (px.image * K * plane + px.pixel) * F;
  const int64_t v_render_stride = plane * F;  // between the experts of the pixel
  T v_alphas[KB];
  T v_bg_dot[KB];
  for (int k = 0; k < KB; ++k) {
    v_alphas[k] = T(0);
    v_bg_dot[k] = T(0);
  }
  for (int32_t k = 0; k < K; ++k) {
    if (px.inside) {
      for (int64_t f = 0; f < F; ++f) scratch[f] = T(0);
      v_alphas[k] = a.v_alphas[(px.image * K + k) * plane + px.pixel];
      v_bg_dot[k] = composite_finish_vjp(a.backgrounds + (px.image * K + k) * F, F, trans[k],
                                         v_render0 + k * v_render_stride, scratch);
    }
    T* out = a.tile_v_backgrounds + (px.tile * K + k) * F;
    block_sum(
        px.inside, F, [&](int64_t c) { return scratch[c]; },
        [&](int64_t c, T v) { out[c] = v; });
  }
  if (px.inside) {
    for (int64_t c = 0; c < K * F; ++c) behind[c] = T(0);
  }

  // 3. Back to front over the run. The transmittance in front of each
  //    contributor is recovered from the one behind it.
  T t_cur[KB];
  for (int k = 0; k < KB; ++k) t_cur[k] = trans[k];
  const int64_t count = walk_end > begin ? walk_end - begin : 0;
  for (int64_t b = (count + batch - 1) / batch - 1; b >= 0; --b) {
    const int64_t start = begin + b * batch;
    const int n = static_cast<int>(min(int64_t(batch), walk_end - start));
    __syncthreads();
    load_batch(a, start, n, s_splat, s_flat);
    __syncthreads();
    for (int c = n - 1; c >= 0; --c) {
      const int64_t j = start + c;
      const Splat<T> s = s_splat[c];
      const int32_t e = s.expert;
      bool active = false;
      vec2<T> v_mean = {T(0), T(0)};
      vec3<T> v_conic = {T(0), T(0), T(0)};
      T v_opacity = T(0);
      if (j <= last[e]) {
        const SplatSample<T> smp = splat_sample(s, pixel, alpha_max);
        if (smp.valid) {
          active = true;
          const T trans_in = transmittance_in_front(t_cur[e], smp.alpha);
          const T* feature = a.features + int64_t(s_flat[c]) * F;
          for (int64_t f = 0; f < F; ++f) scratch[f] = T(0);
          const T v_alpha = composite_step_vjp(feature, F, smp.alpha, trans_in, trans[e],
                                               v_render0 + e * v_render_stride, v_alphas[e],
                                               v_bg_dot[e], behind + e * F, scratch);
          T v_sigma;
          splat_alpha_vjp(s.opacity, smp.vis, alpha_max, v_alpha, &v_sigma, &v_opacity);
          conic_sigma_vjp(s.conic, smp.d, v_sigma, &v_conic, &v_mean);
          t_cur[e] = trans_in;
        }
      }
      T* out = a.isect_grads + j * a.row;
      block_sum(
          active, a.row,
          [&](int64_t col) -> T {
            if (col == kRowMean) return v_mean.x;
            if (col == kRowMean + 1) return v_mean.y;
            if (col == kRowConic) return v_conic.x;
            if (col == kRowConic + 1) return v_conic.y;
            if (col == kRowConic + 2) return v_conic.z;
            if (col == kRowOpacity) return v_opacity;
            if (col < kRowFeature + F) return scratch[col - kRowFeature];
            return std::abs(col == kRowFeature + F ? v_mean.x : v_mean.y);
          },
          [&](int64_t col, T v) { out[col] = v; });
    }
  }
}

// First position of sorted[0, n) not less than key.
__device__ int64_t lower_bound(const int32_t* sorted, int64_t n, int64_t key) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (sorted[mid] < key) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// One thread per Gaussian entry: sums its intersection rows in increasing
// intersection order (sorted_ids: flatten_ids sorted stably, order: the
// intersection of each sorted position) into the per-entry gradients.
template <typename T>
__global__ void reduce_per_entry_kernel(int64_t num_entries, int64_t num_isects,
                                        const int32_t* __restrict__ sorted_ids,
                                        const int32_t* __restrict__ order,
                                        const T* __restrict__ isect_grads, int64_t row, int64_t F,
                                        bool absgrad, T* v_means2d, T* v_conics, T* v_opacities,
                                        T* v_features, T* v_means2d_abs) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t m = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; m < num_entries;
       m += stride) {
    const int64_t lo = lower_bound(sorted_ids, num_isects, m);
    const int64_t hi = lower_bound(sorted_ids, num_isects, m + 1);
    T sum[kRowFeature] = {};
    T abs_sum[2] = {};
    for (int64_t c = lo; c < hi; ++c) {
      const T* r = isect_grads + int64_t(order[c]) * row;
      for (int col = 0; col < kRowFeature; ++col) sum[col] += r[col];
      if (absgrad) {
        abs_sum[0] += r[kRowFeature + F];
        abs_sum[1] += r[kRowFeature + F + 1];
      }
    }
    v_means2d[2 * m] = sum[kRowMean];
    v_means2d[2 * m + 1] = sum[kRowMean + 1];
    for (int c = 0; c < 3; ++c) v_conics[3 * m + c] = sum[kRowConic + c];
    v_opacities[m] = sum[kRowOpacity];
    if (absgrad) {
      v_means2d_abs[2 * m] = abs_sum[0];
      v_means2d_abs[2 * m + 1] = abs_sum[1];
    }
    for (int64_t f = 0; f < F; ++f) {
      T s = T(0);
      for (int64_t c = lo; c < hi; ++c) s += isect_grads[int64_t(order[c]) * row + kRowFeature + f];
      v_features[m * F + f] = s;
    }
  }
}

// v_backgrounds [I, K, F]: one thread per element sums the per-tile partials
// of its image in tile order.
template <typename T>
__global__ void reduce_per_image_kernel(int64_t num_images, int64_t tiles_per_image, int64_t n,
                                        const T* __restrict__ tile_v_backgrounds,
                                        T* __restrict__ v_backgrounds) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; x < num_images * n;
       x += stride) {
    const int64_t i = x / n;
    const int64_t c = x % n;
    T sum = T(0);
    for (int64_t t = 0; t < tiles_per_image; ++t)
      sum += tile_v_backgrounds[(i * tiles_per_image + t) * n + c];
    v_backgrounds[x] = sum;
  }
}

// flatten_ids [n] -> (flatten_ids sorted, the intersection index of each
// sorted position): a stable radix sort, so each entry's intersections stay in
// increasing order.
std::tuple<at::Tensor, at::Tensor> sort_by_entry(const at::Tensor& flatten_ids,
                                                 int64_t num_entries, cudaStream_t stream) {
  const int n = static_cast<int>(flatten_ids.numel());
  int end_bit = 1;
  while (end_bit < 32 && (int64_t(1) << end_bit) < num_entries) ++end_bit;
  const at::Tensor index = at::arange(n, flatten_ids.options());
  at::Tensor keys_out = at::empty_like(flatten_ids);
  at::Tensor index_out = at::empty_like(flatten_ids);
  // flatten_ids are checked non-negative: sort them as unsigned keys.
  const auto* keys_in = reinterpret_cast<const uint32_t*>(flatten_ids.data_ptr<int32_t>());
  auto* keys = reinterpret_cast<uint32_t*>(keys_out.data_ptr<int32_t>());
  size_t temp_bytes = 0;
  C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, temp_bytes, keys_in, keys, index.data_ptr<int32_t>(),
      index_out.data_ptr<int32_t>(), n, 0, end_bit, stream));
  at::Tensor temp = at::empty({static_cast<int64_t>(temp_bytes)},
                              flatten_ids.options().dtype(at::kByte));
  C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      temp.data_ptr(), temp_bytes, keys_in, keys, index.data_ptr<int32_t>(),
      index_out.data_ptr<int32_t>(), n, 0, end_bit, stream));
  return {keys_out, index_out};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
rasterize_experts_bwd_cuda(const at::Tensor& means2d_in, const at::Tensor& conics_in,
                           const at::Tensor& opacities_in, const at::Tensor& features_in,
                           const at::Tensor& expert_ids_in, const at::Tensor& backgrounds_in,
                           const at::Tensor& isect_offsets_in, const at::Tensor& flatten_ids_in,
                           int64_t width, int64_t height, int64_t tile_size, int64_t num_experts,
                           double alpha_max, double min_transmittance, double pixel_offset,
                           const at::Tensor& alphas_in, const at::Tensor& last_ids_in,
                           const at::Tensor& v_render_in, const at::Tensor& v_alphas_in,
                           bool absgrad) {
  const char* op = "rasterize_experts_bwd";
  const RasterizeBwdPrepared p = prepare_rasterize_bwd(
      op, means2d_in, conics_in, opacities_in, features_in, expert_ids_in, backgrounds_in,
      isect_offsets_in, flatten_ids_in, width, height, tile_size, num_experts, alpha_max,
      min_transmittance, pixel_offset, alphas_in, last_ids_in, v_render_in, v_alphas_in, absgrad,
      [&](const RasterizeDims& d) { check_cuda_launch(op, means2d_in, d); });
  const c10::cuda::CUDAGuard guard(p.in.means2d.device());

  const RasterizeDims& d = p.d;
  const int64_t F = d.num_features;
  const int64_t tiles_per_image = int64_t(d.tiles_x) * d.tiles_y;
  const int64_t num_tiles = p.num_tiles;
  const int threads = block_threads(d.tile_size);
  const at::TensorOptions opts = p.in.means2d.options();
  at::Tensor scratch = at::empty({num_tiles * threads, F}, opts);
  at::Tensor behind = at::empty({num_tiles * threads, d.num_experts, F}, opts);

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(p.in.means2d.scalar_type(), "rasterize_experts_bwd", [&] {
    const BwdArgs<scalar_t> a{p.args<scalar_t>(), scratch.data_ptr<scalar_t>(),
                              behind.data_ptr<scalar_t>()};

    // 1. per-intersection rows and per-tile background partials
    if (num_tiles > 0) {
      const int warps = threads / kWarpSize;
      const size_t smem = 2 * warps * kChunk * sizeof(scalar_t) +
                          batch_size(threads) * (sizeof(Splat<scalar_t>) + sizeof(int32_t)) +
                          2 * warps * sizeof(int);
      launch_per_tile(
          op, d, num_tiles, threads, smem, stream,
          [](auto bound) { return rasterize_bwd_kernel<scalar_t, decltype(bound)::value>; }, a,
          d, p.params);
    }

    // 2. per-entry sums
    if (d.num_entries > 0 && d.num_isects > 0) {
      at::Tensor sorted_ids, order;
      std::tie(sorted_ids, order) = sort_by_entry(p.in.flatten_ids, d.num_entries, stream);
      reduce_per_entry_kernel<scalar_t><<<blocks_1d(d.num_entries), kThreads1d, 0, stream>>>(
          d.num_entries, d.num_isects, sorted_ids.data_ptr<int32_t>(), order.data_ptr<int32_t>(),
          a.isect_grads, a.row, F, a.absgrad, p.v_means2d.data_ptr<scalar_t>(),
          p.v_conics.data_ptr<scalar_t>(), p.v_opacities.data_ptr<scalar_t>(),
          p.v_features.data_ptr<scalar_t>(),
          a.absgrad ? p.v_means2d_abs.data_ptr<scalar_t>() : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {
      for (const at::Tensor* t :
           {&p.v_means2d, &p.v_conics, &p.v_opacities, &p.v_features, &p.v_means2d_abs})
        t->zero_();
    }

    // 3. v_backgrounds
    const int64_t n_bg = d.num_experts * F;
    if (d.num_images > 0) {
      reduce_per_image_kernel<scalar_t>
          <<<blocks_1d(d.num_images * n_bg), kThreads1d, 0, stream>>>(
              d.num_images, tiles_per_image, n_bg, a.tile_v_backgrounds,
              p.v_backgrounds.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });

  return p.outputs();
}

}  // namespace

TORCH_LIBRARY_IMPL(moegs, CUDA, m) {
  m.impl("rasterize_experts_bwd", &rasterize_experts_bwd_cuda);
}

}  // namespace moegs
