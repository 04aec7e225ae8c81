// Attention: sequence bookkeeping, threading over (token, head) tasks, ISA dispatch, and the scalar
// vector policy.
#include <cmath>
#include <vector>

#include "cpu/attention_impl.h"
#include "cpu/cpu_features.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"

namespace sgl {

namespace {

struct ScalarVec {
  static float dot(const float* a, const float* b, int n) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    for (; i < n; i++) s[0] += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  }
  static void axpy(float a, const float* x, float* y, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
  }
  static void scale(float* y, float a, int n) {
    for (int i = 0; i < n; i++) y[i] *= a;
  }
  static float max(const float* s, int n) {
    float m = s[0];
    for (int i = 1; i < n; i++) m = s[i] > m ? s[i] : m;
    return m;
  }
  static float exp_sum(float* s, int n, float m) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += (s[i] = expf(s[i] - m));
    return sum;
  }
};

}  // namespace

void attend_one_scalar(const AttentionParams& p, const float* q, float* out, const int32_t* pages,
                       int64_t n_keys, int kvh, float* scratch) {
  attend_one<ScalarVec>(p, q, out, pages, n_keys, kvh, scratch);
}

void attention_with(AttendFn attend, const AttentionParams& p) {
  const int T = p.T, H = p.H, D = p.D, B = p.B;
  if (T <= 0 || H <= 0) return;
  const int group = H / p.Hkv;
  std::vector<int32_t> seq_of(size_t(T), 0);
  for (int b = 0; b < B; b++)
    for (int t = p.qo_indptr[b]; t < p.qo_indptr[b + 1] && t < T; t++) seq_of[size_t(t)] = b;
  const float* q = static_cast<const float*>(p.q);
  float* out = static_cast<float*>(p.out);
  // (token, head) tasks from a shared counter: causal prefill rows differ in cost.
  cpu_pool().parallel_for_dynamic(int64_t(T) * H, [&](int64_t task) {
    thread_local std::vector<float> scratch;
    if (scratch.size() < size_t(D + kAttnBlock)) scratch.resize(size_t(D + kAttnBlock));
    const int t = int(task / H), h = int(task % H);
    const int b = seq_of[size_t(t)];
    const int64_t q_len = p.qo_indptr[b + 1] - p.qo_indptr[b];
    const int64_t kv_len = p.kv_lens[b];
    // Queries are the last q_len positions of the sequence; causal query at pos sees keys 0..pos.
    const int64_t pos = kv_len - q_len + (t - p.qo_indptr[b]);
    const int64_t n_keys = p.causal ? (pos + 1 < kv_len ? pos + 1 : kv_len) : kv_len;
    attend(p, q + (int64_t(t) * H + h) * D, out + (int64_t(t) * H + h) * D, p.kv_page_indices + p.kv_indptr[b],
           n_keys, h / group, scratch.data());
  });
}

void attention_cpu(const AttentionParams& p) {
  switch (cpu_isa()) {
    case CpuIsa::Avx512: attention_with(attend_one_avx512, p); break;
    case CpuIsa::Avx2: attention_with(attend_one_avx2, p); break;
    default: attention_with(attend_one_scalar, p); break;
  }
}

}  // namespace sgl
