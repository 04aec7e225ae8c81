// rms_norm (with the fused residual add) and rotary embedding, in f32. Both are light next to matmul;
// plain loops the compiler vectorises, threaded over tokens when there are enough of them.
#include <cmath>
#include <vector>

#include "cpu/convert.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"

namespace sgl {

namespace {

constexpr int64_t kMinParallelElems = 1 << 15;

float sum_squares(const float* x, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) s[j] += x[i + j] * x[i + j];
  for (; i < n; i++) s[0] += x[i] * x[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

}  // namespace

// HF semantics: out = (x / sqrt(mean(x²) + eps)) * w, all in f32. With a residual: residual += x first and
// the sum is normalised. out may alias x.
void rms_norm_cpu(const RmsNormParams& p) {
  const int64_t C = p.C;
  std::vector<float> w(static_cast<size_t>(C));  // the [C] gain vector in f32 (small, unlike matmul weights)
  load_weight_row(p.w.data, p.w.dtype, 0, C, w.data());
  const float* x = static_cast<const float*>(p.x);
  float* res = static_cast<float*>(p.residual);
  float* out = static_cast<float*>(p.out);
  cpu_pool().parallel_for(p.T, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const float* xr = x + t * C;
      float* orow = out + t * C;
      const float* src = xr;
      if (res) {
        float* rr = res + t * C;
        for (int64_t i = 0; i < C; i++) rr[i] += xr[i];
        src = rr;
      }
      float inv = 1.0f / std::sqrt(sum_squares(src, C) / float(C) + p.eps);
      for (int64_t i = 0; i < C; i++) orow[i] = (src[i] * inv) * w[size_t(i)];
    }
  }, 1 + kMinParallelElems / (C + 1));
}

// HF rotate_half: for i < D/2, (x[i], x[i + D/2]) rotates by angle pos * inv_freq[i]. The angle is the
// f32 product, as HF computes it: at positions ~32k its rounding moves cos/sin by up to ~2e-3 versus a
// double angle, so matching HF means rounding the product to f32 here too.
void rope_cpu(const RopeParams& p) {
  const int half = p.D / 2;
  float* q = static_cast<float*>(p.q);
  float* k = static_cast<float*>(p.k);
  cpu_pool().parallel_for(p.T, [&](int64_t t0, int64_t t1) {
    std::vector<float> cs(static_cast<size_t>(2 * half));
    float* c = cs.data();
    float* s = c + half;
    for (int64_t t = t0; t < t1; t++) {
      const float pos = float(p.positions[t]);
      for (int i = 0; i < half; i++) {
        float a = pos * p.inv_freq[i];
        c[i] = std::cos(a);
        s[i] = std::sin(a);
      }
      auto rotate = [&](float* base, int heads) {
        for (int h = 0; h < heads; h++) {
          float* x = base + (t * heads + h) * int64_t(p.D);
          for (int i = 0; i < half; i++) {
            float x1 = x[i], x2 = x[i + half];
            x[i] = x1 * c[i] - x2 * s[i];
            x[i + half] = x2 * c[i] + x1 * s[i];
          }
        }
      };
      rotate(q, p.H);
      rotate(k, p.Hkv);
    }
  }, 1 + kMinParallelElems / (int64_t(p.H + p.Hkv) * p.D + 1));
}

}  // namespace sgl
