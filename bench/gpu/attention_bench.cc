// Timing of sgl::attention_cuda (cuda/attention*.cu) on the GPU: causal hd128 prefill (TFLOP/s) and split-KV
// decode (GB/s of KV read, and its fraction of the device-to-device copy bandwidth measured here).
// cudaEvent timing: warm-up, then the median of kRuns runs; inputs rotate over several buffer sets where one
// set would sit in L2. Prints a table and one machine-readable line per row:
//   ATTN prefill hd128 seq 4096 ms X tflops Y
//   ATTN prefill hd128 batch 16 seq 1024 ms X tflops Y
//   ATTN decode B 16 ctx 4096 ms X gbps Y frac Z
//   ATTN memcpy gbps Y
// Usage: attention_bench [prefill|decode|short]   (default: prefill and decode; short: /encode-sized prefills). SGL_ATTN_SPLITS=<n> forces the decode split count.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "attention.h"
#include "backend/backend.h"
#include "cuda_common.cuh"

using namespace sgl;

namespace {

constexpr int kWarmup = 5;
constexpr int kRuns = 30;
constexpr size_t kRotateBytes = size_t(256) << 20;  // rotate sets until this many bytes are touched

uint16_t f2bf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// A device block of random bf16 values, copied (device to device) to fill larger buffers.
const void* random_block(size_t* bytes) {
  static void* blk = nullptr;
  static const size_t n = size_t(32) << 20;  // elements (64 MiB)
  if (!blk) {
    std::vector<uint16_t> h(n);
    std::mt19937 rng(42);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& x : h) x = f2bf(nd(rng));
    SGL_CUDA_CHECK(cudaMalloc(&blk, n * 2));
    SGL_CUDA_CHECK(cudaMemcpy(blk, h.data(), n * 2, cudaMemcpyHostToDevice));
  }
  *bytes = n * 2;
  return blk;
}

void* alloc_random(size_t bytes) {
  void* p = nullptr;
  SGL_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 16)));
  size_t blk_bytes = 0;
  const void* blk = random_block(&blk_bytes);
  for (size_t off = 0; off < bytes; off += blk_bytes)
    SGL_CUDA_CHECK(cudaMemcpy(static_cast<char*>(p) + off, blk, std::min(blk_bytes, bytes - off),
                              cudaMemcpyDeviceToDevice));
  return p;
}

