// Timings of the CUDA backend's matmul and memory-bound ops (cudaEvents on sgl_stream(): warm-up, then the
// median of 25 samples, each sample a burst of back-to-back calls sized to ~200 us).
//
//   matmul: TFLOP/s and effective GB/s (W + x + y bytes) for the Qwen2.5-0.5B projections (C = 896, 14 query
//           heads / 2 KV heads of 64: QKV N = 1152, O, gate/up N = 4864, down K = 4864, lm_head N = 151936
//           with f32 logits) at T in {1, 8, 64, 256, 4096} (lm_head up to 256: it only sees the logit rows),
//           plus an 8192^3 GEMM as the tensor-core ceiling. Weights rotate through enough copies (>= 256 MiB)
//           that every call streams them from HBM, as the model's layers do.
//   rms_norm (+residual, out = x as the model calls it, and plain), silu_mul: GB/s of the bytes they must
//           move, "cold" (buffers rotate through >= 256 MiB) and "hot" (one set of buffers, L2-resident).
//   fused:  the decode GEMVs with their elementwise op folded in (rms_norm_matmul for q|k|v 896 -> 1152 and
//           gate|up 896 -> 9728, silu_mul_matmul for down 4864 -> 896) at T = 1, beside the unfused pair
//           (rms_norm + matmul, silu_mul + matmul) on the same buffers; weights rotate (cold), GB/s of W.
//   qkv_rope: qkv_rope_store's scalar and 16-byte kernels at gte-Qwen2-1.5B's and Qwen2.5-0.5B's heads.
//   gemm_silu: the fused prefill gate|up GEMM + silu_mul (sm_90) against cuBLASLt gate|up + silu_mul.
//   copy:   device-to-device cudaMemcpyAsync, GB/s counting read + write.
//   moe:    the MoE ops (cuda/moe.cu) at Qwen1.5-MoE-A2.7B's shape (C = 2048, E = 60, top-4, moe_intermediate
//           1408: gate|up 2048 -> 2816, down 1408 -> 2048) for T in {1, 64, 4096}, the routing of random
//           logits: moe_route, moe_permute (index + row copy), grouped_matmul gate_up and down (GB/s of the
//           weights of the experts touched, TFLOP/s of the rows computed; at T = 64 also with the GEMV and the
//           tensor-core path forced), moe_unpermute (GB/s of y, shared and out). Expert weights rotate over
//           2E buffers through 8 pointer arrays so that a decode call's few experts are not L2-resident.
//
// Prints a table, then one line per row: "OPS <op> key=value ...". No CUDA device: prints a line, exits 0.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cpu/ops.h"
#include "cuda_common.cuh"
#include "ops.h"

using namespace sgl;

