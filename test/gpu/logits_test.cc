// Parity of Backend::logits_argmax on CUDA against the CPU backend (the sampler's greedy path): random f32
// rows of vocabulary sizes up to Qwen's, with NaN, -inf-only rows and ties; the token must be identical and
// the logprob within 1e-5 (relative). Prints PASS/FAIL lines and "N passed, M failed".
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "backend/backend.h"
#include "gpu_check.h"

using namespace sgl;
using gpu_check::check;

int main() {
  const Backend* cuda = gpu_check::cuda_or_skip();
  if (!cuda) return 0;
  const Backend& cpu = cpu_backend();
  std::mt19937 rng(7);
  for (int V : {8, 512, 1000, 151936}) {
    for (int R : {1, 5, 64}) {
      std::normal_distribution<float> n(0.0f, 4.0f);
      std::vector<float> x(size_t(R) * V);
      for (auto& v : x) v = n(rng);
      if (R >= 5) {
        x[size_t(1) * V + V / 2] = std::numeric_limits<float>::quiet_NaN();
        for (int i = 0; i < V; ++i) x[size_t(2) * V + i] = -std::numeric_limits<float>::infinity();
        x[size_t(3) * V + 1] = x[size_t(3) * V + V - 1] = 99.0f;  // tie
      }
      std::vector<int32_t> tok_ref(R), tok(R, -7);
      std::vector<float> lp_ref(R), lp(R, 0.0f);
      cpu.logits_argmax({x.data(), tok_ref.data(), lp_ref.data(), R, V});
      float* d_x = static_cast<float*>(cuda->alloc(x.size() * sizeof(float)));
      int32_t* d_tok = static_cast<int32_t*>(cuda->alloc(size_t(R) * 8));
      float* d_lp = reinterpret_cast<float*>(d_tok + R);
      cuda->upload(d_x, x.data(), x.size() * sizeof(float));
      cudaMemset(d_tok, 0xff, size_t(R) * 8);  // poison
      cuda->logits_argmax({d_x, d_tok, d_lp, R, V});
      cuda->download(tok.data(), d_tok, size_t(R) * 4);
      cuda->download(lp.data(), d_lp, size_t(R) * 4);
      bool ok = true;
      std::string first;
      for (int r = 0; r < R; ++r) {
        const bool same = tok[r] == tok_ref[r] && std::fabs(lp[r] - lp_ref[r]) <= 1e-5f * (1.0f + std::fabs(lp_ref[r]));
        if (!same && ok) first = " row " + std::to_string(r) + ": " + std::to_string(tok[r]) + "/" + std::to_string(lp[r]) +
                                 " vs " + std::to_string(tok_ref[r]) + "/" + std::to_string(lp_ref[r]);
        ok = ok && same;
      }
      check(ok, "logits_argmax V=" + std::to_string(V) + " R=" + std::to_string(R) + first);
      cuda->free(d_x);
      cuda->free(d_tok);
    }
  }
  // Sampled rows (inv_temp > 0, a uniform each) beside greedy ones: the same token as the CPU backend (the
  // sampler's whole-vocabulary path) and the logprob within 1e-5.
  for (int V : {8, 1000, 151936}) {
    const int R = 64;
    std::normal_distribution<float> n(0.0f, 3.0f);
    std::uniform_real_distribution<double> uni(0.0, 1.0);
    std::vector<float> x(size_t(R) * V), inv(R);
    std::vector<double> u(R);
    for (auto& v : x) v = n(rng);
    for (int r = 0; r < R; ++r) inv[r] = r % 4 == 0 ? 0.0f : 1.0f / (0.3f + 0.1f * float(r % 13)), u[r] = uni(rng);
    x[size_t(5) * V + 3] = std::numeric_limits<float>::quiet_NaN();
    std::vector<int32_t> tok_ref(R), tok(R);
    std::vector<float> lp_ref(R), lp(R);
    ArgmaxParams ref{x.data(), tok_ref.data(), lp_ref.data(), R, V};
    ref.inv_temp = inv.data();
    ref.u = u.data();
    cpu.logits_argmax(ref);
    float* d_x = static_cast<float*>(cuda->alloc(x.size() * sizeof(float)));
    char* d_aux = static_cast<char*>(cuda->alloc(size_t(R) * 24));
    int32_t* d_tok = reinterpret_cast<int32_t*>(d_aux);
    float* d_lp = reinterpret_cast<float*>(d_aux + 4 * R);
    float* d_inv = reinterpret_cast<float*>(d_aux + 8 * R);
    double* d_u = reinterpret_cast<double*>(d_aux + 16 * R);
    cuda->upload(d_x, x.data(), x.size() * sizeof(float));
    cuda->upload(d_inv, inv.data(), size_t(R) * 4);
    cuda->upload(d_u, u.data(), size_t(R) * 8);
    cudaMemset(d_tok, 0xff, size_t(R) * 8);
    ArgmaxParams dp{d_x, d_tok, d_lp, R, V};
    dp.inv_temp = d_inv;
    dp.u = d_u;
    cuda->logits_argmax(dp);
    cuda->download(tok.data(), d_tok, size_t(R) * 4);
    cuda->download(lp.data(), d_lp, size_t(R) * 4);
    int same = 0;
    bool lp_ok = true;
    for (int r = 0; r < R; ++r) {
      same += tok[r] == tok_ref[r];
      if (tok[r] == tok_ref[r]) lp_ok = lp_ok && std::fabs(lp[r] - lp_ref[r]) <= 1e-5f * (1.0f + std::fabs(lp_ref[r]));
    }
    check(same == R && lp_ok, "sampled + greedy rows V=" + std::to_string(V) + ": " + std::to_string(same) + "/" +
                                  std::to_string(R) + " tokens equal the CPU's" + (lp_ok ? "" : ", logprob differs"));
    cuda->free(d_x);
    cuda->free(d_aux);
  }
  return gpu_check::summary();
}
