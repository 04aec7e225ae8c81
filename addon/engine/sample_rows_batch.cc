#include "engine/sample_rows_batch.h"

namespace sgl {

void SampleRowsBatch::clear() {
  rows.clear(), top_k.clear(), flags.clear(), top_n.clear(), ids.clear();
  inv_temp.clear(), top_p.clear(), min_p.clear(), u.clear(), edits.clear();
  edit_indptr.assign(1, 0);
  ids_indptr.assign(1, 0);
}

RowSpec SampleRowsBatch::add(int32_t row, const SamplingParams& p, SamplerState& st, int32_t V) {
  const RowSpec rs = sampler_row_spec(p, V);
  rows.push_back(row);
  inv_temp.push_back(rs.inv_t);
  top_k.push_back(rs.top_k);
  top_p.push_back(rs.top_p);
  min_p.push_back(rs.min_p);
  flags.push_back(rs.return_logprob ? kSampleReturnLogprob : 0);
  top_n.push_back(rs.return_logprob ? rs.top_logprobs_num : 0);
  sampler_logit_edits(p, st, V, edits);
  edit_indptr.push_back(int32_t(edits.size()));
  if (rs.return_logprob) ids.insert(ids.end(), p.token_ids_logprob.begin(), p.token_ids_logprob.end());
  ids_indptr.push_back(int32_t(ids.size()));
  u.push_back(rs.greedy() ? 0.0 : sampler_draw_uniform(st));
  return rs;
}

void SampleRowsBatch::fill_inputs(SampleRowsParams& out, int32_t V) const {
  out.rows = rows.data();
  out.R = size();
  out.V = V;
  out.inv_temp = inv_temp.data();
  out.top_k = top_k.data();
  out.top_p = top_p.data();
  out.min_p = min_p.data();
  out.u = u.data();
  out.flags = flags.data();
  out.top_n = top_n.data();
  out.edit_indptr = edit_indptr.data();
  out.edits = edits.data();
  out.ids_indptr = ids_indptr.data();
  out.ids = ids.data();
}

}  // namespace sgl
