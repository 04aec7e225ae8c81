#include "engine/logprob_row.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "engine/sampler.h"

namespace sgl {

float logprob_row_read(const float* logits, int32_t V, const LogprobRowRequest& req, std::vector<float>& scratch,
                       std::vector<std::pair<int32_t, float>>& top, std::vector<float>& ids_out) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  scratch.resize(size_t(V));
  log_softmax_row(logits, V, scratch.data());
  const float* lp = scratch.data();
  if (req.top_n > 0) {
    const int32_t n = std::min(req.top_n, V);
    std::vector<int32_t> idx(static_cast<size_t>(V));
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + n, idx.end(),
                      [&](int32_t a, int32_t b) { return lp[a] > lp[b] || (lp[a] == lp[b] && a < b); });
    for (int32_t j = 0; j < n; ++j) top.emplace_back(idx[size_t(j)], lp[idx[size_t(j)]]);
  }
  if (req.ids)
    for (int32_t t : *req.ids) ids_out.push_back(t >= 0 && t < V ? lp[t] : nan);
  return req.target >= 0 && req.target < V ? lp[req.target] : nan;
}

}  // namespace sgl
