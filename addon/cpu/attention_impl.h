// The per-(query token, head) attention kernel, written once over a vector policy V and compiled per
// ISA (attention.cc, attention_avx2.cc, attention_avx512.cc). Internal linkage and no std:: templates,
// so nothing compiled with AVX flags can be merged into the baseline code at link time.
//
// V provides (all on f32 arrays of length n):
//   float dot(a, b, n);  void axpy(a, x, y, n) (y += a x);  void scale(y, a, n);
//   float max(s, n);  float exp_sum(s, n, m) (s[i] = e^(s[i] - m), returns the sum).
#pragma once
#include <cmath>
#include <cstdint>

#include "backend/backend.h"

namespace sgl {
namespace {

constexpr int kAttnBlock = 64;  // keys scored per online-softmax step

// One query token against its sequence's cache, for one query head. Online softmax over blocks of
// keys: score a block, rescale the running output only if the max grew, accumulate p * v.
template <class V>
void attend_one(const AttentionParams& p, const float* q, float* out, const int32_t* pages, int64_t n_keys,
                int kvh, float* scratch) {
  float* acc = scratch;         // [D] running output
  float* s = scratch + p.D;     // [kAttnBlock] scores, then probabilities
  const int D = p.D, P = p.P, Hkv = p.Hkv;
  const float* kc = static_cast<const float*>(p.k_cache);
  const float* vc = static_cast<const float*>(p.v_cache);
  const int64_t row = int64_t(Hkv) * D;  // floats per cached token
  if (n_keys <= 0) {
    for (int d = 0; d < D; d++) out[d] = 0.0f;
    return;
  }
  for (int d = 0; d < D; d++) acc[d] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  int64_t at[kAttnBlock];  // offset of each key of the block in the caches
  for (int64_t j0 = 0; j0 < n_keys; j0 += kAttnBlock) {
    int n = n_keys - j0 < kAttnBlock ? int(n_keys - j0) : kAttnBlock;
    // Token pos lives in page pages[pos / P] at offset pos % P.
    int64_t pi = j0 / P;
    int off = int(j0 % P);
    for (int j = 0; j < n; j++) {
      at[j] = (int64_t(pages[pi]) * P + off) * row + int64_t(kvh) * D;
      if (++off == P) off = 0, pi++;
    }
    for (int j = 0; j < n; j++) s[j] = V::dot(q, kc + at[j], D) * p.scale;
    float mb = V::max(s, n);
    if (mb > m) {
      float corr = expf(m - mb);  // 0 on the first block
      V::scale(acc, corr, D);
      l *= corr;
      m = mb;
    }
    l += V::exp_sum(s, n, m);
    for (int j = 0; j < n; j++) V::axpy(s[j], vc + at[j], acc, D);
  }
  float inv = 1.0f / l;
  for (int d = 0; d < D; d++) out[d] = acc[d] * inv;
}

}  // namespace
}  // namespace sgl
