// Logprob read-outs of one logits row that the scheduler needs beyond sampling: prompt logprobs (the
// logprob of the next prompt token, top-N and requested ids), always from the raw log_softmax, which is
// what SGLang's logits processor returns for input positions.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace sgl {

struct LogprobRowRequest {
  int32_t target = -1;                      // token whose logprob is wanted (-1: none)
  int32_t top_n = 0;                        // top-N (token, logprob) pairs, descending, ties by lower id
  const std::vector<int32_t>* ids = nullptr;  // requested token ids (may be null)
};

// logits: [V] raw row; scratch grows to V floats. Appends top_n pairs to top and |ids| values to ids_out;
// returns the target's logprob (NaN when target < 0). Ids outside [0, V) get NaN.
float logprob_row_read(const float* logits, int32_t V, const LogprobRowRequest& req, std::vector<float>& scratch,
                       std::vector<std::pair<int32_t, float>>& top, std::vector<float>& ids_out);

}  // namespace sgl
