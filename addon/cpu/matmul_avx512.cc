// AVX-512 matmul: weight-streaming GEMV for decode, packed-panel GEMM for prefill.
// GCC 12's AVX-512 intrinsics (_mm512_undefined_*) trip -Wuninitialized when inlined: a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <stdlib.h>

#include <cstdint>

#include "cpu/convert.h"
#include "cpu/matmul.h"

namespace sgl {

namespace {

// Loading 16 weights of each stored dtype as f32.
struct WBf16 {
  using E = uint16_t;
  static __m512 load(const E* p) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static __m512 load(const E* p, __mmask16 m) {
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
};

struct WF16 {
  using E = uint16_t;
  static __m512 load(const E* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static __m512 load(const E* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
};

struct WF32 {
  using E = float;
  static __m512 load(const E* p) { return _mm512_loadu_ps(p); }
  static __m512 load(const E* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
};

inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

// ---------------------------------------------------------------------------------------------------
// GEMV: R weight rows x TT tokens per pass; each weight vector is loaded once and used for all tokens.
// Rows are consecutive, so the pass reads R sequential streams that the hardware prefetcher follows; a
// software prefetch far ahead keeps enough misses in flight on one core (measured on Zen 5: 8 KiB
// ahead beats 1-4 KiB by 5-40% for 1-8 tokens and streams at ~90% of a pure read loop's bandwidth).

constexpr int kPrefetchBytes = 8192;

template <class W, int TT, int R>
void gemv_rows(const float* x, int64_t K, const typename W::E* w, const MatmulParams& p, int64_t n, float* y) {
  using E = typename W::E;
  constexpr int64_t kPf = kPrefetchBytes / sizeof(E);
  const E* wr[R];
  for (int r = 0; r < R; r++) wr[r] = w + (n + r) * K;
  __m512 acc[TT][R];
  for (int t = 0; t < TT; t++)
    for (int r = 0; r < R; r++) acc[t][r] = _mm512_setzero_ps();

  // 32 weights (a 64-byte line of bf16) per row per step.
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    for (int r = 0; r < R; r++) {
      _mm_prefetch(reinterpret_cast<const char*>(wr[r] + k + kPf), _MM_HINT_T0);
      if (sizeof(E) == 4) _mm_prefetch(reinterpret_cast<const char*>(wr[r] + k + kPf + 16), _MM_HINT_T0);
    }
    __m512 xa[TT], xb[TT];
    for (int t = 0; t < TT; t++) {
      xa[t] = _mm512_loadu_ps(x + t * K + k);
      xb[t] = _mm512_loadu_ps(x + t * K + k + 16);
    }
    for (int r = 0; r < R; r++) {
      __m512 wa = W::load(wr[r] + k), wb = W::load(wr[r] + k + 16);
      for (int t = 0; t < TT; t++) {
        acc[t][r] = _mm512_fmadd_ps(xa[t], wa, acc[t][r]);
        acc[t][r] = _mm512_fmadd_ps(xb[t], wb, acc[t][r]);
      }
    }
  }
  for (; k < K; k += 16) {
    __mmask16 m = tail_mask(K - k);
    __m512 xv[TT];
    for (int t = 0; t < TT; t++) xv[t] = _mm512_maskz_loadu_ps(m, x + t * K + k);
    for (int r = 0; r < R; r++) {
      __m512 wv = W::load(wr[r] + k, m);
      for (int t = 0; t < TT; t++) acc[t][r] = _mm512_fmadd_ps(xv[t], wv, acc[t][r]);
    }
  }
  const int64_t N = p.N;
  for (int r = 0; r < R; r++) {
    float b = p.bias.data ? load_weight(p.bias.data, p.bias.dtype, n + r) : 0.0f;
    for (int t = 0; t < TT; t++) y[t * N + n + r] = _mm512_reduce_add_ps(acc[t][r]) + b;
  }
}

template <class W, int TT>
void gemv_range(const float* x, const MatmulParams& p, int64_t n0, int64_t n1, float* y) {
  const auto* w = static_cast<const typename W::E*>(p.w.data);
  const int64_t K = p.K, N = p.N;
  int64_t n = n0;
  if (TT <= 4) {
    // Enough rows per pass to hide FMA latency, few enough to keep TT x R accumulators in registers.
    constexpr int R = TT == 1 ? 8 : 4;
    for (; n + R <= n1; n += R) gemv_rows<W, TT, R>(x, K, w, p, n, y);
  } else {
    // 5..8 tokens: two register passes over the same 4 rows; the second reads them from L1/L2, so
    // memory still sees each weight once.
    constexpr int T2 = TT > 4 ? TT - 4 : 1;
    for (; n + 4 <= n1; n += 4) {
      gemv_rows<W, 4, 4>(x, K, w, p, n, y);
      gemv_rows<W, T2, 4>(x + 4 * K, K, w, p, n, y + 4 * N);
    }
  }
  for (; n < n1; n++) gemv_rows<W, TT, 1>(x, K, w, p, n, y);
}

constexpr int kGemvTokens = 8;  // tokens per pass over the weights

// Tokens [t0, t1) against weight rows [n0, n1), in groups of up to kGemvTokens tokens.
template <class W>
void gemv_block(const MatmulParams& p, int64_t t0, int64_t t1, int64_t n0, int64_t n1) {
  const float* x = static_cast<const float*>(p.x);
  float* y = static_cast<float*>(p.y);
  for (int64_t t = t0; t < t1; t += kGemvTokens) {
    const int tt = int(t1 - t < kGemvTokens ? t1 - t : kGemvTokens);
    const float* xt = x + t * p.K;
    float* yt = y + t * p.N;
    switch (tt) {
      case 1: gemv_range<W, 1>(xt, p, n0, n1, yt); break;
      case 2: gemv_range<W, 2>(xt, p, n0, n1, yt); break;
      case 3: gemv_range<W, 3>(xt, p, n0, n1, yt); break;
      case 4: gemv_range<W, 4>(xt, p, n0, n1, yt); break;
      case 5: gemv_range<W, 5>(xt, p, n0, n1, yt); break;
      case 6: gemv_range<W, 6>(xt, p, n0, n1, yt); break;
      case 7: gemv_range<W, 7>(xt, p, n0, n1, yt); break;
      default: gemv_range<W, 8>(xt, p, n0, n1, yt); break;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// GEMM: W is cut into panels of kNr rows; a kKc-deep slice of a panel is converted to f32 and transposed
// into wp[k][kNr] once (256 KiB, L2-resident), then swept by every token in blocks of kMr. The
// micro-kernel keeps a kMr x kNr tile of y in 24 zmm registers: per k, 4 weight loads, 6 broadcasts of x
// and 24 FMAs, no horizontal sums. A deep slice beats an L1-sized one (measured: 128 -> 1024 took two
// cores from ~350 to ~500 GFLOP/s): fewer y tile reloads and micro-kernel restarts, and L2 feeds 4 loads
// per 24 FMAs easily.

constexpr int kMr = 6;
constexpr int kNr = 64;
constexpr int kKc = 1024;

// 16x16 f32 transpose in registers: r[i][j] -> r[j][i].
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 16; i += 4) {
    __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
    __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
    u[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  // u[4i + c], 128-bit lane L, holds rows 4i..4i+3 of column 4L + c.
#pragma GCC unroll 4
  for (int c = 0; c < 4; c++) {
    __m512 lo01 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
    __m512 hi01 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xee);
    __m512 lo23 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
    __m512 hi23 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xee);
    r[c] = _mm512_shuffle_f32x4(lo01, lo23, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(lo01, lo23, 0xdd);
    r[8 + c] = _mm512_shuffle_f32x4(hi01, hi23, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(hi01, hi23, 0xdd);
  }
}

// wp[k][r] = f32(W[n0 + r][k0 + k]) for r < nr, 0 for nr <= r < kNr.
template <class W>
void pack_panel(const typename W::E* w, int64_t K, int64_t n0, int nr, int64_t k0, int kc, float* wp) {
  for (int rb = 0; rb < kNr; rb += 16) {
    if (rb >= nr) {
      for (int k = 0; k < kc; k++) _mm512_store_ps(wp + k * kNr + rb, _mm512_setzero_ps());
      continue;
    }
    for (int kb = 0; kb < kc; kb += 16) {
      const int kn = kc - kb < 16 ? kc - kb : 16;
      const __mmask16 m = tail_mask(kn);
      // Branch-free (rows past nr load nothing through a zero mask), so r[] stays in registers.
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++) {
        const bool valid = rb + i < nr;
        const auto* src = w + (n0 + (valid ? rb + i : 0)) * K + k0 + kb;
        r[i] = W::load(src, valid ? m : __mmask16(0));
      }
      transpose16(r);
      for (int j = 0; j < kn; j++) _mm512_store_ps(wp + (kb + j) * kNr + rb, r[j]);
    }
  }
}

template <int M>
void micro_kernel(const float* x, int64_t ldx, const float* wp, int kc, float* y, int64_t ldy,
                  const __mmask16 m[4], bool accumulate, const float* bias) {
  __m512 c0[M], c1[M], c2[M], c3[M];  // separate arrays keep GCC from giving the tile a stack copy
#pragma GCC unroll 8
  for (int i = 0; i < M; i++) {
    float* yi = y + i * ldy;
    if (accumulate) {
      c0[i] = _mm512_maskz_loadu_ps(m[0], yi);
      c1[i] = _mm512_maskz_loadu_ps(m[1], yi + 16);
      c2[i] = _mm512_maskz_loadu_ps(m[2], yi + 32);
      c3[i] = _mm512_maskz_loadu_ps(m[3], yi + 48);
    } else if (bias) {
      c0[i] = _mm512_load_ps(bias), c1[i] = _mm512_load_ps(bias + 16);
      c2[i] = _mm512_load_ps(bias + 32), c3[i] = _mm512_load_ps(bias + 48);
    } else {
      c0[i] = c1[i] = c2[i] = c3[i] = _mm512_setzero_ps();
    }
  }
#pragma GCC unroll 2
  for (int k = 0; k < kc; k++) {
    const float* b = wp + k * kNr;
    __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
    __m512 b2 = _mm512_load_ps(b + 32), b3 = _mm512_load_ps(b + 48);
#pragma GCC unroll 8
    for (int i = 0; i < M; i++) {
      __m512 a = _mm512_set1_ps(x[i * ldx + k]);
      c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
      c2[i] = _mm512_fmadd_ps(a, b2, c2[i]);
      c3[i] = _mm512_fmadd_ps(a, b3, c3[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < M; i++) {
    float* yi = y + i * ldy;
    _mm512_mask_storeu_ps(yi, m[0], c0[i]);
    _mm512_mask_storeu_ps(yi + 16, m[1], c1[i]);
    _mm512_mask_storeu_ps(yi + 32, m[2], c2[i]);
    _mm512_mask_storeu_ps(yi + 48, m[3], c3[i]);
  }
}

using MicroKernel = void (*)(const float*, int64_t, const float*, int, float*, int64_t, const __mmask16*, bool,
                             const float*);
constexpr MicroKernel kMicroKernels[kMr + 1] = {nullptr,          micro_kernel<1>, micro_kernel<2>,
                                                micro_kernel<3>, micro_kernel<4>, micro_kernel<5>,
                                                micro_kernel<6>};

// Per-thread scratch that grows on demand. A plain pointer, not a std:: container: this file is compiled
// with AVX-512 flags and must not instantiate library templates shared with baseline code.
struct ThreadBuffer {
  float* data = nullptr;
  size_t floats = 0;
  ~ThreadBuffer() { free(data); }
  float* get(size_t n) {
    if (n > floats) {
      free(data);
      floats = (n + 15) & ~size_t(15);
      data = static_cast<float*>(aligned_alloc(64, floats * sizeof(float)));
    }
    return data;
  }
};

thread_local ThreadBuffer t_panel;  // the packed panel: too big for the stack

// Weight rows [n0, n0 + nr) (one panel) against tokens [t0, t1).
template <class W>
void gemm_panel(const MatmulParams& p, int64_t n0, int nr, int64_t t0, int64_t t1) {
  float* wp = t_panel.get(size_t(kKc) * kNr);
  alignas(64) float bias[kNr] = {};
  const auto* w = static_cast<const typename W::E*>(p.w.data);
  const float* x = static_cast<const float*>(p.x);
  float* y = static_cast<float*>(p.y);
  const int64_t K = p.K, N = p.N;
  __mmask16 m[4];
  for (int j = 0; j < 4; j++) m[j] = tail_mask(nr - 16 * j > 0 ? nr - 16 * j : 0);
  if (p.bias.data)
    for (int r = 0; r < nr; r++) bias[r] = load_weight(p.bias.data, p.bias.dtype, n0 + r);
  if (K == 0) {
    for (int64_t t = t0; t < t1; t++)
      for (int r = 0; r < nr; r++) y[t * N + n0 + r] = bias[r];
    return;
  }
  for (int64_t k0 = 0; k0 < K; k0 += kKc) {
    int kc = K - k0 < kKc ? int(K - k0) : kKc;
    pack_panel<W>(w, K, n0, nr, k0, kc, wp);
    for (int64_t t = t0; t < t1; t += kMr) {
      int mr = t1 - t < kMr ? int(t1 - t) : kMr;
      kMicroKernels[mr](x + t * K + k0, K, wp, kc, y + t * N + n0, N, m, k0 > 0, p.bias.data ? bias : nullptr);
    }
  }
}

// Dtype dispatch of the kernels matmul.cc drives.
void gemv_kernel(const MatmulParams& p, int64_t t0, int64_t t1, int64_t n0, int64_t n1) {
  switch (p.w.dtype) {
    case DType::BF16: gemv_block<WBf16>(p, t0, t1, n0, n1); break;
    case DType::F16: gemv_block<WF16>(p, t0, t1, n0, n1); break;
    default: gemv_block<WF32>(p, t0, t1, n0, n1); break;
  }
}

void gemm_kernel(const MatmulParams& p, int64_t n0, int nr, int64_t t0, int64_t t1) {
  switch (p.w.dtype) {
    case DType::BF16: gemm_panel<WBf16>(p, n0, nr, t0, t1); break;
    case DType::F16: gemm_panel<WF16>(p, n0, nr, t0, t1); break;
    default: gemm_panel<WF32>(p, n0, nr, t0, t1); break;
  }
}

}  // namespace

const MatmulKernels& matmul_kernels_avx512() {
  static const MatmulKernels k = {"avx512", gemv_kernel, kGemvTokens, gemm_kernel, kNr, kMr, 32};
  return k;
}

}  // namespace sgl
