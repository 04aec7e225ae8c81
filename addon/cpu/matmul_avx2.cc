// AVX2 + FMA + F16C matmul, the same two regimes as matmul_avx512.cc with 8-wide vectors.
#include <immintrin.h>

#include <cstdint>

#include "cpu/convert.h"
#include "cpu/matmul.h"

namespace sgl {

namespace {

// Loading 8 weights of each stored dtype as f32; tails (< 8) go through the scalar converters.
struct WBf16 {
  using E = uint16_t;
  static __m256 load(const E* p) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float scalar(const E* p) { return bf16_to_f32(*p); }
};

struct WF16 {
  using E = uint16_t;
  static __m256 load(const E* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static float scalar(const E* p) { return f16_to_f32(*p); }
};

struct WF32 {
  using E = float;
  static __m256 load(const E* p) { return _mm256_loadu_ps(p); }
  static float scalar(const E* p) { return *p; }
};

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---------------------------------------------------------------------------------------------------
// GEMV: R rows x TT tokens per pass, each weight vector loaded once for all tokens.

template <class W, int TT, int R>
void gemv_rows(const float* x, int64_t K, const typename W::E* w, const MatmulParams& p, int64_t n, float* y) {
  using E = typename W::E;
  constexpr int64_t kPf = 8192 / sizeof(E);  // bytes ahead per row: see matmul_avx512.cc
  const E* wr[R];
  for (int r = 0; r < R; r++) wr[r] = w + (n + r) * K;
  __m256 acc[TT][R];
  for (int t = 0; t < TT; t++)
    for (int r = 0; r < R; r++) acc[t][r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m256 xa[TT], xb[TT];
    for (int t = 0; t < TT; t++) {
      xa[t] = _mm256_loadu_ps(x + t * K + k);
      xb[t] = _mm256_loadu_ps(x + t * K + k + 8);
    }
    for (int r = 0; r < R; r++) {
      _mm_prefetch(reinterpret_cast<const char*>(wr[r] + k + kPf), _MM_HINT_T0);
      __m256 wa = W::load(wr[r] + k), wb = W::load(wr[r] + k + 8);
      for (int t = 0; t < TT; t++) {
        acc[t][r] = _mm256_fmadd_ps(xa[t], wa, acc[t][r]);
        acc[t][r] = _mm256_fmadd_ps(xb[t], wb, acc[t][r]);
      }
    }
  }
  for (; k + 8 <= K; k += 8) {
    for (int r = 0; r < R; r++) {
      __m256 wv = W::load(wr[r] + k);
      for (int t = 0; t < TT; t++) acc[t][r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + t * K + k), wv, acc[t][r]);
    }
  }
  const int64_t N = p.N;
  for (int r = 0; r < R; r++) {
    float b = p.bias.data ? load_weight(p.bias.data, p.bias.dtype, n + r) : 0.0f;
    for (int t = 0; t < TT; t++) {
      float s = hsum(acc[t][r]);
      for (int64_t kk = k; kk < K; kk++) s += x[t * K + kk] * W::scalar(wr[r] + kk);
      y[t * N + n + r] = s + b;
    }
  }
}

template <class W, int TT>
void gemv_range(const float* x, const MatmulParams& p, int64_t n0, int64_t n1, float* y) {
  constexpr int R = TT == 1 ? 4 : 2;  // 16 ymm registers
  const auto* w = static_cast<const typename W::E*>(p.w.data);
  int64_t n = n0;
  for (; n + R <= n1; n += R) gemv_rows<W, TT, R>(x, p.K, w, p, n, y);
  for (; n < n1; n++) gemv_rows<W, TT, 1>(x, p.K, w, p, n, y);
}

constexpr int kGemvTokens = 4;  // tokens per pass over the weights (16 ymm registers)
// Up to 8 tokens still take the GEMV (two passes, the second mostly from cache): the GEMM's scalar-
// transposing pack costs more than that at so few tokens.
constexpr int kGemvMaxTokens = 8;

template <class W>
void gemv_block(const MatmulParams& p, int64_t t0, int64_t t1, int64_t n0, int64_t n1) {
  const float* x = static_cast<const float*>(p.x);
  float* y = static_cast<float*>(p.y);
  for (int64_t t = t0; t < t1; t += kGemvTokens) {
    const float* xt = x + t * p.K;
    float* yt = y + t * p.N;
    switch (t1 - t) {
      case 1: gemv_range<W, 1>(xt, p, n0, n1, yt); break;
      case 2: gemv_range<W, 2>(xt, p, n0, n1, yt); break;
      case 3: gemv_range<W, 3>(xt, p, n0, n1, yt); break;
      default: gemv_range<W, 4>(xt, p, n0, n1, yt); break;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// GEMM: panels of kNr = 16 rows, converted and transposed to wp[k][16] per kKc slice; a 6 x 16 tile of y
// lives in 12 ymm registers.

constexpr int kMr = 6;
constexpr int kNr = 16;
constexpr int kKc = 1024;

template <class W>
void pack_panel(const typename W::E* w, int64_t K, int64_t n0, int nr, int64_t k0, int kc, float* wp) {
  alignas(32) float tmp[8];
  for (int r = 0; r < kNr; r++) {
    if (r >= nr) {
      for (int k = 0; k < kc; k++) wp[k * kNr + r] = 0.0f;
      continue;
    }
    const auto* src = w + (n0 + r) * K + k0;
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
      _mm256_store_ps(tmp, W::load(src + k));
      for (int j = 0; j < 8; j++) wp[(k + j) * kNr + r] = tmp[j];
    }
    for (; k < kc; k++) wp[k * kNr + r] = W::scalar(src + k);
  }
}

// Lane mask for columns [8 * half, 8 * half + 8) of a panel with nr valid columns.
inline __m256i column_mask(int nr, int half) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8 * half), lane);
}

template <int M>
void micro_kernel(const float* x, int64_t ldx, const float* wp, int kc, float* y, int64_t ldy, int nr,
                  bool accumulate, const float* bias) {
  const __m256i m0 = column_mask(nr, 0), m1 = column_mask(nr, 1);
  const __m256 b0 = bias ? _mm256_load_ps(bias) : _mm256_setzero_ps();
  const __m256 b1 = bias ? _mm256_load_ps(bias + 8) : _mm256_setzero_ps();
  __m256 c0[M], c1[M];
#pragma GCC unroll 8
  for (int i = 0; i < M; i++) {
    c0[i] = accumulate ? _mm256_maskload_ps(y + i * ldy, m0) : b0;
    c1[i] = accumulate ? _mm256_maskload_ps(y + i * ldy + 8, m1) : b1;
  }
  for (int k = 0; k < kc; k++) {
    __m256 w0 = _mm256_load_ps(wp + k * kNr), w1 = _mm256_load_ps(wp + k * kNr + 8);
#pragma GCC unroll 8
    for (int i = 0; i < M; i++) {
      __m256 a = _mm256_broadcast_ss(x + i * ldx + k);
      c0[i] = _mm256_fmadd_ps(a, w0, c0[i]);
      c1[i] = _mm256_fmadd_ps(a, w1, c1[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < M; i++) {
    _mm256_maskstore_ps(y + i * ldy, m0, c0[i]);
    _mm256_maskstore_ps(y + i * ldy + 8, m1, c1[i]);
  }
}

using MicroKernel = void (*)(const float*, int64_t, const float*, int, float*, int64_t, int, bool, const float*);
constexpr MicroKernel kMicroKernels[kMr + 1] = {nullptr,          micro_kernel<1>, micro_kernel<2>,
                                                micro_kernel<3>, micro_kernel<4>, micro_kernel<5>,
                                                micro_kernel<6>};

// Per-thread packed panel (a plain array, not a std:: container: this file is compiled with AVX2 flags and
// must not instantiate library templates shared with baseline code).
alignas(64) thread_local float t_panel[kKc * kNr];

template <class W>
void gemm_panel(const MatmulParams& p, int64_t n0, int nr, int64_t t0, int64_t t1) {
  float* wp = t_panel;
  alignas(32) float bias[kNr] = {};
  const auto* w = static_cast<const typename W::E*>(p.w.data);
  const float* x = static_cast<const float*>(p.x);
  float* y = static_cast<float*>(p.y);
  const int64_t K = p.K, N = p.N;
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
      kMicroKernels[mr](x + t * K + k0, K, wp, kc, y + t * N + n0, N, nr, k0 > 0, p.bias.data ? bias : nullptr);
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

const MatmulKernels& matmul_kernels_avx2() {
  static const MatmulKernels k = {"avx2", gemv_kernel, kGemvMaxTokens, gemm_kernel, kNr, kMr, 8};
  return k;
}

}  // namespace sgl
