// Attention: sequence bookkeeping, threading over (token, KV head, key split) tasks, merging of split
// partials, ISA dispatch, and the scalar vector policy.
#include <algorithm>
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
  static void scores(const float* q, const float* kc, const int64_t* at, int n, int D, float scale, float* s) {
    for (int j = 0; j < n; j++) s[j] = dot(q, kc + at[j], D) * scale;
  }
  static void accumulate(const float* s, const float* vc, const int64_t* at, int n, int D, float* acc) {
    for (int j = 0; j < n; j++) axpy(s[j], vc + at[j], acc, D);
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

void attend_group_scalar(const AttentionParams& p, const float* q, int G, const int32_t* pages, int64_t k_begin,
                    int64_t k_end, int kvh, float* m, float* l, float* acc, float* scratch) {
  attend_group<ScalarVec>(p, q, G, pages, k_begin, k_end, kvh, m, l, acc, scratch);
}

namespace {

// A split of a sequence's keys gets at least this many (flash-decoding style splitting is only for
// when tokens x KV heads cannot keep the threads busy, i.e. decode).
constexpr int64_t kMinSplitKeys = 256;

}  // namespace

// Tasks are (token, KV head, key split). Each runs attend_group for the G query heads of its KV head;
// with one split it normalises straight into out, otherwise partial (m, l, acc) go to a buffer and a
// second pass merges them: out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s.
void attention_with(AttendFn attend, const AttentionParams& p) {
  const int T = p.T, H = p.H, D = p.D, B = p.B, Hkv = p.Hkv;
  if (T <= 0 || H <= 0) return;
  const int G = H / Hkv;
  ThreadPool& pool = cpu_pool();
  std::vector<int32_t> seq_of(size_t(T), 0);
  for (int b = 0; b < B; b++)
    for (int t = p.qo_indptr[b]; t < p.qo_indptr[b + 1] && t < T; t++) seq_of[size_t(t)] = b;
  // Keys visible to token t: queries are the last q_len positions of their sequence, and a causal query
  // at position pos sees keys 0..pos.
  auto keys_of = [&](int t) -> int64_t {
    const int b = seq_of[size_t(t)];
    const int64_t q_len = p.qo_indptr[b + 1] - p.qo_indptr[b], kv_len = p.kv_lens[b];
    const int64_t pos = kv_len - q_len + (t - p.qo_indptr[b]);
    return p.causal ? (pos + 1 < kv_len ? pos + 1 : kv_len) : kv_len;
  };
  int64_t splits = 1;
  const int64_t base_tasks = int64_t(T) * Hkv, want = 4 * int64_t(pool.num_threads());
  if (base_tasks < want) {
    int64_t max_keys = 0;
    for (int t = 0; t < T; t++) max_keys = std::max(max_keys, keys_of(t));
    splits = std::max<int64_t>(1, std::min((want + base_tasks - 1) / base_tasks, max_keys / kMinSplitKeys));
  }
  const float* q = static_cast<const float*>(p.q);
  float* out = static_cast<float*>(p.out);
  // Partial results when splitting: [T, H, splits] of m and l, [T, H, splits, D] of acc.
  std::vector<float> part_ml, part_acc;
  if (splits > 1) {
    part_ml.resize(size_t(T) * H * splits * 2);
    part_acc.resize(size_t(T) * H * splits * D);
  }
  // Tasks from a shared counter: causal prefill rows differ in cost.
  pool.parallel_for_dynamic(base_tasks * splits, [&](int64_t task) {
    thread_local std::vector<float> scratch;
    const size_t need = size_t(G) * (D + 2) + kAttnBlock;
    if (scratch.size() < need) scratch.resize(need);
    float* m = scratch.data();
    float* l = m + G;
    float* acc = l + G;
    float* blk = acc + size_t(G) * D;
    const int64_t split = task % splits, tk = task / splits;
    const int t = int(tk / Hkv), kvh = int(tk % Hkv);
    const int64_t n_keys = keys_of(t);
    const int64_t k0 = n_keys * split / splits, k1 = n_keys * (split + 1) / splits;
    const int h0 = kvh * G;
    attend(p, q + (int64_t(t) * H + h0) * D, G, p.kv_page_indices + p.kv_indptr[seq_of[size_t(t)]], k0, k1, kvh, m,
           l, acc, blk);
    for (int g = 0; g < G; g++) {
      const int64_t th = int64_t(t) * H + h0 + g;
      if (splits == 1) {
        const float inv = l[g] > 0.0f ? 1.0f / l[g] : 0.0f;  // no keys: zeros
        for (int d = 0; d < D; d++) out[th * D + d] = acc[size_t(g) * D + d] * inv;
      } else {
        part_ml[size_t(th * splits + split) * 2] = m[g];
        part_ml[size_t(th * splits + split) * 2 + 1] = l[g];
        std::copy(acc + size_t(g) * D, acc + size_t(g + 1) * D, part_acc.begin() + (th * splits + split) * D);
      }
    }
  });
  if (splits == 1) return;
  pool.parallel_for(int64_t(T) * H, [&](int64_t th0, int64_t th1) {
    for (int64_t th = th0; th < th1; th++) {
      const float* ml = &part_ml[size_t(th * splits) * 2];
      float mx = -INFINITY;
      for (int64_t s = 0; s < splits; s++) mx = std::max(mx, ml[2 * s]);
      float* o = out + th * D;
      for (int d = 0; d < D; d++) o[d] = 0.0f;
      float lsum = 0.0f;
      for (int64_t s = 0; s < splits; s++) {
        if (ml[2 * s + 1] == 0.0f) continue;  // empty split
        const float w = expf(ml[2 * s] - mx);
        lsum += w * ml[2 * s + 1];
        const float* a = &part_acc[size_t(th * splits + s) * D];
        for (int d = 0; d < D; d++) o[d] += w * a[d];
      }
      const float inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
      for (int d = 0; d < D; d++) o[d] *= inv;
    }
  });
}

void attention_cpu(const AttentionParams& p) {
  switch (cpu_isa()) {
    case CpuIsa::Avx512: attention_with(attend_group_avx512, p); break;
    case CpuIsa::Avx2: attention_with(attend_group_avx2, p); break;
    default: attention_with(attend_group_scalar, p); break;
  }
}

}  // namespace sgl
