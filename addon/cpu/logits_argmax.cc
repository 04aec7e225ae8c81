// Backend::logits_argmax on the CPU: the sampler's greedy path per row (addon/engine/sampler.cc), so that a
// row reduced here equals what sample_row would have given: the first index of the max (NaN never chosen),
// logprob = x[t] - m - log(sum exp(x - m)) = -log(Z), the float exponentials summed in double; a row with
// nothing finite gives token 0 and logprob float32 min (the sampler's floor).
#include <cmath>
#include <limits>

#include "cpu/ops.h"
#include "cpu/thread_pool.h"

namespace sgl {

namespace {
constexpr float kNegInfF = -std::numeric_limits<float>::infinity();
constexpr float kFloor = -3.4028234663852886e38f;

void argmax_row(const float* x, int32_t V, int32_t& token, float& logprob) {
  float m = kNegInfF;
  int32_t t = 0;
  for (int32_t i = 0; i < V; ++i)
    if (x[i] > m) m = x[i], t = i;  // NaN compares false: never chosen
  if (m == kNegInfF) {
    token = 0;
    logprob = kFloor;
    return;
  }
  double z = 0.0;
  for (int32_t i = 0; i < V; ++i) {
    const float v = std::isnan(x[i]) ? kNegInfF : x[i];
    z += double(std::exp(v - m));
  }
  token = t;
  logprob = float(-std::log(z));
}
}  // namespace

void logits_argmax_cpu(const ArgmaxParams& p) {
  auto row = [&](int64_t r) { argmax_row(p.logits + size_t(r) * size_t(p.V), p.V, p.token[r], p.logprob[r]); };
  if (p.R > 1 && int64_t(p.R) * p.V >= (int64_t(1) << 18))
    cpu_pool().parallel_for_dynamic(p.R, row);
  else
    for (int32_t r = 0; r < p.R; ++r) row(r);
}

}  // namespace sgl
