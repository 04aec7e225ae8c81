// AVX-512 vector policy for attention_impl.h.
// GCC 12's AVX-512 intrinsics (_mm512_undefined_*) trip -Wuninitialized when inlined: a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "cpu/attention_impl.h"
#include "cpu/ops.h"
#include "cpu/vec_math_avx512.h"

namespace sgl {

namespace {

// Sums each of 16 vectors: lane j of the result = sum of the lanes of r[j]. A shuffle/add tree, ~2 ops
// per key instead of a full horizontal reduction per key.
inline __m512 reduce16(const __m512 r[16]) {
  __m512 s[8], t[4];
  for (int i = 0; i < 8; i++)  // per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3]
    s[i] = _mm512_add_ps(_mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]), _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]));
  for (int i = 0; i < 4; i++) {  // per 128-bit lane: [sum a, sum b, sum c, sum d] of that lane
    __m512d a = _mm512_castps_pd(s[2 * i]), b = _mm512_castps_pd(s[2 * i + 1]);
    t[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  // Add the four 128-bit lanes of t[i] and put the result in lane i.
  __m512 v01 = _mm512_add_ps(_mm512_shuffle_f32x4(t[0], t[1], 0x44), _mm512_shuffle_f32x4(t[0], t[1], 0xee));
  __m512 v23 = _mm512_add_ps(_mm512_shuffle_f32x4(t[2], t[3], 0x44), _mm512_shuffle_f32x4(t[2], t[3], 0xee));
  return _mm512_add_ps(_mm512_shuffle_f32x4(v01, v23, 0x88), _mm512_shuffle_f32x4(v01, v23, 0xdd));
}

struct Avx512Vec {
  static void scores(const float* q, const float* kc, const int64_t* at, int n, int D, float scale, float* s) {
    const __m512 sv = _mm512_set1_ps(scale);
    for (int j0 = 0; j0 < n; j0 += 16) {
      const int nj = n - j0 < 16 ? n - j0 : 16;
      // Always 16 keys (a short block repeats its last key) so the 16 accumulators stay in registers.
      int64_t pad[16];
      const int64_t* a = at + j0;
      if (nj < 16) {
        for (int j = 0; j < 16; j++) pad[j] = a[j < nj ? j : nj - 1];
        a = pad;
      }
      __m512 acc[16];
#pragma GCC unroll 16
      for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
      for (int d = 0; d < D; d += 16) {
        const __mmask16 m = mask16(D - d);
        const __m512 qv = _mm512_maskz_loadu_ps(m, q + d);
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) acc[j] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, kc + a[j] + d), acc[j]);
      }
      _mm512_mask_storeu_ps(s + j0, mask16(nj), _mm512_mul_ps(reduce16(acc), sv));
    }
  }
  // acc += sum_j s[j] V_j with the whole acc row in registers (NC = D/16 chunks, rounded up) and two
  // independent sets of accumulators, so the FMA chains do not serialise on latency.
  template <int NC>
  static void accumulate_regs(const float* s, const float* vc, const int64_t* at, int n, int D, float* acc) {
    __mmask16 m[NC];
    __m512 a[NC], b[NC];
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++) {
      m[c] = mask16(D - 16 * c);
      a[c] = _mm512_maskz_loadu_ps(m[c], acc + 16 * c);
      b[c] = _mm512_setzero_ps();
    }
    int j = 0;
    for (; j + 2 <= n; j += 2) {
      const __m512 p0 = _mm512_set1_ps(s[j]), p1 = _mm512_set1_ps(s[j + 1]);
      const float *v0 = vc + at[j], *v1 = vc + at[j + 1];
#pragma GCC unroll 8
      for (int c = 0; c < NC; c++) {
        a[c] = _mm512_fmadd_ps(p0, _mm512_maskz_loadu_ps(m[c], v0 + 16 * c), a[c]);
        b[c] = _mm512_fmadd_ps(p1, _mm512_maskz_loadu_ps(m[c], v1 + 16 * c), b[c]);
      }
    }
    if (j < n) {
      const __m512 p0 = _mm512_set1_ps(s[j]);
#pragma GCC unroll 8
      for (int c = 0; c < NC; c++) a[c] = _mm512_fmadd_ps(p0, _mm512_maskz_loadu_ps(m[c], vc + at[j] + 16 * c), a[c]);
    }
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++) _mm512_mask_storeu_ps(acc + 16 * c, m[c], _mm512_add_ps(a[c], b[c]));
  }
  static void accumulate(const float* s, const float* vc, const int64_t* at, int n, int D, float* acc) {
    switch ((D + 15) / 16) {
      case 1: return accumulate_regs<1>(s, vc, at, n, D, acc);
      case 2: return accumulate_regs<2>(s, vc, at, n, D, acc);
      case 3: return accumulate_regs<3>(s, vc, at, n, D, acc);
      case 4: return accumulate_regs<4>(s, vc, at, n, D, acc);
      case 5: return accumulate_regs<5>(s, vc, at, n, D, acc);
      case 6: return accumulate_regs<6>(s, vc, at, n, D, acc);
      case 7: return accumulate_regs<7>(s, vc, at, n, D, acc);
      case 8: return accumulate_regs<8>(s, vc, at, n, D, acc);
      default: break;
    }
    for (int d = 0; d < D; d += 128) {  // wide heads: 128 columns at a time
      const int w = D - d < 128 ? D - d : 128;
      int64_t at_d[64];
      for (int j = 0; j < n; j++) at_d[j] = at[j] + d;
      accumulate(s, vc, at_d, n, w, acc + d);
    }
  }
  static void scale(float* y, float a, int n) {
    __m512 av = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
      __mmask16 m = mask16(n - i);
      _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(av, _mm512_maskz_loadu_ps(m, y + i)));
    }
  }
  static float max(const float* s, int n) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < n; i += 16) {
      const __mmask16 m = mask16(n - i);
      mx = _mm512_mask_max_ps(mx, m, mx, _mm512_maskz_loadu_ps(m, s + i));
    }
    return _mm512_reduce_max_ps(mx);
  }
  static float exp_sum(float* s, int n, float m) {
    __m512 mv = _mm512_set1_ps(m), sum = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
      __mmask16 k = mask16(n - i);
      __m512 e = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), mv));
      _mm512_mask_storeu_ps(s + i, k, e);
      sum = _mm512_mask_add_ps(sum, k, sum, e);
    }
    return _mm512_reduce_add_ps(sum);
  }
};

}  // namespace

void attend_group_avx512(const AttentionParams& p, const float* q, int G, const int32_t* pages, int64_t k_begin,
                    int64_t k_end, int kvh, float* m, float* l, float* acc, float* scratch) {
  attend_group<Avx512Vec>(p, q, G, pages, k_begin, k_end, kvh, m, l, acc, scratch);
}

}  // namespace sgl
