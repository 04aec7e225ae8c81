// Timings of the CUDA backend's sample_rows (cuda/sampling.cu) at the Qwen2.5 vocabulary, V = 151936, for
// R = 1, 16 and 256 rows of random logits (normal, sigma 2; every eighth row peaked: one logit at +16, the
// next two at +12), under these mixes:
//   greedy_top20             greedy with the top-20 logprobs
//   topk50_topp0.9_minp_rep  T 0.8, top_k 50, top_p 0.9, min_p 0.02, repetition penalty 1.1 over a
//                            1024-token prompt (~1000 repetition edits): the e2e benchmark's filtered request
//   topp0.9                  T 1, top_p 0.9 alone
//   walk_t1_topp1            T 1, top_p 1 (the whole vocabulary: the id-order walk)
// sample_rows edits its rows in place, so before every run the rows are restored from a pristine device copy,
// outside the timed region (cudaEvents around the sample_rows call alone, on sgl_stream()). Median of 21 runs
// after 3 warm-ups. Prints one line per case:
//   SAMPLE R <R> V <V> mix <mix> us <median us> rows_per_s <R / median>
// No CUDA device: prints a line, exits 0.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cuda_common.cuh"
#include "engine/sample_rows_batch.h"
#include "engine/sampler.h"

using namespace sgl;

