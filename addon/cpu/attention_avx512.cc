// AVX-512 vector policy for attention_impl.h.
// GCC 12's AVX-512 intrinsics (_mm512_undefined_*) trip -Wuninitialized when inlined: a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "cpu/attention_impl.h"
#include "cpu/ops.h"
#include "cpu/vec_math_avx512.h"

namespace sgl {

namespace {

struct Avx512Vec {
  static float dot(const float* a, const float* b, int n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
      s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
      s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
      __mmask16 m = mask16(n - i);
      s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
  }
  static void axpy(float a, const float* x, float* y, int n) {
    __m512 av = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
      __mmask16 m = mask16(n - i);
      _mm512_mask_storeu_ps(y + i, m,
                            _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
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
    for (int i = 0; i < n; i += 16) mx = _mm512_mask_max_ps(mx, mask16(n - i), mx, _mm512_maskz_loadu_ps(mask16(n - i), s + i));
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

void attend_one_avx512(const AttentionParams& p, const float* q, float* out, const int32_t* pages,
                       int64_t n_keys, int kvh, float* scratch) {
  attend_one<Avx512Vec>(p, q, out, pages, n_keys, kvh, scratch);
}

}  // namespace sgl
