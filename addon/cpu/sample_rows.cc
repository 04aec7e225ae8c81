// Backend::sample_rows on the CPU: each row through the sampler itself (apply_logit_edits, then
// sample_row_u with the given uniform), so it is sample_row's result by construction. The readable
// reference of cuda/sampling.cu (test/gpu/sampling_test.cc); the CPU table leaves sample_rows null.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/ops.h"
#include "engine/sampler.h"

namespace sgl {

void sample_rows_cpu(const SampleRowsParams& p) {
  SampleOutput o;
  for (int32_t r = 0; r < p.R; ++r) {
    float* row = p.logits + size_t(p.rows[r]) * size_t(p.V);
    const int32_t e0 = p.edit_indptr[r], e1 = p.edit_indptr[r + 1];
    apply_logit_edits(row, p.edits + e0, size_t(e1 - e0));
    RowSpec s;
    s.inv_t = p.inv_temp[r];
    s.top_k = p.top_k[r];
    s.top_p = p.top_p[r];
    s.min_p = p.min_p[r];
    s.return_logprob = (p.flags[r] & kSampleReturnLogprob) != 0;
    s.top_logprobs_num = s.return_logprob ? std::min(p.top_n[r], kSampleMaxTopN) : 0;
    s.token_ids = p.ids + p.ids_indptr[r];
    s.n_token_ids = s.return_logprob ? p.ids_indptr[r + 1] - p.ids_indptr[r] : 0;
    // The logprob is reported whatever the flag (the kernel computes it anyway): without the flag, a second
    // call asks for it (top lists aside). The token is the first call's: a greedy row without logprobs takes
    // sample_row's fast path, which differs from the other paths on an all -inf row.
    sample_row_u(row, p.V, s, p.u[r], o);
    p.token[r] = o.token;
    if (!s.return_logprob) {
      s.return_logprob = true;
      sample_row_u(row, p.V, s, p.u[r], o);
    }
    p.logprob[r] = o.logprob;
    // sample_row's "everything masked" answer: token 0, float32 min, no lists.
    float m = -std::numeric_limits<float>::infinity();
    for (int32_t i = 0; i < p.V; ++i) m = std::max(m, std::isnan(row[i]) ? m : row[i] * s.inv_t);
    p.status[r] = m == -std::numeric_limits<float>::infinity() ? 1 : 0;
    if (p.status[r]) continue;
    for (size_t j = 0; j < o.top_logprobs.size(); ++j) {
      p.top_ids[size_t(r) * kSampleMaxTopN + j] = o.top_logprobs[j].first;
      p.top_lps[size_t(r) * kSampleMaxTopN + j] = o.top_logprobs[j].second;
    }
    for (size_t j = 0; j < o.token_ids_logprobs.size(); ++j) p.ids_lps[p.ids_indptr[r] + int32_t(j)] = o.token_ids_logprobs[j];
  }
}

}  // namespace sgl
