// One model step over a varlen batch: B sequences, each prefilling a chunk of its prompt or decoding one
// token, T tokens in all. All arrays are host memory; the model runner uploads what the backend needs.
#pragma once
#include <cstdint>
#include <string>

namespace sgl {

struct ForwardBatch {
  int32_t B = 0;  // sequences
  int32_t T = 0;  // tokens in the step
  int32_t R = 0;  // rows whose logits are returned
  const int32_t* token_ids = nullptr;        // [T] tokens of seq 0, then seq 1, ...
  const int32_t* qo_indptr = nullptr;        // [B + 1] seq b's tokens are [qo_indptr[b], qo_indptr[b+1])
  const int32_t* kv_indptr = nullptr;        // [B + 1] seq b's pages are kv_page_indices[kv_indptr[b]..]
  const int32_t* kv_page_indices = nullptr;  // [kv_indptr[B]] page ids, in position order
  const int32_t* kv_lens = nullptr;          // [B] cached tokens after this step (this step's included)
  const int32_t* logit_rows = nullptr;       // [R] step token indices whose next-token logits are wanted
};

// Throws std::invalid_argument naming the first inconsistency (out-of-range page, short page table, ...).
void forward_batch_validate(const ForwardBatch& b, int num_pages, int page_size, int vocab_size, int max_positions);

}  // namespace sgl
