// The CPU MoE ops (Backend::moe_route, moe_permute, grouped_matmul, moe_unpermute): the readable reference
// of cuda/moe.cu. Activations f32; expert weights read in place (grouped_matmul is one matmul_cpu per expert
// over its contiguous rows, so the GEMV / GEMM regimes and threading are the dense ones).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/matmul.h"
#include "cpu/ops.h"

namespace sgl {

void moe_route_cpu(const MoeRouteParams& p) {
  std::vector<float> prob(size_t(p.E));
  std::vector<int32_t> order(size_t(p.E));
  const int32_t counted = p.count_tokens ? *p.count_tokens : p.T;
  for (int32_t t = 0; t < p.T; ++t) {
    const float* l = p.logits + size_t(t) * p.E;
    float mx = -INFINITY;
    for (int32_t e = 0; e < p.E; ++e) mx = std::max(mx, l[e]);
    float z = 0;
    for (int32_t e = 0; e < p.E; ++e) z += prob[e] = std::exp(l[e] - mx);
    for (int32_t e = 0; e < p.E; ++e) prob[e] /= z;
    for (int32_t e = 0; e < p.E; ++e) order[e] = e;
    // the K largest, best first, ties to the lower expert id (torch.topk's order on these inputs)
    std::partial_sort(order.begin(), order.begin() + p.K, order.end(), [&](int32_t a, int32_t b) {
      return prob[a] != prob[b] ? prob[a] > prob[b] : a < b;
    });
    float sum = 0;
    for (int32_t k = 0; k < p.K; ++k) sum += prob[order[k]];
    for (int32_t k = 0; k < p.K; ++k) {
      const int32_t e = order[k];
      p.topk_ids[size_t(t) * p.K + k] = e;
      p.topk_w[size_t(t) * p.K + k] = p.renormalize ? prob[e] / sum : prob[e];
      if (p.counts && t < counted) ++p.counts[e];
    }
  }
}

void moe_permute_cpu(const MoePermuteParams& p) {
  const int32_t n = p.T * p.K;
  std::fill(p.offsets, p.offsets + p.E + 1, 0);
  for (int32_t i = 0; i < n; ++i) ++p.offsets[p.topk_ids[i] + 1];
  for (int32_t e = 0; e < p.E; ++e) p.offsets[e + 1] += p.offsets[e];
  std::vector<int32_t> next(p.offsets, p.offsets + p.E);  // counting sort: stable in i
  const float* x = static_cast<const float*>(p.x);
  float* xp = static_cast<float*>(p.x_perm);
  for (int32_t i = 0; i < n; ++i) {
    const int32_t r = next[p.topk_ids[i]]++;
    p.dst[i] = r;
    std::memcpy(xp + size_t(r) * p.C, x + size_t(i / p.K) * p.C, size_t(p.C) * sizeof(float));
  }
}

void grouped_matmul_cpu(const GroupedMatmulParams& p) {
  const float* x = static_cast<const float*>(p.x);
  float* y = static_cast<float*>(p.y);
  for (int32_t e = 0; e < p.E; ++e) {
    const int32_t r0 = p.offsets[e], rows = p.offsets[e + 1] - r0;
    if (rows <= 0) continue;
    MatmulParams mp{x + size_t(r0) * p.K, WeightRef{p.w[e], p.w_dtype}, WeightRef{}, y + size_t(r0) * p.N, rows, p.K, p.N};
    matmul_cpu(mp);
  }
}

void moe_unpermute_cpu(const MoeUnpermuteParams& p) {
  const float* y = static_cast<const float*>(p.y);
  const float* shared = static_cast<const float*>(p.shared);
  float* out = static_cast<float*>(p.out);
  std::vector<int32_t> ks(size_t(p.K));
  for (int32_t t = 0; t < p.T; ++t) {
    const int32_t* ids = p.topk_ids + size_t(t) * p.K;
    for (int32_t k = 0; k < p.K; ++k) ks[k] = k;
    std::sort(ks.begin(), ks.end(), [&](int32_t a, int32_t b) { return ids[a] < ids[b]; });  // HF's expert order
    float* o = out + size_t(t) * p.C;
    std::fill(o, o + p.C, 0.0f);
    for (int32_t k : ks) {
      const float w = p.topk_w[size_t(t) * p.K + k];
      const float* row = y + size_t(p.dst[size_t(t) * p.K + k]) * p.C;
      for (int32_t c = 0; c < p.C; ++c) o[c] += w * row[c];
    }
    if (shared) {
      const float g = p.shared_gate ? 1.0f / (1.0f + std::exp(-p.shared_gate[t])) : 1.0f;
      const float* s = shared + size_t(t) * p.C;
      for (int32_t c = 0; c < p.C; ++c) o[c] += g * s[c];
    }
  }
}

}  // namespace sgl
