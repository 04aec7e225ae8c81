// Backend::logits_argmax on the CPU: the sampler's greedy path per row (and its whole-vocabulary sampling
// path for rows with a temperature) (addon/engine/sampler.cc), so that a
// row reduced here equals what sample_row would have given: the first index of the max (NaN never chosen),
// logprob = x[t] - m - log(sum exp(x - m)) = -log(Z), the float exponentials summed in double; a row with
// nothing finite gives token 0 and logprob float32 min (the sampler's floor).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

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
// The sampler's whole-vocabulary path: the same float exponentials, summed in double in id order.
void sample_row_plain(const float* logits, int32_t V, float inv_t, double u, int32_t& token, float& logprob) {
  thread_local std::vector<float> x, e;  // per worker: no allocation per row and step
  x.resize(static_cast<size_t>(V));
  e.resize(static_cast<size_t>(V));
  float m = kNegInfF;
  for (int32_t i = 0; i < V; ++i) {
    const float v = logits[i];
    x[size_t(i)] = std::isnan(v) ? kNegInfF : v * inv_t;
    m = std::max(m, x[size_t(i)]);
  }
  if (m == kNegInfF) {
    token = 0;
    logprob = kFloor;
    return;
  }
  double z = 0.0;
  for (int32_t i = 0; i < V; ++i) z += double(e[size_t(i)] = std::exp(x[size_t(i)] - m));
  const double target = u * z;
  double acc = 0.0;
  int32_t t = -1;
  for (int32_t i = 0; i < V; ++i) {
    if (e[size_t(i)] <= 0.0f) continue;
    acc += double(e[size_t(i)]);
    t = i;
    if (acc > target) break;
  }
  token = t;
  logprob = std::max(float(double(x[size_t(t)] - m) - std::log(z)), kFloor);
}
}  // namespace

void logits_argmax_cpu(const ArgmaxParams& p) {
  auto row = [&](int64_t r) {
    const float* x = p.logits + size_t(r) * size_t(p.V);
    if (p.inv_temp && p.inv_temp[r] > 0.0f)
      sample_row_plain(x, p.V, p.inv_temp[r], p.u[r], p.token[r], p.logprob[r]);
    else
      argmax_row(x, p.V, p.token[r], p.logprob[r]);
  };
  if (p.R > 1 && int64_t(p.R) * p.V >= (int64_t(1) << 18))
    cpu_pool().parallel_for_dynamic(p.R, row);
  else
    for (int32_t r = 0; r < p.R; ++r) row(r);
}

}  // namespace sgl
