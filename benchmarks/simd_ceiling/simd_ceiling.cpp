// SIMD ceiling of the compositing loop on this machine: the idealised blend of
// one tile, pixels as SIMD lanes, Gaussians as the outer loop, everything in L1:
//
//   alpha = min(0.999, o exp(-1/2 (a dx^2 + 2 b dx dy + c dy^2)))
//   skip if sigma < 0 or alpha < 1/255;  next = T (1 - alpha)
//   rgb += c alpha T;  T = next            (no early termination: every pair runs)
//
// Built by benchmarks/simd_ceiling/run.sh three ways (scalar, auto-vectorised for the
// host, AVX-512 intrinsics when the CPU has them); prints one line per variant:
//   <variant> <threads> <pairs per second>
// The exponential is the rasterizer's own (csrc/cpu/exp_cpu.h), here with FMA
// allowed, and arguments clamped so nothing
// underflows to a denormal.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "../../csrc/cpu/exp_cpu.h"
#ifdef __AVX512F__
#include <immintrin.h>
#endif

constexpr int kPix = 256;  // a 16 x 16 tile
constexpr int kG = 512;    // Gaussians per tile run

struct Gauss { float mx, my, a, b, c, o, r, g, bl; };

using moegs::exp_cpu;

#if defined(SCALAR)
__attribute__((optimize("no-tree-vectorize")))
#endif
static void blend_tile_plain(const Gauss* gs, const float* px, const float* py, float* T,
                             float* rgb) {
  for (int q = 0; q < kG; ++q) {
    const Gauss g = gs[q];
#if !defined(SCALAR)
#pragma omp simd
#endif
    for (int l = 0; l < kPix; ++l) {
      const float dx = g.mx - px[l], dy = g.my - py[l];
      const float sigma = 0.5f * (g.a * dx * dx + g.c * dy * dy) + g.b * dx * dy;
      float alpha = g.o * exp_cpu(-sigma);
      alpha = alpha < 0.999f ? alpha : 0.999f;
      const bool ok = !(sigma < 0.0f) && !(alpha < 1.0f / 255.0f);
      const float t = T[l];
      const float w = ok ? alpha * t : 0.0f;
      rgb[l] += g.r * w;
      rgb[kPix + l] += g.g * w;
      rgb[2 * kPix + l] += g.bl * w;
      T[l] = ok ? t * (1.0f - alpha) : t;
    }
  }
}

#ifdef __AVX512F__
static inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-86.0f));
  x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

static void blend_tile_avx512(const Gauss* gs, const float* px, const float* py, float* T,
                              float* rgb) {
  const __m512 half = _mm512_set1_ps(0.5f), amax = _mm512_set1_ps(0.999f);
  const __m512 thr = _mm512_set1_ps(1.0f / 255.0f), one = _mm512_set1_ps(1.0f);
  const __m512 zero = _mm512_setzero_ps();
  for (int q = 0; q < kG; ++q) {
    const Gauss g = gs[q];
    const __m512 mx = _mm512_set1_ps(g.mx), my = _mm512_set1_ps(g.my);
    const __m512 a = _mm512_set1_ps(g.a), b = _mm512_set1_ps(g.b), c = _mm512_set1_ps(g.c);
    const __m512 o = _mm512_set1_ps(g.o);
    const __m512 cr = _mm512_set1_ps(g.r), cg = _mm512_set1_ps(g.g), cb = _mm512_set1_ps(g.bl);
    for (int l = 0; l < kPix; l += 16) {
      const __m512 dx = _mm512_sub_ps(mx, _mm512_loadu_ps(px + l));
      const __m512 dy = _mm512_sub_ps(my, _mm512_loadu_ps(py + l));
      const __m512 quad = _mm512_fmadd_ps(_mm512_mul_ps(a, dx), dx, _mm512_mul_ps(_mm512_mul_ps(c, dy), dy));
      const __m512 sigma = _mm512_fmadd_ps(half, quad, _mm512_mul_ps(_mm512_mul_ps(b, dx), dy));
      const __m512 alpha = _mm512_min_ps(_mm512_mul_ps(o, exp512(_mm512_sub_ps(zero, sigma))), amax);
      const __mmask16 ok = _mm512_cmp_ps_mask(sigma, zero, _CMP_GE_OQ) &
                           _mm512_cmp_ps_mask(alpha, thr, _CMP_GE_OQ);
      const __m512 t = _mm512_loadu_ps(T + l);
      const __m512 w = _mm512_maskz_mul_ps(ok, alpha, t);
      _mm512_storeu_ps(rgb + l, _mm512_fmadd_ps(cr, w, _mm512_loadu_ps(rgb + l)));
      _mm512_storeu_ps(rgb + kPix + l, _mm512_fmadd_ps(cg, w, _mm512_loadu_ps(rgb + kPix + l)));
      _mm512_storeu_ps(rgb + 2 * kPix + l,
                       _mm512_fmadd_ps(cb, w, _mm512_loadu_ps(rgb + 2 * kPix + l)));
      _mm512_storeu_ps(T + l, _mm512_mask_mul_ps(t, ok, t, _mm512_sub_ps(one, alpha)));
    }
  }
}
#endif

// Pairs per second of `threads` threads each blending its own tile `reps` times.
template <typename Fn>
static double run(Fn blend, int threads, double seconds) {
  std::vector<Gauss> gs(kG);
  unsigned s = 12345;
  auto u = [&s]() { s = s * 1664525u + 1013904223u; return (s >> 8) * (1.0f / 16777216.0f); };
  for (auto& g : gs) {
    // Footprints like the benchmark scene's (a few pixels), spread over the tile.
    const float sd = 1.0f + 4.0f * u();
    g = {16.0f * u(), 16.0f * u(), 1.0f / (sd * sd), 0.2f * (u() - 0.5f) / (sd * sd),
         1.0f / (sd * sd), 0.1f + 0.8f * u(), u(), u(), u()};
  }
  std::vector<float> px(kPix), py(kPix);
  for (int l = 0; l < kPix; ++l) { px[l] = (l % 16) + 0.5f; py[l] = (l / 16) + 0.5f; }
  std::vector<long> counts(threads, 0);
  std::vector<float> sink(threads, 0.0f);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int w = 0; w < threads; ++w) {
    pool.emplace_back([&, w]() {
      std::vector<float> T(kPix), rgb(3 * kPix);
      long n = 0;
      while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds) {
        for (int rep = 0; rep < 20; ++rep) {
          std::fill(T.begin(), T.end(), 1.0f);
          std::fill(rgb.begin(), rgb.end(), 0.0f);
          blend(gs.data(), px.data(), py.data(), T.data(), rgb.data());
          n += long(kPix) * kG;
          sink[w] += rgb[7];
        }
      }
      counts[w] = n;
    });
  }
  for (auto& t : pool) t.join();
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  long total = 0;
  for (long c : counts) total += c;
  if (sink[0] == 12345.0f) std::printf("#\n");
  return total / dt;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 1.0;
#if defined(SCALAR)
  std::printf("scalar %d %.6e\n", threads, run(blend_tile_plain, threads, seconds));
#else
  std::printf("autovec %d %.6e\n", threads, run(blend_tile_plain, threads, seconds));
#ifdef __AVX512F__
  std::printf("avx512_intrinsics %d %.6e\n", threads, run(blend_tile_avx512, threads, seconds));
#endif
#endif
  return 0;
}
