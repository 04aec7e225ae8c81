// Standalone test of the CPU MoE ops (addon/cpu/moe.cc) against double-precision references written here:
// routing (softmax, top-K order and ties, renormalisation, counting with count_tokens), the stable permute,
// the grouped matmul (bf16 and f32 experts, an expert without rows) and the weighted unpermute with a shared
// expert. Outputs are pre-filled with NaN / -1 so unwritten elements fail. Ends with "N passed, M failed".
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cpu/convert.h"

using namespace sgl;

namespace {

int g_passed = 0, g_failed = 0;
std::mt19937 g_rng(7);
const float kNaN = std::numeric_limits<float>::quiet_NaN();

float urand(float lo = -1.0f, float hi = 1.0f) { return std::uniform_real_distribution<float>(lo, hi)(g_rng); }

void check(bool ok, const std::string& what) {
  (ok ? g_passed : g_failed)++;
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
}

double max_rel(const std::vector<float>& got, const std::vector<double>& want) {
  double m = 0, scale = 1e-6;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    m = std::max(m, std::fabs(got[i] - want[i]) / scale);
  }
  return m;
}

void test_route(int T, int E, int K, bool renorm) {
  const Backend& be = cpu_backend();
  std::vector<float> logits(size_t(T) * E);
  for (auto& v : logits) v = urand(-3, 3);
  if (T > 1) {  // a tie: experts 1 and 0 equal and largest in row 1 (the lower id must come first)
    logits[size_t(E) + 0] = logits[size_t(E) + 1] = 9.0f;
  }
  std::vector<int32_t> ids(size_t(T) * K, -1), counts(size_t(E), 5);
  std::vector<float> w(size_t(T) * K, kNaN);
  const int32_t counted = T > 2 ? T - 2 : T;
  MoeRouteParams p{logits.data(), ids.data(), w.data(), counts.data(), T, E, K, renorm};
  p.count_tokens = &counted;
  be.moe_route(p);
  bool ids_ok = true, w_ok = true;
  std::vector<int32_t> want_counts(size_t(E), 5);
  for (int t = 0; t < T; ++t) {
    std::vector<double> prob(static_cast<size_t>(E));
    double mx = -INFINITY, z = 0;
    for (int e = 0; e < E; ++e) mx = std::max(mx, double(logits[size_t(t) * E + e]));
    for (int e = 0; e < E; ++e) z += prob[e] = std::exp(double(logits[size_t(t) * E + e]) - mx);
    std::vector<int> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return prob[a] > prob[b]; });
    double sum = 0;
    for (int k = 0; k < K; ++k) sum += prob[order[k]] / z;
    for (int k = 0; k < K; ++k) {
      ids_ok &= ids[size_t(t) * K + k] == order[k];
      const double want = prob[order[k]] / z / (renorm ? sum : 1.0);
      w_ok &= std::fabs(w[size_t(t) * K + k] - want) < 1e-6;
      if (t < counted) want_counts[order[k]]++;
    }
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "moe_route T=%d E=%d K=%d renorm=%d: ids (ties to the lower id)", T, E, K, renorm);
  check(ids_ok, buf);
  std::snprintf(buf, sizeof buf, "moe_route T=%d E=%d K=%d renorm=%d: weights", T, E, K, renorm);
  check(w_ok, buf);
  std::snprintf(buf, sizeof buf, "moe_route T=%d E=%d K=%d: counts added for the first %d tokens only", T, E, K, counted);
  check(counts == want_counts, buf);
}