template <class T>
T* upload(const std::vector<T>& v) {
  T* d = nullptr;
  SGL_CUDA_CHECK(cudaMalloc(&d, std::max<size_t>(v.size(), 1) * sizeof(T)));
  SGL_CUDA_CHECK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

// Median GPU time (ms) of fn(run) over kRuns runs after kWarmup, each bracketed by its own events.
template <class Fn>
double time_median(Fn&& fn) {
  cudaStream_t st = sgl_stream();
  for (int i = 0; i < kWarmup; i++) fn(i);
  SGL_CUDA_CHECK(cudaStreamSynchronize(st));
  std::vector<cudaEvent_t> ev(2 * kRuns);
  for (auto& e : ev) SGL_CUDA_CHECK(cudaEventCreate(&e));
  for (int i = 0; i < kRuns; i++) {
    SGL_CUDA_CHECK(cudaEventRecord(ev[2 * i], st));
    fn(kWarmup + i);
    SGL_CUDA_CHECK(cudaEventRecord(ev[2 * i + 1], st));
  }
  SGL_CUDA_CHECK(cudaStreamSynchronize(st));
  std::vector<double> ms(kRuns);
  for (int i = 0; i < kRuns; i++) {
    float t = 0.0f;
    SGL_CUDA_CHECK(cudaEventElapsedTime(&t, ev[2 * i], ev[2 * i + 1]));
    ms[size_t(i)] = t;
  }
  for (auto& e : ev) SGL_CUDA_CHECK(cudaEventDestroy(e));
  std::sort(ms.begin(), ms.end());
  return ms[kRuns / 2];
}

// One benchmark shape: B sequences, each q_len queries over kv_len keys (queries are the last q_len).
struct Shape {
  int B, q_len, kv_len, H, Hkv, D, P;
  bool causal;
};

struct Buffers {
  std::vector<void*> q, k, v, out;  // per rotation set
  int32_t *qo = nullptr, *kvi = nullptr, *pages = nullptr, *lens = nullptr;
};

size_t set_bytes(const Shape& s, size_t* kv_bytes_out) {
  const size_t pages = size_t(s.B) * ((s.kv_len + s.P - 1) / s.P);
  const size_t kv = pages * s.P * s.Hkv * s.D * 2;
  const size_t qo = size_t(s.B) * s.q_len * s.H * s.D * 2;
  *kv_bytes_out = kv;
  return 2 * kv + 2 * qo;
}

Buffers make_buffers(const Shape& s, int sets) {
  Buffers bf;
  const int pages_per_seq = (s.kv_len + s.P - 1) / s.P;
  const int num_pages = s.B * pages_per_seq;
  std::vector<int32_t> qo(size_t(s.B) + 1), kvi(size_t(s.B) + 1), lens(size_t(s.B), s.kv_len);
  for (int b = 0; b <= s.B; b++) qo[size_t(b)] = b * s.q_len, kvi[size_t(b)] = b * pages_per_seq;
  std::vector<int32_t> pages(size_t(num_pages), 0);
  std::iota(pages.begin(), pages.end(), 0);
  std::mt19937 rng(3);
  std::shuffle(pages.begin(), pages.end(), rng);  // a fragmented cache, as in serving
  bf.qo = upload(qo);
  bf.kvi = upload(kvi);
  bf.pages = upload(pages);
  bf.lens = upload(lens);
  const size_t kv = size_t(num_pages) * s.P * s.Hkv * s.D * 2;
  const size_t qb = size_t(s.B) * s.q_len * s.H * s.D * 2;
  for (int i = 0; i < sets; i++) {
    bf.q.push_back(alloc_random(qb));
    bf.k.push_back(alloc_random(kv));
    bf.v.push_back(alloc_random(kv));
    void* o = nullptr;
    SGL_CUDA_CHECK(cudaMalloc(&o, qb));
    bf.out.push_back(o);
  }
  return bf;
}

void free_buffers(Buffers& bf) {
  for (auto* vec : {&bf.q, &bf.k, &bf.v, &bf.out})
    for (void* p : *vec) SGL_CUDA_CHECK(cudaFree(p));
  for (int32_t* p : {bf.qo, bf.kvi, bf.pages, bf.lens}) SGL_CUDA_CHECK(cudaFree(p));
}

// Median ms of attention_cuda on the shape; 0 when skipped (too large).
double time_shape(const Shape& s) {
  size_t kv_bytes = 0;
  const size_t per_set = set_bytes(s, &kv_bytes);
  size_t free_b = 0, total_b = 0;
  SGL_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  if (per_set > size_t(40e9) || per_set + (size_t(1) << 30) > free_b) return 0.0;
  int sets = int(std::min<size_t>(64, (kRotateBytes + per_set - 1) / per_set));
  while (sets > 1 && size_t(sets) * per_set + (size_t(1) << 30) > free_b) sets--;
  Buffers bf = make_buffers(s, sets);
  AttentionParams p{};
  p.B = s.B;
  p.T = s.B * s.q_len;
  p.H = s.H;
  p.Hkv = s.Hkv;
  p.D = s.D;
  p.P = s.P;
  p.scale = 1.0f / std::sqrt(float(s.D));
  p.causal = s.causal;
  p.max_q_len = s.q_len;
  p.max_kv_len = s.kv_len;
  p.qo_indptr = bf.qo;
  p.kv_indptr = bf.kvi;
  p.kv_page_indices = bf.pages;
  p.kv_lens = bf.lens;
  const double ms = time_median([&](int run) {
    const size_t i = size_t(run % sets);
    p.q = bf.q[i];
    p.k_cache = bf.k[i];
    p.v_cache = bf.v[i];
    p.out = bf.out[i];
    attention_cuda(p);
  });
  free_buffers(bf);
  return ms;
}

double memcpy_gbps() {
  const size_t bytes = size_t(1) << 30;
  void *a = nullptr, *b = nullptr;
  SGL_CUDA_CHECK(cudaMalloc(&a, bytes));
  SGL_CUDA_CHECK(cudaMalloc(&b, bytes));
  SGL_CUDA_CHECK(cudaMemset(a, 1, bytes));
  SGL_CUDA_CHECK(cudaDeviceSynchronize());
  const double ms = time_median([&](int) {
    SGL_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, sgl_stream()));
  });
  SGL_CUDA_CHECK(cudaFree(a));
  SGL_CUDA_CHECK(cudaFree(b));
  return 2.0 * double(bytes) / (ms * 1e-3) / 1e9;  // bytes read + written
}