namespace {

const Backend* CU = nullptr;
std::vector<std::string> g_ops_lines;

constexpr size_t kRotateBytes = size_t(256) << 20;  // > 5x the H100's 50 MB L2
constexpr int kSamples = 25;

// Median microseconds per call of fn(i) (i counts calls, for rotating buffers).
double time_us(const std::function<void(int64_t)>& fn) {
  cudaStream_t st = sgl_stream();
  cudaEvent_t a, b;
  SGL_CUDA_CHECK(cudaEventCreate(&a));
  SGL_CUDA_CHECK(cudaEventCreate(&b));
  int64_t call = 0;
  for (int i = 0; i < 3; i++) fn(call++);
  SGL_CUDA_CHECK(cudaStreamSynchronize(st));
  // Probe one call to size the bursts.
  SGL_CUDA_CHECK(cudaEventRecord(a, st));
  fn(call++);
  SGL_CUDA_CHECK(cudaEventRecord(b, st));
  SGL_CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0.0f;
  SGL_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  const double probe_us = std::max(1e-3, double(ms) * 1e3);
  const int burst = int(std::min(200.0, std::max(1.0, std::ceil(200.0 / probe_us))));
  std::vector<double> samples;
  for (int s = 0; s < kSamples; s++) {
    SGL_CUDA_CHECK(cudaEventRecord(a, st));
    for (int j = 0; j < burst; j++) fn(call++);
    SGL_CUDA_CHECK(cudaEventRecord(b, st));
    SGL_CUDA_CHECK(cudaEventSynchronize(b));
    SGL_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    samples.push_back(double(ms) * 1e3 / burst);
  }
  SGL_CUDA_CHECK(cudaEventDestroy(a));
  SGL_CUDA_CHECK(cudaEventDestroy(b));
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

void* dev_alloc(size_t bytes) {
  void* p = CU->alloc(bytes);
  if (!p) throw std::runtime_error("device alloc of " + std::to_string(bytes) + " bytes failed");
  return p;
}

// n bf16 values uniform in [-scale, scale) (a cheap LCG: the values only need to be ordinary numbers).
void fill_bf16(void* dst, size_t n, float scale, uint32_t seed) {
  std::vector<uint16_t> h(n);
  uint32_t s = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    float f = (float(s >> 8) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * scale;
    uint32_t u;
    std::memcpy(&u, &f, 4);
    h[i] = uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  CU->upload(dst, h.data(), n * 2);
  CU->sync();
}

// Copies of one buffer so that `copies * bytes` >= kRotateBytes (at least 1, at most max_copies).
int copies_for(size_t bytes, int max_copies) {
  size_t c = (kRotateBytes + bytes - 1) / bytes;
  return int(std::max<size_t>(1, std::min<size_t>(c, size_t(max_copies))));
}

void print_header() {
  std::printf("%-10s %-9s %6s %6s %7s %5s %5s %11s %9s %9s\n", "op", "shape", "T", "K/C/I", "N", "out", "L2", "us",
              "TFLOP/s", "GB/s");
}

// ---- matmul -----------------------------------------------------------------------------------------------

void bench_matmul(const char* name, int T, int K, int N, bool y_f32) {
  const size_t wbytes = size_t(N) * K * 2;
  const int copies = copies_for(wbytes, 256);
  std::vector<void*> ws(static_cast<size_t>(copies));
  ws[0] = dev_alloc(wbytes);
  fill_bf16(ws[0], size_t(N) * K, 1.0f / std::sqrt(float(K)), 1);
  for (int i = 1; i < copies; i++) {
    ws[size_t(i)] = dev_alloc(wbytes);
    SGL_CUDA_CHECK(cudaMemcpyAsync(ws[size_t(i)], ws[0], wbytes, cudaMemcpyDeviceToDevice, sgl_stream()));
  }
  void* x = dev_alloc(size_t(T) * K * 2);
  fill_bf16(x, size_t(T) * K, 1.0f, 2);
  const size_t ybytes = size_t(T) * N * (y_f32 ? 4 : 2);
  void* y = dev_alloc(ybytes);
  double us = time_us([&](int64_t i) {
    MatmulParams p{x, WeightRef{ws[size_t(i % copies)], DType::BF16}, WeightRef{}, y, T, K, N};
    p.y_f32 = y_f32;
    CU->matmul(p);
  });
  const double flops = 2.0 * T * double(K) * N;
  const double tflops = flops / (us * 1e-6) / 1e12;
  const double gbps = double(wbytes + size_t(T) * K * 2 + ybytes) / (us * 1e-6) / 1e9;
  const char* out = y_f32 ? "f32" : "bf16";
  std::printf("%-10s %-9s %6d %6d %7d %5s %5s %11.2f %9.2f %9.1f\n", "matmul", name, T, K, N, out,
              copies > 1 ? "cold" : "-", us, tflops, gbps);
  std::fflush(stdout);
  char line[256];
  std::snprintf(line, sizeof line, "OPS matmul name=%s T=%d K=%d N=%d out=%s us=%.3f tflops=%.3f gbps=%.1f", name, T,
                K, N, out, us, tflops, gbps);
  g_ops_lines.push_back(line);
  for (void* w : ws) CU->free(w);
  CU->free(x);
  CU->free(y);
}

// ---- rms_norm, silu_mul -------------------------------------------------------------------------------------

void report_mem(const char* op, const char* shape, int T, int C, bool cold, double us, double bytes) {
  const double gbps = bytes / (us * 1e-6) / 1e9;
  std::printf("%-10s %-9s %6d %6d %7s %5s %5s %11.2f %9s %9.1f\n", op, shape, T, C, "-", "bf16", cold ? "cold" : "hot",
              us, "-", gbps);
  std::fflush(stdout);
  char line[256];
  std::snprintf(line, sizeof line, "OPS %s variant=%s T=%d C=%d l2=%s us=%.3f gbps=%.1f", op, shape, T, C,
                cold ? "cold" : "hot", us, gbps);
  g_ops_lines.push_back(line);
}

void bench_rms_norm(int T, int C, bool residual, bool cold) {
  const size_t act = size_t(T) * C * 2;
  const int copies = cold ? copies_for(2 * act, 1024) : 1;
  std::vector<void*> xs, rs;
  for (int i = 0; i < copies; i++) {
    xs.push_back(dev_alloc(act));
    rs.push_back(dev_alloc(act));
    fill_bf16(xs.back(), size_t(T) * C, 1.0f, 3 + uint32_t(i));
    CU->memset_zero(rs.back(), act);
  }
  void* w = dev_alloc(size_t(C) * 2);
  fill_bf16(w, size_t(C), 1.0f, 9);
  double us = time_us([&](int64_t i) {
    const size_t k = size_t(i % copies);
    CU->rms_norm({xs[k], residual ? rs[k] : nullptr, xs[k], WeightRef{w, DType::BF16}, T, C, 1e-6f});
  });
  // Moved bytes: x read, out written (+ residual read and written), and the weight row.
  const double bytes = double(act) * (residual ? 4 : 2) + double(C) * 2;
  report_mem("rms_norm", residual ? "+res,out=x" : "out=x", T, C, cold, us, bytes);
  for (int i = 0; i < copies; i++) {
    CU->free(xs[size_t(i)]);
    CU->free(rs[size_t(i)]);
  }
  CU->free(w);
}

void bench_silu_mul(int T, int I, bool cold) {
  const size_t act = size_t(T) * I * 2;
  const int copies = cold ? copies_for(2 * act, 1024) : 1;
  std::vector<void*> gs, us_;
  for (int i = 0; i < copies; i++) {
    gs.push_back(dev_alloc(act));
    us_.push_back(dev_alloc(act));
    fill_bf16(gs.back(), size_t(T) * I, 4.0f, 11 + uint32_t(i));
    fill_bf16(us_.back(), size_t(T) * I, 1.0f, 5000 + uint32_t(i));
  }
  double us = time_us([&](int64_t i) {
    const size_t k = size_t(i % copies);
    CU->silu_mul({gs[k], us_[k], gs[k], T, I});
  });
  report_mem("silu_mul", "out=gate", T, I, cold, us, 3.0 * double(act));
  for (int i = 0; i < copies; i++) {
    CU->free(gs[size_t(i)]);
    CU->free(us_[size_t(i)]);
  }
}

// qkv_rope_store at a model's heads: the scalar kernel (path 1) and the 16-byte one (path 2), hot buffers;
// GB/s of the q|k|v rows read and the q, k and v rows written.
void bench_qkv_rope_store(const char* name, int T, int H, int Hkv, int D) {
  const size_t row = size_t(H + 2 * Hkv) * D;
  void* qkv = dev_alloc(size_t(T) * row * 2);
  void* q = dev_alloc(size_t(T) * H * D * 2);
  void* kc = dev_alloc(size_t(T) * Hkv * D * 2);
  void* vc = dev_alloc(size_t(T) * Hkv * D * 2);
  fill_bf16(qkv, size_t(T) * row, 1.0f, 77);
  std::vector<int32_t> meta(size_t(2) * T);
  for (int t = 0; t < T; t++) meta[size_t(t)] = t, meta[size_t(T + t)] = t;
  std::vector<float> inv(size_t(D / 2));
  for (int i = 0; i < D / 2; i++) inv[size_t(i)] = float(std::pow(1000000.0, -2.0 * i / D));
  int32_t* dmeta = static_cast<int32_t*>(dev_alloc(meta.size() * 4));
  float* dinv = static_cast<float*>(dev_alloc(inv.size() * 4));
  CU->upload(dmeta, meta.data(), meta.size() * 4);
  CU->upload(dinv, inv.data(), inv.size() * 4);
  for (int path : {1, 2}) {
    qkv_rope_store_cuda_force_path(path);
    const double us = time_us([&](int64_t) { CU->qkv_rope_store({qkv, q, kc, vc, dmeta, dinv, dmeta + T, T, H, Hkv, D}); });
    const double bytes = double(T) * double(row + size_t(H) * D + size_t(2 * Hkv) * D) * 2;
    char shape[32];
    std::snprintf(shape, sizeof shape, "%s,path%d", name, path);
    report_mem("qkv_rope", shape, T, (H + 2 * Hkv) * D, false, us, bytes);
  }
  qkv_rope_store_cuda_force_path(0);
  for (void* p : {qkv, q, kc, vc, static_cast<void*>(dmeta), static_cast<void*>(dinv)}) CU->free(p);
}

// silu_mul on a gate|up GEMM output ([T, 2I] rows, ld = 2I; out [T, I]) as the prefill MLP calls it; hot.
void bench_silu_mul_strided(int T, int I) {
  void* gu = dev_alloc(size_t(T) * 2 * I * 2);
  void* out = dev_alloc(size_t(T) * I * 2);
  fill_bf16(gu, size_t(T) * 2 * I, 4.0f, 31);
  SiluMulParams sp{gu, static_cast<char*>(gu) + size_t(I) * 2, out, T, I};
  sp.ld = 2 * I;
  const double us = time_us([&](int64_t) { CU->silu_mul(sp); });
  report_mem("silu_mul", "strided", T, I, false, us, 3.0 * double(T) * I * 2);
  CU->free(gu);
  CU->free(out);
}

// The prefill gate|up GEMM with silu_mul fused (matmul_silu_mul, SGL_MATMUL_SILU=1; sm_90 only) against
// cuBLASLt gate|up + the strided silu_mul on the same buffers; TFLOP/s of the GEMM.
void bench_matmul_silu(const char* name, int T, int K, int I) {
  if (!CU->matmul_silu_mul) return;
  void* x = dev_alloc(size_t(T) * K * 2);
  void* w = dev_alloc(size_t(2) * I * K * 2);
  void* gu = dev_alloc(size_t(T) * 2 * I * 2);
  void* out = dev_alloc(size_t(T) * I * 2);
  fill_bf16(x, size_t(T) * K, 1.0f, 5);
  fill_bf16(w, size_t(2) * I * K, 0.05f, 6);
  const double flop = 2.0 * T * K * 2.0 * I;
  setenv("SGL_MATMUL_SILU", "1", 1);  // read at the first call
  bool fused_ran = CU->matmul_silu_mul({x, {w, DType::BF16}, out, T, K, I});
  for (int fused = 0; fused < 2; fused++) {
    if (fused && !fused_ran) break;
    const double us = time_us([&](int64_t) {
      if (fused) {
        CU->matmul_silu_mul({x, {w, DType::BF16}, out, T, K, I});
      } else {
        CU->matmul({x, {w, DType::BF16}, WeightRef{}, gu, T, K, 2 * I});
        SiluMulParams sp{gu, static_cast<char*>(gu) + size_t(I) * 2, out, T, I};
        sp.ld = 2 * I;
        CU->silu_mul(sp);
      }
    });
    std::printf("%-10s %-9s %6d %6d %7d %5s %5s %11.2f %9.1f %9s\n", "gemm_silu", fused ? "fused" : "pair", T, K, 2 * I,
                "bf16", "-", us, flop / (us * 1e-6) / 1e12, "-");
    char line[256];
    std::snprintf(line, sizeof line, "OPS gemm_silu name=%s variant=%s T=%d K=%d I=%d us=%.3f tflops=%.3f", name,
                  fused ? "fused" : "pair", T, K, I, us, flop / (us * 1e-6) / 1e12);
    g_ops_lines.push_back(line);
  }
  for (void* p : {x, w, gu, out}) CU->free(p);
}

// kind "norm": rms_norm_matmul (x, residual in, residual out) vs rms_norm (+residual, in place) + matmul;
// kind "silu": silu_mul_matmul over [T, 2K] gate|up rows vs the strided silu_mul + matmul.
void bench_fused(const char* name, bool norm, int T, int K, int N) {
  const size_t wbytes = size_t(N) * K * 2;
  const int copies = copies_for(wbytes, 256);
  std::vector<void*> ws(static_cast<size_t>(copies));
  ws[0] = dev_alloc(wbytes);
  fill_bf16(ws[0], size_t(N) * K, 1.0f / std::sqrt(float(K)), 21);
  for (int i = 1; i < copies; i++) {
    ws[size_t(i)] = dev_alloc(wbytes);
    SGL_CUDA_CHECK(cudaMemcpyAsync(ws[size_t(i)], ws[0], wbytes, cudaMemcpyDeviceToDevice, sgl_stream()));
  }
  const size_t act = size_t(T) * K * 2;
  void* a = dev_alloc(norm ? act : 2 * act);  // x, or the gate|up rows
  fill_bf16(a, norm ? size_t(T) * K : size_t(T) * 2 * K, norm ? 1.0f : 4.0f, 22);
  void* r_in = dev_alloc(act);
  void* r_out = dev_alloc(act);
  void* tmp = dev_alloc(act);  // the unfused pair's intermediate (silu output)
  fill_bf16(r_in, size_t(T) * K, 1.0f, 23);
  void* g = dev_alloc(size_t(K) * 2);
  fill_bf16(g, size_t(K), 1.0f, 24);
  void* y = dev_alloc(size_t(T) * N * 2);
  const WeightRef gw{g, DType::BF16};
  const char* up = static_cast<const char*>(a) + size_t(K) * 2;
  bool declined = false;
  const double us_fused = time_us([&](int64_t i) {
    const WeightRef w{ws[size_t(i % copies)], DType::BF16};
    const bool ok = norm ? CU->rms_norm_matmul({a, r_in, r_out, gw, 1e-6f, w, WeightRef{}, y, T, K, N})
                         : CU->silu_mul_matmul({a, up, 2 * K, w, WeightRef{}, y, T, K, N});
    declined = declined || !ok;
  });
  const double us_pair = time_us([&](int64_t i) {
    const WeightRef w{ws[size_t(i % copies)], DType::BF16};
    if (norm) {
      CU->rms_norm({a, r_in, a, gw, T, K, 1e-6f});
      CU->matmul({a, w, WeightRef{}, y, T, K, N});
    } else {
      SiluMulParams sp{a, up, tmp, T, K};
      sp.ld = 2 * K;
      CU->silu_mul(sp);
      CU->matmul({tmp, w, WeightRef{}, y, T, K, N});
    }
  });
  const char* op = norm ? "norm+gemv" : "silu+gemv";
  for (int fused = 1; fused >= 0; fused--) {
    const double us = fused ? us_fused : us_pair;
    const double gbps = double(wbytes) / (us * 1e-6) / 1e9;
    const char* variant = fused ? (declined ? "declined" : "fused") : "unfused";
    std::printf("%-10s %-9s %6d %6d %7d %5s %5s %11.2f %9s %9.1f   (%s)\n", op, name, T, K, N, "bf16",
                copies > 1 ? "cold" : "-", us, "-", gbps, variant);
    std::fflush(stdout);
    char line[256];
    std::snprintf(line, sizeof line, "OPS fused op=%s name=%s variant=%s T=%d K=%d N=%d us=%.3f gbps=%.1f", op, name,
                  variant, T, K, N, us, gbps);
    g_ops_lines.push_back(line);
  }
  for (void* w : ws) CU->free(w);
  for (void* q : {a, r_in, r_out, tmp, g, y}) CU->free(q);
}

void bench_copy(size_t bytes) {
  void* a = dev_alloc(bytes);
  void* b = dev_alloc(bytes);
  CU->memset_zero(a, bytes);
  double us = time_us([&](int64_t) {
    SGL_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, sgl_stream()));
  });
  const double gbps = 2.0 * double(bytes) / (us * 1e-6) / 1e9;
  std::printf("%-10s %-9s %6s %6s %7s %5s %5s %11.2f %9s %9.1f   (%zu MiB, read + write)\n", "copy", "d2d", "-", "-",
              "-", "-", bytes >= kRotateBytes ? "cold" : "hot", us, "-", gbps, bytes >> 20);
  char line[256];
  std::snprintf(line, sizeof line, "OPS copy bytes=%zu us=%.3f gbps=%.1f", bytes, us, gbps);
  g_ops_lines.push_back(line);
  CU->free(a);
  CU->free(b);
}


// ---- MoE (cuda/moe.cu) --------------------------------------------------------------------------------------

void report_moe(const std::string& what, int T, double us, double gbps, double tflops) {
  std::printf("%-10s T=%-5d %11.2f us %9.2f TFLOP/s %9.1f GB/s   %s\n", "moe", T, us, tflops, gbps, what.c_str());
  std::fflush(stdout);
  char line[320];
  std::snprintf(line, sizeof line, "OPS moe %s T=%d us=%.3f gbps=%.1f tflops=%.3f", what.c_str(), T, us, gbps, tflops);
  g_ops_lines.push_back(line);
}

// n f32 router logits in [-3, 3) (the LCG of fill_bf16).
std::vector<float> moe_logits(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t s = seed * 2654435761u + 7;
  for (float& f : v) {
    s = s * 1664525u + 1013904223u;
    f = (float(s >> 8) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * 3.0f;
  }
  return v;
}

void bench_moe(int T) {
  const int C = 2048, E = 60, K = 4, Im = 1408, M = T * K;
  // routing on the host (the reference ops) to know the experts touched; the device runs its own
  const std::vector<float> logits = moe_logits(size_t(T) * E, uint32_t(T));
  std::vector<int32_t> ids(static_cast<size_t>(M)), dst(static_cast<size_t>(M)), off(size_t(E) + 1);
  std::vector<float> tw(static_cast<size_t>(M)), one(static_cast<size_t>(T)), onep(static_cast<size_t>(M));
  moe_route_cpu({logits.data(), ids.data(), tw.data(), nullptr, T, E, K, false});
  moe_permute_cpu({one.data(), ids.data(), onep.data(), dst.data(), off.data(), T, 1, E, K});
  int touched = 0;
  for (int e = 0; e < E; e++) touched += off[size_t(e) + 1] > off[size_t(e)];

  void* d_logits = dev_alloc(logits.size() * 4);
  CU->upload(d_logits, logits.data(), logits.size() * 4);
  void* d_ids = dev_alloc(size_t(M) * 4);
  void* d_w = dev_alloc(size_t(M) * 4);
  void* d_dst = dev_alloc(size_t(M) * 4);
  void* d_off = dev_alloc((size_t(E) + 1) * 4);
  void* d_cnt = dev_alloc(size_t(E) * 4);
  CU->memset_zero(d_cnt, size_t(E) * 4);
  void* x = dev_alloc(size_t(T) * C * 2);
  fill_bf16(x, size_t(T) * C, 1.0f, 31);
  void* xp = dev_alloc(size_t(M) * C * 2);
  void* h = dev_alloc(size_t(M) * 2 * Im * 2);
  fill_bf16(h, size_t(M) * 2 * Im, 1.0f, 32);
  void* yv = dev_alloc(size_t(M) * C * 2);
  fill_bf16(yv, size_t(M) * C, 1.0f, 33);
  void* sh = dev_alloc(size_t(T) * C * 2);
  fill_bf16(sh, size_t(T) * C, 1.0f, 34);
  void* d_g = dev_alloc(size_t(T) * 4);
  CU->memset_zero(d_g, size_t(T) * 4);
  void* out = dev_alloc(size_t(T) * C * 2);

  const double us_route = time_us([&](int64_t) {
    CU->moe_route({static_cast<const float*>(d_logits), static_cast<int32_t*>(d_ids), static_cast<float*>(d_w),
                   static_cast<int32_t*>(d_cnt), T, E, K, false});
  });
  report_moe("op=route", T, us_route, double(logits.size() * 4 + size_t(M) * 8) / (us_route * 1e-6) / 1e9, 0);
  const double us_perm = time_us([&](int64_t) {
    CU->moe_permute({x, static_cast<const int32_t*>(d_ids), xp, static_cast<int32_t*>(d_dst),
                     static_cast<int32_t*>(d_off), T, C, E, K});
  });
  report_moe("op=permute", T, us_perm, double(size_t(T) * C * 2 + size_t(M) * C * 2) / (us_perm * 1e-6) / 1e9, 0);

  // grouped matmuls: the device offsets are the ones moe_permute just wrote (the same routing as the host's)
  struct Proj {
    const char* name;
    int K, N;
    const void* in;
    void* out;
  } projs[] = {{"gate_up", C, 2 * Im, xp, h}, {"down", Im, C, h, yv}};
  for (const Proj& pj : projs) {
    const size_t wbytes = size_t(pj.N) * pj.K * 2;
    std::vector<void*> bufs(size_t(2 * E));
    for (size_t b = 0; b < bufs.size(); b++) {
      bufs[b] = dev_alloc(wbytes);
      if (b == 0)
        fill_bf16(bufs[0], size_t(pj.N) * pj.K, 1.0f / std::sqrt(float(pj.K)), 35);
      else
        SGL_CUDA_CHECK(cudaMemcpyAsync(bufs[b], bufs[0], wbytes, cudaMemcpyDeviceToDevice, sgl_stream()));
    }
    constexpr int kArrays = 8;
    std::vector<void*> arrays;
    for (int j = 0; j < kArrays; j++) {
      std::vector<void*> a(static_cast<size_t>(E));
      for (int e = 0; e < E; e++) a[size_t(e)] = bufs[size_t((e + 17 * j) % (2 * E))];
      arrays.push_back(dev_alloc(size_t(E) * sizeof(void*)));
      CU->upload(arrays.back(), a.data(), size_t(E) * sizeof(void*));
    }
    CU->sync();
    const int paths[] = {0, 1, 2};
    for (int path : paths) {
      if (path != 0 && T != 64) continue;
      grouped_matmul_cuda_force_path(path);
      const double us = time_us([&](int64_t i) {
        CU->grouped_matmul({pj.in, static_cast<const void* const*>(arrays[size_t(i % kArrays)]), DType::BF16,
                            static_cast<const int32_t*>(d_off), pj.out, M, pj.K, pj.N, E});
      });
      grouped_matmul_cuda_force_path(0);
      const double gbps = double(touched) * double(wbytes) / (us * 1e-6) / 1e9;
      const double tflops = 2.0 * M * double(pj.K) * pj.N / (us * 1e-6) / 1e12;
      char what[160];
      std::snprintf(what, sizeof what, "op=grouped_matmul name=%s path=%s M=%d K=%d N=%d experts=%d", pj.name,
                    path == 0 ? "auto" : path == 1 ? "gemv" : "mma", M, pj.K, pj.N, touched);
      report_moe(what, T, us, gbps, tflops);
    }
    for (void* a : arrays) CU->free(a);
    for (void* b : bufs) CU->free(b);
  }

  const double us_unp = time_us([&](int64_t) {
    CU->moe_unpermute({yv, static_cast<const int32_t*>(d_dst), static_cast<const int32_t*>(d_ids),
                       static_cast<const float*>(d_w), sh, static_cast<const float*>(d_g), out, T, C, K});
  });
  report_moe("op=unpermute", T, us_unp, double(size_t(M) * C * 2 + 2 * size_t(T) * C * 2) / (us_unp * 1e-6) / 1e9, 0);
  for (void* q : {d_logits, d_ids, d_w, d_dst, d_off, d_cnt, x, xp, h, yv, sh, d_g, out}) CU->free(q);
}

}  // namespace

int main(int argc, char** argv) {
  // `ops_bench moe`: only the MoE ops; `ops_bench prefill`: only the strided silu_mul, qkv_rope and gemm_silu (a short device budget)
  const bool moe_only = argc > 1 && std::string(argv[1]) == "moe";
  const bool prefill_only = argc > 1 && std::string(argv[1]) == "prefill";
  CU = cuda_backend();
  if (!CU) {
    std::printf("no CUDA device: skipped\n");
    return 0;
  }
  cudaDeviceProp prop;
  SGL_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs, %zu MiB)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
              prop.totalGlobalMem >> 20);
