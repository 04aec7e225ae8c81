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
  return gpu_check::summary();
}
