#include "models/forward_batch.h"

#include <stdexcept>

namespace sgl {

static std::string s(int64_t v) { return std::to_string(v); }

void forward_batch_validate(const ForwardBatch& b, int num_pages, int page_size, int vocab_size, int max_positions) {
  if (b.B <= 0) throw std::invalid_argument("batch has no sequences");
  if (b.qo_indptr[0] != 0 || b.kv_indptr[0] != 0) throw std::invalid_argument("qoIndptr and kvIndptr must start at 0");
  if (b.qo_indptr[b.B] != b.T) throw std::invalid_argument("qoIndptr[B] = " + s(b.qo_indptr[b.B]) + " but there are " + s(b.T) + " tokens");
  for (int i = 0; i < b.T; i++)
    if (b.token_ids[i] < 0 || b.token_ids[i] >= vocab_size)
      throw std::invalid_argument("token id " + s(b.token_ids[i]) + " at index " + s(i) + " is outside the vocabulary [0, " + s(vocab_size) + ")");
  for (int q = 0; q < b.B; q++) {
    int q_len = b.qo_indptr[q + 1] - b.qo_indptr[q];
    int pages = b.kv_indptr[q + 1] - b.kv_indptr[q];
    int kv_len = b.kv_lens[q];
    if (q_len <= 0) throw std::invalid_argument("sequence " + s(q) + " has no tokens in the step");
    if (kv_len < q_len) throw std::invalid_argument("sequence " + s(q) + ": kvLen " + s(kv_len) + " < its " + s(q_len) + " step tokens");
    if (kv_len > max_positions) throw std::invalid_argument("sequence " + s(q) + ": kvLen " + s(kv_len) + " exceeds the context length " + s(max_positions));
    if (int64_t(pages) * page_size < kv_len)
      throw std::invalid_argument("sequence " + s(q) + ": " + s(pages) + " pages of " + s(page_size) + " cannot hold " + s(kv_len) + " tokens");
    for (int p = b.kv_indptr[q]; p < b.kv_indptr[q + 1]; p++)
      if (b.kv_page_indices[p] < 0 || b.kv_page_indices[p] >= num_pages)
        throw std::invalid_argument("page id " + s(b.kv_page_indices[p]) + " is outside the pool [0, " + s(num_pages) + ")");
  }
  for (int r = 0; r < b.R; r++)
    if (b.logit_rows[r] < 0 || b.logit_rows[r] >= b.T)
      throw std::invalid_argument("logit row " + s(b.logit_rows[r]) + " is outside the step's " + s(b.T) + " tokens");
}

}  // namespace sgl