#if defined(SGL_WITH_CUBLAS)
  std::printf("matmul: cuBLASLt\n");
#else
  std::printf("matmul: fallback CUDA-core kernel (built without cuBLAS)\n");
#endif
  print_header();
  try {
    const int C = 896, I = 4864, QKV = 896 + 2 * 128, V = 151936;
    const int Ts[] = {1, 8, 64, 256, 4096};
    // dense: the matmuls, memory-bound ops, decode GEMVs and copies (neither `moe` nor `prefill` alone)
    const bool dense = !moe_only && !prefill_only;
    for (int T : Ts) {
      if (!dense) break;
      bench_matmul("qkv", T, C, QKV, false);
      bench_matmul("o", T, C, C, false);
      bench_matmul("gate_up", T, C, I, false);
      bench_matmul("down", T, I, C, false);
      if (T <= 256) bench_matmul("lm_head", T, C, V, true);
    }
    if (dense) bench_matmul("gemm8192", 8192, 8192, 8192, false);
    for (int cold = 1; cold >= 0 && dense; cold--) {
      bench_rms_norm(256, C, true, cold != 0);
      bench_rms_norm(256, C, false, cold != 0);
      bench_silu_mul(256, I, cold != 0);
    }
    if (!moe_only) {
      bench_silu_mul_strided(500, 8960);
      bench_silu_mul_strided(16000, 8960);
      bench_qkv_rope_store("gte1.5b", 500, 12, 2, 128);
      bench_qkv_rope_store("gte1.5b", 16000, 12, 2, 128);
      bench_qkv_rope_store("qwen0.5b", 4096, 14, 2, 64);
      bench_matmul_silu("gte1.5b", 500, 1536, 8960);
      bench_matmul_silu("gte1.5b", 16000, 1536, 8960);
      bench_matmul_silu("qwen0.5b", 4096, 896, 4864);
    }
    if (CU->rms_norm_matmul && CU->silu_mul_matmul && dense) {
      bench_fused("qkv", true, 1, C, QKV);
      bench_fused("gate_up", true, 1, C, 2 * I);
      bench_fused("down", false, 1, I, C);
    }
    if (dense) {
      bench_copy(size_t(1) << 30);
      bench_copy(size_t(4) << 20);
    }
    if (CU->moe_route && CU->grouped_matmul && !prefill_only)
      for (int T : {1, 64, 4096}) bench_moe(T);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ops_bench: %s\n", e.what());
    return 1;
  }
  std::printf("\n");
  for (const std::string& l : g_ops_lines) std::printf("%s\n", l.c_str());
  return 0;
}
