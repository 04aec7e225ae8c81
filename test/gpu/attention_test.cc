// Parity harness of sgl::attention_cuda (cuda/attention*.cu) against the CPU reference
// (sgl::cpu_backend().attention, f32). Each case builds a varlen paged batch with fixed-seed N(0, 1) inputs
// rounded to bf16; the CPU runs on the f32 values of those bf16 numbers, CUDA on the bf16 data. KV slots no
// sequence owns (unused pages, the tail of each last page) hold NaN, so a kernel that reads past kv_len
// without masking fails; the CUDA output is pre-filled with NaN (0xFFFF) so unwritten rows fail too.
// Pass: no NaN and ||out - ref|| / ||ref|| < 2e-2. Prints one line per case and ends with
// "N passed, M failed"; exits non-zero on any failure (0 passed, 0 failed and exit 0 without a GPU).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "attention.h"
#include "backend/backend.h"
#include "cuda_common.cuh"
#include "gpu_check.h"

using namespace sgl;
using gpu_check::report;

namespace {


uint16_t f2bf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);                      // round to nearest even
  return uint16_t(u >> 16);
}
float bf2f(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct Seq {
  int q_len, kv_len;
};

struct Case {
  std::string name;
  int D, P, H, Hkv;
  bool causal;
  std::vector<Seq> seqs;
};

#define CK(expr)                                                                            \
  do {                                                                                      \
    cudaError_t e_ = (expr);                                                                \
    if (e_ != cudaSuccess) {                                                                \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorName(e_), __FILE__, \
                   __LINE__, #expr);                                                        \
      std::exit(2);                                                                         \
    }                                                                                       \
  } while (0)

template <class T>
T* to_device(const std::vector<T>& v) {
  T* d = nullptr;
  CK(cudaMalloc(&d, std::max<size_t>(v.size(), 1) * sizeof(T)));
  if (!v.empty()) CK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}


void run_case(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int B = int(c.seqs.size()), D = c.D, P = c.P, H = c.H, Hkv = c.Hkv;

  // CSR page table: each sequence gets ceil(kv_len / P) pages drawn from a shuffled pool with spares.
  std::vector<int32_t> qo_indptr(B + 1, 0), kv_indptr(B + 1, 0), kv_lens(B);
  int max_q = 0, max_kv = 0;
  for (int b = 0; b < B; b++) {
    const Seq& s = c.seqs[size_t(b)];
    qo_indptr[b + 1] = qo_indptr[b] + s.q_len;
    kv_indptr[b + 1] = kv_indptr[b] + (s.kv_len + P - 1) / P;
    kv_lens[b] = s.kv_len;
    max_q = std::max(max_q, s.q_len);
    max_kv = std::max(max_kv, s.kv_len);
  }
  const int T = qo_indptr[B];
  const int used_pages = kv_indptr[B];
  const int num_pages = used_pages + 3;
  std::vector<int32_t> pool(size_t(num_pages), 0);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  std::vector<int32_t> page_ids(pool.begin(), pool.begin() + used_pages);

  // Caches: NaN everywhere, then the owned rows.
  const size_t row = size_t(Hkv) * D;
  const size_t cache_elems = size_t(num_pages) * P * row;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> kf(cache_elems, nan), vf(cache_elems, nan);
  std::vector<uint16_t> kb(cache_elems, 0x7fc0), vb(cache_elems, 0x7fc0);
  for (int b = 0; b < B; b++)
    for (int j = 0; j < kv_lens[b]; j++) {
      const size_t base = (size_t(page_ids[size_t(kv_indptr[b] + j / P)]) * P + j % P) * row;
      for (size_t e = 0; e < row; e++) {
        kb[base + e] = f2bf(normal(rng));
        kf[base + e] = bf2f(kb[base + e]);
        vb[base + e] = f2bf(normal(rng));
        vf[base + e] = bf2f(vb[base + e]);
      }
    }
  const size_t q_elems = size_t(T) * H * D;
  std::vector<float> qf(q_elems);
  std::vector<uint16_t> qb(q_elems);
  for (size_t i = 0; i < q_elems; i++) {
    qb[i] = f2bf(normal(rng));
    qf[i] = bf2f(qb[i]);
  }

  AttentionParams p{};
  p.B = B;
  p.T = T;
  p.H = H;
  p.Hkv = Hkv;
  p.D = D;
  p.P = P;
  p.scale = 1.0f / std::sqrt(float(D));
  p.causal = c.causal;
  p.max_q_len = max_q;
  p.max_kv_len = max_kv;

  // CPU reference
  std::vector<float> ref(q_elems, nan);
  {
    AttentionParams h = p;
    h.q = qf.data();
    h.k_cache = kf.data();
    h.v_cache = vf.data();
    h.out = ref.data();
    h.qo_indptr = qo_indptr.data();
    h.kv_indptr = kv_indptr.data();
    h.kv_page_indices = page_ids.data();
    h.kv_lens = kv_lens.data();
    cpu_backend().attention(h);
  }

  // CUDA
  uint16_t* dq = to_device(qb);
  uint16_t* dk = to_device(kb);
  uint16_t* dv = to_device(vb);
  int32_t* dqo = to_device(qo_indptr);
  int32_t* dkvi = to_device(kv_indptr);
  int32_t* dpages = to_device(page_ids);
  int32_t* dlens = to_device(kv_lens);
  uint16_t* dout = nullptr;
  CK(cudaMalloc(&dout, std::max<size_t>(q_elems, 1) * 2));
  CK(cudaMemset(dout, 0xFF, std::max<size_t>(q_elems, 1) * 2));  // bf16 0xFFFF = NaN
  std::string error;
  try {
    AttentionParams d = p;
    d.q = dq;
    d.k_cache = dk;
    d.v_cache = dv;
    d.out = dout;
    d.qo_indptr = dqo;
    d.kv_indptr = dkvi;
    d.kv_page_indices = dpages;
    d.kv_lens = dlens;
    attention_cuda(d);
    SGL_CUDA_CHECK(cudaStreamSynchronize(sgl_stream()));
  } catch (const std::exception& e) {
    error = e.what();
  }
  std::vector<uint16_t> got(q_elems);
  if (error.empty() && q_elems) CK(cudaMemcpy(got.data(), dout, q_elems * 2, cudaMemcpyDeviceToHost));
  for (void* ptr : {static_cast<void*>(dq), static_cast<void*>(dk), static_cast<void*>(dv), static_cast<void*>(dqo),
                    static_cast<void*>(dkvi), static_cast<void*>(dpages), static_cast<void*>(dlens),
                    static_cast<void*>(dout)})
    CK(cudaFree(ptr));
  if (!error.empty()) {
    report(c.name, false, "(exception: " + error + ")");
    return;
  }

  double err2 = 0.0, ref2 = 0.0, max_abs = 0.0;
  size_t nans = 0, first_nan = 0;
  for (size_t i = 0; i < q_elems; i++) {
    const double g = bf2f(got[i]), r = ref[i];
    if (std::isnan(g) || std::isnan(r)) {
      if (!nans) first_nan = i;
      nans++;
      continue;
    }
    err2 += (g - r) * (g - r);
    ref2 += r * r;
    max_abs = std::max(max_abs, std::fabs(g - r));
  }
  const double rel = ref2 > 0.0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  const bool ok = nans == 0 && rel < 2e-2;
  char buf[256];
  if (nans)
    std::snprintf(buf, sizeof buf, "(B=%d T=%d max_q=%d max_kv=%d: %zu NaN, first at token %zu head %zu)", B, T,
                  max_q, max_kv, nans, first_nan / (size_t(H) * D), first_nan / D % H);
  else
    std::snprintf(buf, sizeof buf, "(B=%d T=%d max_q=%d max_kv=%d: rel_l2=%.3e max_abs=%.3e)", B, T, max_q, max_kv,
                  rel, max_abs);
  report(c.name, ok, buf);
}

std::string case_name(const char* kind, int D, int P, int H, int Hkv, bool causal) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "%s D=%d P=%d H=%d Hkv=%d %s", kind, D, P, H, Hkv, causal ? "causal" : "noncausal");
  return buf;
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  const int Ds[] = {8, 16, 64, 128}, Ps[] = {1, 4, 16, 64}, ratios[] = {1, 2, 4, 8};
  // Varlen mixes: pure prefill, prefill over a cached prefix, decode rows, an empty query, > BM rows.
  for (int iD = 0; iD < 4; iD++)
    for (int iP = 0; iP < 4; iP++)
      for (int causal = 0; causal < 2; causal++) {
        const int Hkv = 2, H = Hkv * ratios[(iD + iP + causal) % 4];
        cases.push_back({case_name("mixed", Ds[iD], Ps[iP], H, Hkv, causal), Ds[iD], Ps[iP], H, Hkv, causal != 0,
                         {{37, 37}, {20, 150}, {1, 77}, {0, 50}, {130, 130}, {65, 300}, {1, 1}}});
      }
  // Short queries only (max_q_len <= 64: the BM = 64 prefill tiles), every GQA ratio.
  for (int D : {64, 128})
    for (int r = 0; r < 4; r++) {
      const bool causal = r % 2 == 0;
      cases.push_back({case_name("short", D, 16, 4 * ratios[r], 4, causal), D, 16, 4 * ratios[r], 4, causal,
                       {{64, 64}, {5, 200}, {1, 1}, {0, 0}, {33, 1000}, {2, 2}}});
    }
  // Decode-only batches with long contexts (split-KV + merge), q_len 0 rows among them.
  const std::vector<Seq> long_ctx = {{1, 1}, {1, 100}, {1, 4097}, {1, 33000}};
  cases.push_back({case_name("decode", 128, 16, 32, 8, false), 128, 16, 32, 8, false, long_ctx});
  cases.push_back({case_name("decode", 128, 64, 32, 8, true), 128, 64, 32, 8, true, long_ctx});
  cases.push_back({case_name("decode", 64, 1, 32, 8, false), 64, 1, 32, 8, false, long_ctx});
  cases.push_back({case_name("decode", 128, 4, 8, 8, false), 128, 4, 8, 8, false, long_ctx});
  cases.push_back({case_name("decode", 64, 16, 16, 2, true), 64, 16, 16, 2, true, long_ctx});
  cases.push_back({case_name("decode", 128, 16, 32, 1, false), 128, 16, 32, 1, false, long_ctx});  // G = 32
  cases.push_back({case_name("decode", 128, 16, 24, 1, false), 128, 16, 24, 1, false, long_ctx});  // G = 24
  cases.push_back({case_name("decode", 16, 16, 8, 2, false), 16, 16, 8, 2, false, long_ctx});
  cases.push_back({case_name("decode", 8, 4, 4, 4, true), 8, 4, 4, 4, true, long_ctx});
  cases.push_back({case_name("decode-gaps", 128, 16, 32, 8, false), 128, 16, 32, 8, false,
                   {{1, 300}, {0, 500}, {1, 5000}, {0, 0}, {1, 64}, {1, 65}, {1, 2}}});
  cases.push_back({case_name("decode-gaps", 64, 4, 16, 4, true), 64, 4, 16, 4, true,
                   {{0, 10}, {1, 257}, {1, 12000}, {0, 0}, {1, 63}}});
  {
    // Many sequences: the grid fills the GPU without splitting.
    std::vector<Seq> many;
    std::mt19937 r(7);
    for (int b = 0; b < 64; b++) many.push_back({1, std::uniform_int_distribution<int>(1500, 2500)(r)});
    cases.push_back({case_name("decode-b64", 128, 16, 32, 8, false), 128, 16, 32, 8, false, many});
    std::vector<Seq> mid(16, Seq{1, 4096});
    cases.push_back({case_name("decode-b16", 128, 16, 32, 8, false), 128, 16, 32, 8, false, mid});
    cases.push_back({case_name("decode-b16", 64, 16, 32, 8, false), 64, 16, 32, 8, false, mid});
  }
  // Short prefills whose grid is smaller than the GPU (the wgmma kernel's split-KV: several blocks per query
  // tile, merged by the last one in): gte-Qwen2-1.5B's 500 tokens of 12 heads, a cached prefix, non-causal,
  // D = 64, two sequences of different lengths.
  cases.push_back({case_name("split", 128, 16, 12, 2, true), 128, 16, 12, 2, true, {{500, 500}}});
  cases.push_back({case_name("split", 128, 16, 4, 4, true), 128, 16, 4, 4, true, {{300, 800}}});
  cases.push_back({case_name("split", 64, 16, 8, 2, false), 64, 16, 8, 2, false, {{257, 700}}});
  cases.push_back({case_name("split", 64, 4, 8, 2, true), 64, 4, 8, 2, true, {{500, 500}}});
  cases.push_back({case_name("split", 128, 16, 6, 2, true), 128, 16, 6, 2, true, {{400, 400}, {130, 900}, {1, 50}}});
  // Long prefills (q_len 1000+), with and without a cached prefix.
  cases.push_back({case_name("long-prefill", 128, 16, 8, 2, true), 128, 16, 8, 2, true, {{1100, 1100}}});
  cases.push_back({case_name("long-prefill", 128, 1, 4, 4, true), 128, 1, 4, 4, true, {{1030, 1600}, {1, 900}}});
  cases.push_back({case_name("long-prefill", 64, 4, 4, 4, false), 64, 4, 4, 4, false, {{1030, 1500}, {300, 300}}});
  cases.push_back({case_name("long-prefill", 64, 64, 16, 2, true), 64, 64, 16, 2, true, {{1200, 1200}, {0, 5}}});
  cases.push_back({case_name("long-prefill", 16, 16, 4, 2, true), 16, 16, 4, 2, true, {{1000, 1000}}});
  return cases;
}

}  // namespace

int main() {
  if (!gpu_check::cuda_or_skip()) return 0;
  const std::vector<Case> cases = all_cases();
  uint32_t seed = 1000;
  for (const Case& c : cases) run_case(c, seed++);
  return gpu_check::summary();
}