// permute + grouped gate/up/down-style matmul + unpermute over one random routing, against references.
void test_pipeline(int T, int C, int N, int E, int K, bool bf16_weights, bool with_shared) {
  const Backend& be = cpu_backend();
  const int M = T * K;
  std::vector<int32_t> ids(static_cast<size_t>(M));
  std::vector<float> tw(static_cast<size_t>(M));
  for (int t = 0; t < T; ++t) {  // K distinct experts per token; expert E-1 never chosen
    std::vector<int> pick(static_cast<size_t>(E - 1));
    std::iota(pick.begin(), pick.end(), 0);
    std::shuffle(pick.begin(), pick.end(), g_rng);
    for (int k = 0; k < K; ++k) ids[size_t(t) * K + k] = pick[k], tw[size_t(t) * K + k] = urand(0, 1);
  }
  std::vector<float> x(size_t(T) * C);
  for (auto& v : x) v = urand();
  std::vector<float> xp(size_t(M) * C, kNaN);
  std::vector<int32_t> dst(size_t(M), -1), off(size_t(E) + 1, -1);
  be.moe_permute({x.data(), ids.data(), xp.data(), dst.data(), off.data(), T, C, E, K});
  // reference: stable counting sort by expert
  std::vector<int32_t> want_off(size_t(E) + 1, 0), want_dst(static_cast<size_t>(M));
  for (int i = 0; i < M; ++i) want_off[ids[i] + 1]++;
  for (int e = 0; e < E; ++e) want_off[e + 1] += want_off[e];
  std::vector<int32_t> next(want_off.begin(), want_off.end() - 1);
  for (int i = 0; i < M; ++i) want_dst[i] = next[ids[i]]++;
  bool rows_ok = true;
  for (int i = 0; i < M; ++i)
    rows_ok &= std::memcmp(&xp[size_t(want_dst[i]) * C], &x[size_t(i / K) * C], size_t(C) * sizeof(float)) == 0;
  char buf[200];
  std::snprintf(buf, sizeof buf, "moe_permute T=%d E=%d K=%d: offsets, dst (stable) and rows", T, E, K);
  check(off == want_off && dst == want_dst && rows_ok, buf);

  // experts' weights [N, C], f32 or bf16
  std::vector<std::vector<float>> wf(static_cast<size_t>(E));
  std::vector<std::vector<uint16_t>> wb(static_cast<size_t>(E));
  std::vector<const void*> ptrs(static_cast<size_t>(E));
  for (int e = 0; e < E; ++e) {
    wf[e].resize(size_t(N) * C);
    for (auto& v : wf[e]) v = urand(-0.5f, 0.5f);
    if (bf16_weights) {
      wb[e].resize(wf[e].size());
      for (size_t i = 0; i < wf[e].size(); ++i) wb[e][i] = f32_to_bf16(wf[e][i]), wf[e][i] = bf16_to_f32(wb[e][i]);
      ptrs[e] = wb[e].data();
    } else {
      ptrs[e] = wf[e].data();
    }
  }
  std::vector<float> y(size_t(M) * N, kNaN);
  be.grouped_matmul({xp.data(), ptrs.data(), bf16_weights ? DType::BF16 : DType::F32, off.data(), y.data(), M, C, N, E});
  std::vector<double> want_y(size_t(M) * N);
  for (int e = 0; e < E; ++e)
    for (int r = want_off[e]; r < want_off[e + 1]; ++r)
      for (int n = 0; n < N; ++n) {
        double s = 0;
        for (int c = 0; c < C; ++c) s += double(xp[size_t(r) * C + c]) * wf[e][size_t(n) * C + c];
        want_y[size_t(r) * N + n] = s;
      }
  const double ey = max_rel(y, want_y);
  std::snprintf(buf, sizeof buf, "grouped_matmul M=%d K=%d N=%d E=%d %s (expert %d without rows): rel err %.2e", M, C, N, E,
                bf16_weights ? "bf16" : "f32", E - 1, ey);
  check(ey < 1e-5, buf);

  // unpermute over outputs of width N (as the down projection's C)
  std::vector<float> shared, gate;
  if (with_shared) {
    shared.resize(size_t(T) * N);
    gate.resize(size_t(T));
    for (auto& v : shared) v = urand();
    for (auto& v : gate) v = urand(-4, 4);
  }
  std::vector<float> out(size_t(T) * N, kNaN);
  be.moe_unpermute({y.data(), dst.data(), ids.data(), tw.data(), with_shared ? shared.data() : nullptr,
                    with_shared ? gate.data() : nullptr, out.data(), T, N, K});
  std::vector<double> want(size_t(T) * N, 0.0);
  for (int t = 0; t < T; ++t)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += double(tw[size_t(t) * K + k]) * y[size_t(want_dst[size_t(t) * K + k]) * N + n];
      if (with_shared) s += 1.0 / (1.0 + std::exp(-double(gate[t]))) * shared[size_t(t) * N + n];
      want[size_t(t) * N + n] = s;
    }
  const double eo = max_rel(out, want);
  std::snprintf(buf, sizeof buf, "moe_unpermute T=%d C=%d K=%d shared=%d: rel err %.2e", T, N, K, with_shared, eo);
  check(eo < 1e-5, buf);
}

}  // namespace

int main() {
  const Backend& be = cpu_backend();
  check(be.moe_route && be.moe_permute && be.grouped_matmul && be.moe_unpermute, "the CPU table has the MoE ops");
  if (g_failed) return 1;
  test_route(1, 8, 4, false);
  test_route(7, 8, 4, false);
  test_route(33, 60, 4, true);
  test_route(5, 64, 8, true);
  test_route(4, 16, 1, false);
  test_pipeline(1, 16, 24, 8, 4, true, true);
  test_pipeline(7, 32, 48, 8, 4, false, true);
  test_pipeline(70, 64, 40, 60, 4, true, false);
  test_pipeline(300, 32, 16, 9, 2, false, true);
  test_pipeline(3, 16, 8, 5, 1, true, true);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