namespace {

const Backend* CU = nullptr;
constexpr int kV = 151936;
constexpr int kMaxR = 256;
constexpr int kWarmup = 3, kRuns = 21;

struct Mix {
  const char* name;
  float T;
  int top_k;
  float top_p, min_p, rep;
  int top_n;  // > 0: return_logprob with that many top logprobs
};
const Mix kMixes[] = {
    {"greedy_top20", 0.0f, -1, 1.0f, 0.0f, 1.0f, 20},
    {"topk50_topp0.9_minp_rep", 0.8f, 50, 0.9f, 0.02f, 1.1f, 0},
    {"topp0.9", 1.0f, -1, 0.9f, 0.0f, 1.0f, 0},
    {"walk_t1_topp1", 1.0f, -1, 1.0f, 0.0f, 1.0f, 0},
};

void* dev_alloc(size_t bytes) {
  void* p = CU->alloc(std::max<size_t>(bytes, 16));
  if (!p) throw std::runtime_error("device alloc of " + std::to_string(bytes) + " bytes failed");
  return p;
}

template <class T>
T* upload(const std::vector<T>& v, std::vector<void*>& owned) {
  T* d = static_cast<T*>(dev_alloc(v.size() * sizeof(T)));
  if (!v.empty()) CU->upload(d, v.data(), v.size() * sizeof(T));
  owned.push_back(d);
  return d;
}

// Median microseconds of sample_rows over R rows of `mix` (the logits restored before each run).
double bench_case(const Mix& mix, int R, float* d_logits, const float* d_pristine, void* d_scratch) {
  std::mt19937 rng(uint32_t(R) * 7919u + 17u);
  std::uniform_int_distribution<int> tok(0, kV - 1);
  SampleRowsBatch b;
  for (int r = 0; r < R; ++r) {
    SamplingParams p;
    p.temperature = mix.T;
    p.top_k = mix.top_k;
    p.top_p = mix.top_p;
    p.min_p = mix.min_p;
    p.repetition_penalty = mix.rep;
    p.repetition_penalty_counts_prompt = mix.rep != 1.0f;  // the prompt's ~1000 distinct tokens are edited
    p.return_logprob = mix.top_n > 0;
    p.top_logprobs_num = mix.top_n;
    p.has_seed = true;
    p.seed = uint64_t(r) + 1;
    std::vector<int32_t> prompt(1024);
    for (auto& t : prompt) t = tok(rng);
    SamplerState st;
    sampler_state_init(st, p, prompt.data(), prompt.size(), {kV - 1});
    b.add(r, p, st, kV);
  }
  std::vector<void*> owned;
  std::vector<int32_t> zeros_i(size_t(R) * kSampleMaxTopN, 0);
  std::vector<float> zeros_f(size_t(R) * kSampleMaxTopN, 0.0f);
  SampleRowsParams dp{};
  dp.logits = d_logits;
  dp.rows = upload(b.rows, owned);
  dp.R = R;
  dp.V = kV;
  dp.inv_temp = upload(b.inv_temp, owned);
  dp.top_k = upload(b.top_k, owned);
  dp.top_p = upload(b.top_p, owned);
  dp.min_p = upload(b.min_p, owned);
  dp.u = upload(b.u, owned);
  dp.flags = upload(b.flags, owned);
  dp.top_n = upload(b.top_n, owned);
  dp.edit_indptr = upload(b.edit_indptr, owned);
  dp.edits = upload(b.edits, owned);
  dp.ids_indptr = upload(b.ids_indptr, owned);
  dp.ids = upload(b.ids, owned);
  dp.token = upload(zeros_i, owned);
  dp.logprob = upload(zeros_f, owned);
  dp.status = upload(zeros_i, owned);
  dp.top_ids = upload(zeros_i, owned);
  dp.top_lps = upload(zeros_f, owned);
  dp.ids_lps = upload(std::vector<float>(std::max<size_t>(1, b.ids.size()), 0.0f), owned);
  dp.scratch = d_scratch;

  cudaStream_t st = sgl_stream();
  cudaEvent_t a, e;
  SGL_CUDA_CHECK(cudaEventCreate(&a));
  SGL_CUDA_CHECK(cudaEventCreate(&e));
  const size_t bytes = size_t(R) * kV * sizeof(float);
  std::vector<double> us;
  for (int it = 0; it < kWarmup + kRuns; ++it) {
    SGL_CUDA_CHECK(cudaMemcpyAsync(d_logits, d_pristine, bytes, cudaMemcpyDeviceToDevice, st));
    SGL_CUDA_CHECK(cudaEventRecord(a, st));
    CU->sample_rows(dp);
    SGL_CUDA_CHECK(cudaEventRecord(e, st));
    SGL_CUDA_CHECK(cudaEventSynchronize(e));
    float ms = 0.0f;
    SGL_CUDA_CHECK(cudaEventElapsedTime(&ms, a, e));
    if (it >= kWarmup) us.push_back(double(ms) * 1e3);
  }
  SGL_CUDA_CHECK(cudaGetLastError());
  SGL_CUDA_CHECK(cudaEventDestroy(a));
  SGL_CUDA_CHECK(cudaEventDestroy(e));
  int32_t tok0 = -1;
  CU->download(&tok0, dp.token, sizeof(tok0));
  if (tok0 < 0 || tok0 >= kV) throw std::runtime_error(std::string("sample_rows returned token ") + std::to_string(tok0));
  for (void* p : owned) CU->free(p);
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

}  // namespace

int main() {
  CU = cuda_backend();
  if (!CU) {
    std::printf("no CUDA device: skipped\n");
    return 0;
  }
  cudaDeviceProp prop;
  SGL_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
  std::vector<std::string> lines;
  try {
    // the pristine logits: normal, sigma 2; every eighth row peaked
    std::vector<float> h(size_t(kMaxR) * kV);
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 2.0f);
    std::uniform_int_distribution<int> tok(0, kV - 1);
    for (int r = 0; r < kMaxR; ++r) {
      float* row = h.data() + size_t(r) * kV;
      for (int i = 0; i < kV; ++i) row[i] = nd(rng);
      if (r % 8 == 3) {
        row[tok(rng)] = 16.0f;
        row[tok(rng)] = 12.0f;
        row[tok(rng)] = 12.0f;
      }
    }
    float* d_pristine = static_cast<float*>(dev_alloc(h.size() * sizeof(float)));
    float* d_logits = static_cast<float*>(dev_alloc(h.size() * sizeof(float)));
    CU->upload(d_pristine, h.data(), h.size() * sizeof(float));
    void* d_scratch = dev_alloc(sample_rows_scratch_bytes(kMaxR, kV));
    std::printf("%-26s %5s %12s %14s\n", "mix", "R", "us", "rows/s");
    for (const Mix& mix : kMixes)
      for (int R : {1, 16, 256}) {
        const double us = bench_case(mix, R, d_logits, d_pristine, d_scratch);
        std::printf("%-26s %5d %12.1f %14.0f\n", mix.name, R, us, R / (us * 1e-6));
        char line[256];
        std::snprintf(line, sizeof line, "SAMPLE R %d V %d mix %s us %.1f rows_per_s %.0f", R, kV, mix.name, us,
                      R / (us * 1e-6));
        lines.push_back(line);
      }
    CU->free(d_scratch);
    CU->free(d_logits);
    CU->free(d_pristine);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sampling_bench: %s\n", e.what());
    return 1;
  }
  std::printf("\n");
  for (const std::string& l : lines) std::printf("%s\n", l.c_str());
  return 0;
}
