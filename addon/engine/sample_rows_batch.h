// The host-side inputs of one Backend::sample_rows call, built row by row from each request's sampling
// params and state, in SampleRowsParams order. Used by the scheduler and by the GPU parity harness, so both
// describe a row exactly alike.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "engine/sampler.h"

namespace sgl {

struct SampleRowsBatch {
  std::vector<int32_t> rows, top_k, flags, top_n, edit_indptr{0}, ids_indptr{0}, ids;  // as SampleRowsParams
  std::vector<float> inv_temp, top_p, min_p;
  std::vector<double> u;
  std::vector<LogitEdit> edits;

  void clear();
  int32_t size() const { return int32_t(rows.size()); }
  // Appends logits row `row` sampled with p: its normalised spec, its penalties as edits, its token-id
  // logprob ids, and (non-greedy rows) its uniform, drawn from st as sample_row would draw it.
  RowSpec add(int32_t row, const SamplingParams& p, SamplerState& st, int32_t V);
  // Points the input fields of `out` at this batch (out.logits and the outputs stay the caller's).
  void fill_inputs(SampleRowsParams& out, int32_t V) const;
};

}  // namespace sgl
