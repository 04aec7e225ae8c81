// LayerNorm (with the residual add of post-norm encoders) and GELU on the CPU: f32 data, mean and variance
// accumulated in double, rows in parallel. The reference the CUDA kernels are checked against.
#include <cmath>
#include <vector>

#include "cpu/convert.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"

namespace sgl {

void layer_norm_cpu(const LayerNormParams& p) {
  const float* x = static_cast<const float*>(p.x);
  const float* r = static_cast<const float*>(p.residual);
  float* out = static_cast<float*>(p.out);
  const int64_t C = p.C;
  cpu_pool().parallel_for(p.T, [&](int64_t b, int64_t e) {
    std::vector<float> row(static_cast<size_t>(C));
    for (int64_t t = b; t < e; ++t) {
      double sum = 0.0;
      for (int64_t c = 0; c < C; ++c) {
        row[size_t(c)] = x[t * C + c] + (r ? r[t * C + c] : 0.0f);
        sum += row[size_t(c)];
      }
      const double mean = sum / double(C);
      double var = 0.0;
      for (int64_t c = 0; c < C; ++c) var += (row[size_t(c)] - mean) * (row[size_t(c)] - mean);
      const float inv = float(1.0 / std::sqrt(var / double(C) + double(p.eps)));
      for (int64_t c = 0; c < C; ++c)
        out[t * C + c] = (row[size_t(c)] - float(mean)) * inv * load_weight(p.w.data, p.w.dtype, c) + (p.b.data ? load_weight(p.b.data, p.b.dtype, c) : 0.0f);
    }
  }, 1);
}

void gelu_cpu(const GeluParams& p) {
  const float* x = static_cast<const float*>(p.x);
  float* out = static_cast<float*>(p.out);
  const int64_t pieces = (p.n + 1023) / 1024;
  cpu_pool().parallel_for(pieces, [&](int64_t b, int64_t e) {
    const int64_t i1 = e * 1024 < p.n ? e * 1024 : p.n;
    for (int64_t i = b * 1024; i < i1; ++i) {
      const float v = x[i];
      out[i] = p.tanh_approx ? 0.5f * v * (1.0f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)))
                             : 0.5f * v * (1.0f + std::erf(v * 0.7071067811865476f));
    }
  }, 1);
}

}  // namespace sgl