void bench_prefill() {
  std::printf("\n%-34s %10s %10s\n", "prefill (causal, H=32 Hkv=8 D=128 P=16)", "ms", "TFLOP/s");
  struct Row {
    int B, seq;
  };
  for (const Row r : {Row{1, 1024}, Row{1, 4096}, Row{1, 16384}, Row{16, 1024}, Row{4, 4096}}) {
    const Shape s{r.B, r.seq, r.seq, 32, 8, 128, 16, true};
    const double ms = time_shape(s);
    char label[96];
    if (r.B == 1) std::snprintf(label, sizeof label, "prefill hd128 seq %d", r.seq);
    else std::snprintf(label, sizeof label, "prefill hd128 batch %d seq %d", r.B, r.seq);
    if (ms <= 0.0) {
      std::printf("%-34s %10s\n", label, "skipped");
      continue;
    }
    const double flops = double(r.B) * 4.0 * double(r.seq) * double(r.seq) * s.H * s.D / 2.0;
    const double tflops = flops / (ms * 1e-3) / 1e12;
    std::printf("%-34s %10.3f %10.1f\n", label, ms, tflops);
    std::printf("ATTN %s ms %.4f tflops %.1f\n", label, ms, tflops);
  }
  // D = 64 with Qwen2.5-0.5B's heads (H 14, Hkv 2): the shape of that model's prefill.
  for (int seq : {4096, 16384}) {
    const Shape s{1, seq, seq, 14, 2, 64, 16, true};
    const double ms = time_shape(s);
    char label[96];
    std::snprintf(label, sizeof label, "prefill hd64 h14 seq %d", seq);
    if (ms <= 0.0) continue;
    const double tflops = 4.0 * double(seq) * double(seq) * s.H * s.D / 2.0 / (ms * 1e-3) / 1e12;
    std::printf("%-34s %10.3f %10.1f\n", label, ms, tflops);
    std::printf("ATTN %s ms %.4f tflops %.1f\n", label, ms, tflops);
  }
}

// Short prefills of gte-Qwen2-1.5B's heads (H 12, Hkv 2, D 128): the /encode shapes, where a 128-row query tile
// gives few blocks (500 tokens: 4 x 12 = 48 on 132 SMs). SGL_PREFILL_WGMMA / SGL_PREFILL_VARIANT pick the kernel.
void bench_short() {
  std::printf("\n%-34s %10s %10s\n", "short prefill (causal, H=12 Hkv=2)", "ms", "TFLOP/s");
  for (const int B : {1, 4, 32})
    for (const int seq : {128, 500}) {
      const Shape s{B, seq, seq, 12, 2, 128, 16, true};
      const double ms = time_shape(s);
      if (ms <= 0.0) continue;
      char label[96];
      std::snprintf(label, sizeof label, "short h12 batch %d seq %d", B, seq);
      const double tflops = double(B) * 4.0 * double(seq) * double(seq) * s.H * s.D / 2.0 / (ms * 1e-3) / 1e12;
      std::printf("%-34s %10.4f %10.1f\n", label, ms, tflops);
      std::printf("ATTN %s ms %.4f tflops %.1f\n", label, ms, tflops);
    }
}

void bench_decode() {
  const double copy = memcpy_gbps();
  std::printf("\ndevice-to-device copy: %.0f GB/s (read + write of a 1 GiB buffer)\n", copy);
  std::printf("ATTN memcpy gbps %.1f\n", copy);
  std::printf("\n%-34s %10s %10s %8s\n", "decode (H=32 Hkv=8 D=128 P=16)", "ms", "KV GB/s", "of copy");
  for (int B : {1, 16, 64})
    for (int ctx : {1024, 4096, 32768}) {
      const Shape s{B, 1, ctx, 32, 8, 128, 16, false};
      const double ms = time_shape(s);
      char label[96];
      std::snprintf(label, sizeof label, "decode B %d ctx %d", B, ctx);
      if (ms <= 0.0) {
        std::printf("%-34s %10s\n", label, "skipped");
        continue;
      }
      const double bytes = 2.0 * B * double(ctx) * s.Hkv * s.D * 2.0;
      const double gbps = bytes / (ms * 1e-3) / 1e9;
      std::printf("%-34s %10.4f %10.0f %7.1f%%\n", label, ms, gbps, 100.0 * gbps / copy);
      std::printf("ATTN %s ms %.4f gbps %.1f frac %.3f\n", label, ms, gbps, gbps / copy);
    }
}

}  // namespace

int main(int argc, char** argv) {
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    cudaGetLastError();
    std::printf("no CUDA device: skipped\n");
    return 0;
  }
  const std::string which = argc > 1 ? argv[1] : "all";
  cudaDeviceProp prop;
  SGL_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MiB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  try {
    if (which == "all" || which == "prefill") bench_prefill();
    if (which == "all" || which == "decode") bench_decode();
    if (which == "short") bench_short();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
