// AVX2 vector policy for attention_impl.h (8-wide, scalar tails).
#include <math.h>

#include "cpu/attention_impl.h"
#include "cpu/ops.h"
#include "cpu/vec_math_avx2.h"

namespace sgl {

namespace {

struct Avx2Vec {
  static float dot(const float* a, const float* b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
      s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
      s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum_avx2(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
  }
  static void axpy(float a, const float* x, float* y, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
  }
  static void scores(const float* q, const float* kc, const int64_t* at, int n, int D, float scale, float* s) {
    for (int j = 0; j < n; j++) s[j] = dot(q, kc + at[j], D) * scale;
  }
  static void accumulate(const float* s, const float* vc, const int64_t* at, int n, int D, float* acc) {
    for (int j = 0; j < n; j++) axpy(s[j], vc + at[j], acc, D);
  }
  static void scale(float* y, float a, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(av, _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] *= a;
  }
  static float max(const float* s, int n) {
    float m = s[0];
    for (int i = 1; i < n; i++) m = s[i] > m ? s[i] : m;
    return m;
  }
  static float exp_sum(float* s, int n, float m) {
    __m256 mv = _mm256_set1_ps(m), sum = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
      __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv));
      _mm256_storeu_ps(s + i, e);
      sum = _mm256_add_ps(sum, e);
    }
    float total = hsum_avx2(sum);
    for (; i < n; i++) total += (s[i] = expf(s[i] - m));
    return total;
  }
};

}  // namespace

void attend_group_avx2(const AttentionParams& p, const float* q, int G, const int32_t* pages, int64_t k_begin,
                    int64_t k_end, int kvh, float* m, float* l, float* acc, float* scratch) {
  attend_group<Avx2Vec>(p, q, G, pages, k_begin, k_end, kvh, m, l, acc, scratch);
}

}  // namespace sgl
