// AVX-512 silu_mul row kernel.
// GCC 12's AVX-512 intrinsics (_mm512_undefined_*) trip -Wuninitialized when inlined: a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "cpu/ops.h"
#include "cpu/vec_math_avx512.h"

namespace sgl {

void silu_mul_row_avx512(const float* gate, const float* up, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = mask16(int(n - i < 16 ? n - i : 16));
    __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    __m512 e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), g));
    __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, e));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, up + i)));
  }
}

}  // namespace sgl
