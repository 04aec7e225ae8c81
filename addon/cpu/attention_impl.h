// The per-(query token, KV head) attention kernel, written once over a vector policy V and compiled per
// ISA (attention.cc, attention_avx2.cc, attention_avx512.cc). Internal linkage and no std:: templates,
// so nothing compiled with AVX flags can be merged into the baseline code at link time.
//
// V provides, for a block of n <= kAttnBlock keys whose rows start at cache + at[j]:
//   void scores(q, k_cache, at, n, D, scale, s)   s[j] = scale * (q · K_j)
//   void accumulate(s, v_cache, at, n, D, acc)    acc += sum_j s[j] V_j
// and on f32 arrays: void scale(y, a, n);  float max(s, n);  float exp_sum(s, n, m) (s[i] = e^(s[i] - m),
// returns the sum).
#pragma once
#include <cmath>
#include <cstdint>

#include "backend/backend.h"

namespace sgl {
namespace {

constexpr int kAttnBlock = 64;  // keys scored per online-softmax step

// One query token against keys [k_begin, k_end) of its sequence, for the G query heads that share KV head
// kvh (their q rows are contiguous). Online softmax over blocks of keys: score a block, rescale a head's
// running output only if its max grew, accumulate p * v. A block's K and V rows stay in L1 while the G
// heads use them, so memory sees them once per group, not once per head.
// Out, unnormalised, per head g: m[g] (max score, -inf if no keys), l[g] (sum of e^(s - m)), acc[g*D..].
// scratch: kAttnBlock floats.
template <class V>
void attend_group(const AttentionParams& p, const float* q, int G, const int32_t* pages, int64_t k_begin,
                  int64_t k_end, int kvh, float* m, float* l, float* acc, float* scratch) {
  const int D = p.D, P = p.P;
  const float* kc = static_cast<const float*>(p.k_cache);
  const float* vc = static_cast<const float*>(p.v_cache);
  const int64_t row = int64_t(p.Hkv) * D;  // floats per cached token
  float* s = scratch;                      // [kAttnBlock] scores, then probabilities
  for (int g = 0; g < G; g++) m[g] = -INFINITY, l[g] = 0.0f;
  for (int i = 0; i < G * D; i++) acc[i] = 0.0f;
  int64_t at[kAttnBlock];  // offset of each key of the block in the caches
  for (int64_t j0 = k_begin; j0 < k_end; j0 += kAttnBlock) {
    const int n = k_end - j0 < kAttnBlock ? int(k_end - j0) : kAttnBlock;
    // Token pos lives in page pages[pos / P] at offset pos % P.
    int64_t pi = j0 / P;
    int off = int(j0 % P);
    for (int j = 0; j < n; j++) {
      at[j] = (int64_t(pages[pi]) * P + off) * row + int64_t(kvh) * D;
      if (++off == P) off = 0, pi++;
    }
    for (int g = 0; g < G; g++) {
      float* ag = acc + g * D;
      V::scores(q + g * D, kc, at, n, D, p.scale, s);
      const float mb = V::max(s, n);
      if (mb > m[g]) {
        const float corr = expf(m[g] - mb);  // 0 on the first block
        V::scale(ag, corr, D);
        l[g] *= corr;
        m[g] = mb;
      }
      l[g] += V::exp_sum(s, n, m[g]);
      V::accumulate(s, vc, at, n, D, ag);
    }
  }
}

}  // namespace
}  // namespace sgl
