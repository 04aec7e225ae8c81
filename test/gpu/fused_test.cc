// Parity of the fused device ops against the CPU backend: qkv_rope_store (split q|k|v rows, rope, store into
// the paged cache), silu_mul over strided gate|up rows, layer_norm (+ residual) and gelu, the fused decode
// GEMVs rms_norm_matmul and silu_mul_matmul (against the CPU's rms_norm / silu_mul then matmul, and bit for
// bit against the CUDA backend's own unfused pair), and the prefill matmul_silu_mul (against the CPU's matmul
// then silu_mul, and the CUDA pair). Random inputs rounded to bf16, outputs and the cache poisoned with NaN
// first; relative error < 1e-2 and no NaN where something was written, untouched cache slots still NaN.
// Prints PASS/FAIL lines and "N passed, M failed".
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "backend/backend.h"
#include "gpu_check.h"
#include "ops.h"

using namespace sgl;
using gpu_check::check;

namespace {

std::vector<float> rand_bf16(size_t n, std::mt19937& g) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = __bfloat162float(__float2bfloat16(d(g)));
  return v;
}

void* to_device(const Backend& be, const std::vector<float>& v) {
  std::vector<__nv_bfloat16> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = __float2bfloat16(v[i]);
  void* d = be.alloc(h.size() * 2);
  be.upload(d, h.data(), h.size() * 2);
  return d;
}

std::vector<float> from_device(const Backend& be, const void* d, size_t n) {
  std::vector<__nv_bfloat16> h(n);
  be.download(h.data(), d, n * 2);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = __bfloat162float(h[i]);
  return v;
}

// ‖a − b‖ / ‖b‖ over the elements where b is not NaN; NaN in a where b has a value fails.
bool close(const std::vector<float>& a, const std::vector<float>& b, double tol, std::string& why) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(b[i])) {
      if (!std::isnan(a[i])) return why = "wrote a slot the reference left alone at " + std::to_string(i), false;
      continue;
    }
    if (std::isnan(a[i])) return why = "NaN at " + std::to_string(i), false;
    num += (a[i] - b[i]) * double(a[i] - b[i]);
    den += double(b[i]) * b[i];
  }
  const double rel = std::sqrt(num / (den > 0 ? den : 1));
  why = "rel " + std::to_string(rel);
  return rel < tol;
}

float bf16r(float v) { return __bfloat162float(__float2bfloat16(v)); }

// The same bits (NaN equal to NaN); why = the first difference.
bool bit_equal(const std::vector<float>& a, const std::vector<float>& b, std::string& why) {
  for (size_t i = 0; i < a.size(); ++i) {
    uint32_t ua, ub;
    std::memcpy(&ua, &a[i], 4);
    std::memcpy(&ub, &b[i], 4);
    if (ua != ub) return why = "differs at " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " + std::to_string(b[i]), false;
  }
  return why = "bit-equal", true;
}

// rms_norm_matmul: y = round(rmsnorm(h) * g) · Wᵀ + bias with h = round(x + residual) (or x), residual_out = h.
// Checked against the CPU (h rounded on the host as the GPU's residual stream is, the normalised rows rounded
// to bf16 as the GPU stores them, then the CPU matmul) and against the CUDA backend's rms_norm + matmul.
void check_rms_norm_matmul(const Backend& cpu, const Backend& cuda, std::mt19937& g, int T, int K, int N,
                           bool with_res, bool with_bias) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), eps = 1e-6f;
  const std::string name = "rms_norm_matmul T=" + std::to_string(T) + " K=" + std::to_string(K) + " N=" +
                           std::to_string(N) + (with_res ? " +residual" : "") + (with_bias ? " +bias" : "");
  std::vector<float> x = rand_bf16(size_t(T) * K, g), r = rand_bf16(size_t(T) * K, g);
  std::vector<float> nw = rand_bf16(size_t(K), g), w = rand_bf16(size_t(N) * K, g), b = rand_bf16(size_t(N), g);
  for (auto& v : w) v = bf16r(v / std::sqrt(float(K)));
  // CPU reference
  std::vector<float> h = x;
  if (with_res)
    for (size_t i = 0; i < h.size(); ++i) h[i] = bf16r(x[i] + r[i]);
  std::vector<float> normed(h.size(), nan), y_ref(size_t(T) * N, nan);
  cpu.rms_norm({h.data(), nullptr, normed.data(), {nw.data(), DType::F32}, T, K, eps});
  for (auto& v : normed) v = bf16r(v);
  cpu.matmul({normed.data(), {w.data(), DType::F32}, with_bias ? WeightRef{b.data(), DType::F32} : WeightRef{},
              y_ref.data(), T, K, N});
  // CUDA, fused
  void *dx = to_device(cuda, x), *dr = to_device(cuda, r), *dnw = to_device(cuda, nw), *dw = to_device(cuda, w),
       *db = to_device(cuda, b);
  void* dro = to_device(cuda, std::vector<float>(h.size(), nan));
  void* dy = to_device(cuda, std::vector<float>(y_ref.size(), nan));
  RmsNormMatmulParams p{dx, with_res ? dr : nullptr, dro, {dnw, DType::BF16}, eps, {dw, DType::BF16},
                        with_bias ? WeightRef{db, DType::BF16} : WeightRef{}, dy, T, K, N};
  const bool ran = cuda.rms_norm_matmul(p);
  check(ran, name + ": enqueued");
  if (ran) {
    std::string why;
    const std::vector<float> y = from_device(cuda, dy, y_ref.size());
    check(close(y, y_ref, 1e-2, why), name + " y vs CPU: " + why);
    check(bit_equal(from_device(cuda, dro, h.size()), h, why), name + " residual_out: " + why);
    // CUDA, unfused: rms_norm (+ residual, in place) then matmul (the GEMV at T <= 2)
    void* dxn = to_device(cuda, x);
    void* dy2 = to_device(cuda, std::vector<float>(y_ref.size(), nan));
    cuda.rms_norm({dxn, with_res ? dr : nullptr, dxn, {dnw, DType::BF16}, T, K, eps});
    cuda.matmul({dxn, {dw, DType::BF16}, with_bias ? WeightRef{db, DType::BF16} : WeightRef{}, dy2, T, K, N});
    check(bit_equal(y, from_device(cuda, dy2, y_ref.size()), why), name + " vs unfused CUDA: " + why);
    cuda.free(dxn);
    cuda.free(dy2);
  }
  for (void* q : {dx, dr, dnw, dw, db, dro, dy}) cuda.free(q);
}

// silu_mul_matmul over strided gate|up rows [T, 2K] (the fused gate|up matmul's output): against the CPU's
// silu_mul (rounded to bf16 as the GPU stores it) then matmul, and bit for bit against the CUDA silu_mul +
// matmul.
void check_silu_mul_matmul(const Backend& cpu, const Backend& cuda, std::mt19937& g, int T, int K, int N,
                           bool with_bias) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::string name = "silu_mul_matmul T=" + std::to_string(T) + " K=" + std::to_string(K) + " N=" +
                           std::to_string(N) + (with_bias ? " +bias" : "");
  std::vector<float> gu = rand_bf16(size_t(T) * 2 * K, g);
  for (auto& v : gu) v = bf16r(v * 3.0f);
  std::vector<float> w = rand_bf16(size_t(N) * K, g), b = rand_bf16(size_t(N), g);
  for (auto& v : w) v = bf16r(v / std::sqrt(float(K)));
  std::vector<float> act(size_t(T) * K, nan), y_ref(size_t(T) * N, nan);
  SiluMulParams sc{gu.data(), gu.data() + K, act.data(), T, K};
  sc.ld = 2 * K;
  cpu.silu_mul(sc);
  for (auto& v : act) v = bf16r(v);
  cpu.matmul({act.data(), {w.data(), DType::F32}, with_bias ? WeightRef{b.data(), DType::F32} : WeightRef{},
              y_ref.data(), T, K, N});
  void *dgu = to_device(cuda, gu), *dw = to_device(cuda, w), *db = to_device(cuda, b);
  void* dy = to_device(cuda, std::vector<float>(y_ref.size(), nan));
  const WeightRef bias = with_bias ? WeightRef{db, DType::BF16} : WeightRef{};
  SiluMulMatmulParams p{dgu, static_cast<char*>(dgu) + size_t(K) * 2, 2 * K, {dw, DType::BF16}, bias, dy, T, K, N};
  const bool ran = cuda.silu_mul_matmul(p);
  check(ran, name + ": enqueued");
  if (ran) {
    std::string why;
    const std::vector<float> y = from_device(cuda, dy, y_ref.size());
    check(close(y, y_ref, 1e-2, why), name + " y vs CPU: " + why);
    void* dact = to_device(cuda, std::vector<float>(act.size(), nan));
    void* dy2 = to_device(cuda, std::vector<float>(y_ref.size(), nan));
    SiluMulParams sd{dgu, static_cast<char*>(dgu) + size_t(K) * 2, dact, T, K};
    sd.ld = 2 * K;
    cuda.silu_mul(sd);
    cuda.matmul({dact, {dw, DType::BF16}, bias, dy2, T, K, N});
    check(bit_equal(y, from_device(cuda, dy2, y_ref.size()), why), name + " vs unfused CUDA: " + why);
    cuda.free(dact);
    cuda.free(dy2);
  }
  for (void* q : {dgu, dw, db, dy}) cuda.free(q);
}

// matmul_silu_mul (the prefill gate|up GEMM with silu_mul fused, sm_90 only): against the CPU's matmul (rounded
// to bf16 as the GPU stores it), silu_mul and the activation's rounding, and against the CUDA matmul +
// silu_mul (not bit for bit: the GEMMs sum in different orders). Elsewhere it must decline.
void check_matmul_silu_mul(const Backend& cpu, const Backend& cuda, std::mt19937& g, int T, int K, int I, bool sm90) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::string name = "matmul_silu_mul T=" + std::to_string(T) + " K=" + std::to_string(K) + " I=" + std::to_string(I);
  const bool fits = T >= 64 && K % 64 == 0 && I % 128 == 0;
  std::vector<float> x = rand_bf16(size_t(T) * K, g), w = rand_bf16(size_t(2) * I * K, g);
  for (auto& v : w) v = bf16r(v * 2.0f / std::sqrt(float(K)));
  void *dx = to_device(cuda, x), *dw = to_device(cuda, w);
  void* dout = to_device(cuda, std::vector<float>(size_t(T) * I, nan));
  const bool ran = cuda.matmul_silu_mul({dx, {dw, DType::BF16}, dout, T, K, I});
  if (!(sm90 && fits)) {
    bool untouched = true;
    for (float v : from_device(cuda, dout, size_t(T) * I)) untouched = untouched && std::isnan(v);
    check(!ran && untouched, name + ": declined, out untouched");
  } else {
    check(ran, name + ": enqueued");
    std::vector<float> gu(size_t(T) * 2 * I, nan), ref(size_t(T) * I, nan);
    cpu.matmul({x.data(), {w.data(), DType::F32}, WeightRef{}, gu.data(), T, K, 2 * I});
    for (auto& v : gu) v = bf16r(v);
    SiluMulParams sc{gu.data(), gu.data() + I, ref.data(), T, I};
    sc.ld = 2 * I;
    cpu.silu_mul(sc);
    for (auto& v : ref) v = bf16r(v);
    std::string why;
    const std::vector<float> out = from_device(cuda, dout, ref.size());
    check(close(out, ref, 1e-2, why), name + " vs CPU: " + why);
    void* dgu = to_device(cuda, std::vector<float>(gu.size(), nan));
    void* dout2 = to_device(cuda, std::vector<float>(ref.size(), nan));
    cuda.matmul({dx, {dw, DType::BF16}, WeightRef{}, dgu, T, K, 2 * I});
    SiluMulParams sd{dgu, static_cast<char*>(dgu) + size_t(I) * 2, dout2, T, I};
    sd.ld = 2 * I;
    cuda.silu_mul(sd);
    check(close(out, from_device(cuda, dout2, ref.size()), 1e-2, why), name + " vs unfused CUDA: " + why);
    cuda.free(dgu);
    cuda.free(dout2);
  }
  for (void* q : {dx, dw, dout}) cuda.free(q);
}

// rms_norm_matmul declines what it cannot take (here: K not a multiple of 8, or too many tokens) and leaves
// its outputs alone.
void check_rms_norm_matmul_declines(const Backend& cuda, std::mt19937& g, int T, int K) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int N = 16;
  void *dx = to_device(cuda, rand_bf16(size_t(T) * K, g)), *dnw = to_device(cuda, rand_bf16(size_t(K), g)),
       *dw = to_device(cuda, rand_bf16(size_t(N) * K, g));
  void* dy = to_device(cuda, std::vector<float>(size_t(T) * N, nan));
  RmsNormMatmulParams p{dx, nullptr, nullptr, {dnw, DType::BF16}, 1e-6f, {dw, DType::BF16}, WeightRef{}, dy, T, K, N};
  const bool ran = cuda.rms_norm_matmul(p);
  const std::vector<float> y = from_device(cuda, dy, size_t(T) * N);
  bool untouched = true;
  for (float v : y) untouched = untouched && std::isnan(v);
  check(!ran && untouched, "rms_norm_matmul T=" + std::to_string(T) + " K=" + std::to_string(K) + ": declined, y untouched");
  for (void* q : {dx, dnw, dw, dy}) cuda.free(q);
}
}  // namespace

int main() {
  const Backend* cuda = gpu_check::cuda_or_skip();
  if (!cuda) return 0;
  const Backend& cpu = cpu_backend();
  std::mt19937 g(11);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int D : {8, 64, 128}) {
    for (auto [H, Hkv] : {std::pair{2, 1}, std::pair{14, 2}, std::pair{32, 8}}) {
      for (int T : {1, 5, 300}) {
        const int pages = T + 3, P = 1;
        const size_t row = size_t(H + 2 * Hkv) * D, kvrow = size_t(Hkv) * D;
        std::vector<float> qkv = rand_bf16(size_t(T) * row, g);
        std::vector<int32_t> pos(T), slots(T);
        std::vector<int32_t> perm(pages);
        for (int i = 0; i < pages; ++i) perm[i] = i;
        std::shuffle(perm.begin(), perm.end(), g);
        for (int t = 0; t < T; ++t) pos[t] = int32_t(g() % 100000), slots[t] = t == 1 ? -1 : perm[t] * P;
        std::vector<float> inv(D / 2);
        for (int i = 0; i < D / 2; ++i) inv[i] = float(std::pow(10000.0, -2.0 * i / D));
        // CPU reference
        std::vector<float> q_ref(size_t(T) * H * D, nan), kc_ref(size_t(pages) * kvrow, nan), vc_ref = kc_ref;
        cpu.qkv_rope_store({qkv.data(), q_ref.data(), kc_ref.data(), vc_ref.data(), pos.data(), inv.data(), slots.data(), T, H, Hkv, D});
        // CUDA
        void* d_qkv = to_device(*cuda, qkv);
        void* d_q = to_device(*cuda, std::vector<float>(q_ref.size(), nan));
        void* d_kc = to_device(*cuda, std::vector<float>(kc_ref.size(), nan));
        void* d_vc = to_device(*cuda, std::vector<float>(vc_ref.size(), nan));
        int32_t* d_meta = static_cast<int32_t*>(cuda->alloc(size_t(2 * T) * 4));
        float* d_inv = static_cast<float*>(cuda->alloc(inv.size() * 4));
        cuda->upload(d_meta, pos.data(), size_t(T) * 4);
        cuda->upload(d_meta + T, slots.data(), size_t(T) * 4);
        cuda->upload(d_inv, inv.data(), inv.size() * 4);
        cuda->qkv_rope_store({d_qkv, d_q, d_kc, d_vc, d_meta, d_inv, d_meta + T, T, H, Hkv, D});
        std::string why;
        const std::string name = "qkv_rope_store D=" + std::to_string(D) + " H=" + std::to_string(H) + "/" +
                                 std::to_string(Hkv) + " T=" + std::to_string(T);
        check(close(from_device(*cuda, d_q, q_ref.size()), q_ref, 1e-2, why), name + " q: " + why);
        check(close(from_device(*cuda, d_kc, kc_ref.size()), kc_ref, 1e-2, why), name + " k cache: " + why);
        check(close(from_device(*cuda, d_vc, vc_ref.size()), vc_ref, 1e-6, why), name + " v cache: " + why);
        if (D % 16 == 0) {
          // The 16-byte kernel: against the CPU, and bit for bit against the scalar kernel's outputs above
          // (NaN where neither wrote: token 1 has no cache slot).
          const std::vector<float> q1 = from_device(*cuda, d_q, q_ref.size()), k1 = from_device(*cuda, d_kc, kc_ref.size()),
                                   v1 = from_device(*cuda, d_vc, vc_ref.size());
          void* e_q = to_device(*cuda, std::vector<float>(q_ref.size(), nan));
          void* e_kc = to_device(*cuda, std::vector<float>(kc_ref.size(), nan));
          void* e_vc = to_device(*cuda, std::vector<float>(vc_ref.size(), nan));
          qkv_rope_store_cuda_force_path(2);
          cuda->qkv_rope_store({d_qkv, e_q, e_kc, e_vc, d_meta, d_inv, d_meta + T, T, H, Hkv, D});
          qkv_rope_store_cuda_force_path(0);
          const std::vector<float> q2 = from_device(*cuda, e_q, q_ref.size()), k2 = from_device(*cuda, e_kc, kc_ref.size()),
                                   v2 = from_device(*cuda, e_vc, vc_ref.size());
          check(close(q2, q_ref, 1e-2, why), name + " 16-byte kernel q: " + why);
          check(close(k2, kc_ref, 1e-2, why), name + " 16-byte kernel k cache: " + why);
          check(bit_equal(q2, q1, why) && bit_equal(k2, k1, why) && bit_equal(v2, v1, why),
                name + " 16-byte kernel vs scalar: " + why);
          for (void* p : {e_q, e_kc, e_vc}) cuda->free(p);
        }
        for (void* p : {d_qkv, d_q, d_kc, d_vc, static_cast<void*>(d_meta), static_cast<void*>(d_inv)}) cuda->free(p);
      }
    }
  }
  for (int I : {16, 37, 4864}) {
    for (int T : {1, 7, 64}) {
      std::vector<float> gu = rand_bf16(size_t(T) * 2 * I, g);
      std::vector<float> ref(size_t(T) * I, nan);
      SiluMulParams pc{gu.data(), gu.data() + I, ref.data(), T, I};
      pc.ld = 2 * I;
      cpu.silu_mul(pc);
      void* d_gu = to_device(*cuda, gu);
      void* d_out = to_device(*cuda, std::vector<float>(ref.size(), nan));
      SiluMulParams pd{d_gu, static_cast<char*>(d_gu) + size_t(I) * 2, d_out, T, I};
      pd.ld = 2 * I;
      cuda->silu_mul(pd);
      std::string why;
      check(close(from_device(*cuda, d_out, ref.size()), ref, 1e-2, why),
            "silu_mul strided I=" + std::to_string(I) + " T=" + std::to_string(T) + ": " + why);
      cuda->free(d_gu);
      cuda->free(d_out);
    }
  }
  // layer_norm (with and without the residual add) and gelu (erf, tanh) against the CPU.
  for (auto [T, C] : {std::pair{1, 16}, std::pair{7, 32}, std::pair{64, 1024}, std::pair{3, 20000}}) {
    for (bool with_res : {false, true}) {
      std::vector<float> x = rand_bf16(size_t(T) * C, g), r = rand_bf16(size_t(T) * C, g);
      std::vector<float> w = rand_bf16(size_t(C), g), b = rand_bf16(size_t(C), g);
      std::vector<float> xr = x;  // the GPU rounds x + residual to bf16 (the residual stream's dtype)
      if (with_res)
        for (size_t i = 0; i < xr.size(); ++i) xr[i] = __bfloat162float(__float2bfloat16(x[i] + r[i]));
      std::vector<float> ref(x.size(), nan);
      cpu.layer_norm({xr.data(), nullptr, ref.data(), {w.data(), DType::F32}, {b.data(), DType::F32}, T, C, 1e-5f});
      void *dx = to_device(*cuda, x), *dr = to_device(*cuda, r), *dw = to_device(*cuda, w), *db = to_device(*cuda, b);
      void* dout = to_device(*cuda, std::vector<float>(x.size(), nan));
      cuda->layer_norm({dx, with_res ? dr : nullptr, dout, {dw, DType::BF16}, {db, DType::BF16}, T, C, 1e-5f});
      std::string why;
      check(close(from_device(*cuda, dout, ref.size()), ref, 1e-2, why),
            "layer_norm T=" + std::to_string(T) + " C=" + std::to_string(C) + (with_res ? " +residual: " : ": ") + why);
      for (void* p : {dx, dr, dw, db, dout}) cuda->free(p);
    }
  }
  // The fused decode GEMVs: Qwen2.5-0.5B's shapes (q|k|v 896 -> 1152, gate|up 896 -> 9728), small and odd
  // ones, a row long enough that the mirrored rms_norm block has 1024 threads with several vectors each.
  if (!cuda->rms_norm_matmul) {
    check(false, "rms_norm_matmul: the CUDA table has no entry");
  } else {
    for (auto [K, N] : {std::pair{896, 1152}, std::pair{896, 9728}, std::pair{64, 37}, std::pair{128, 9000}, std::pair{4096, 520},
                        std::pair{11264, 24}}) {
      for (int T : {1, 2})
        for (bool with_res : {false, true})
          for (bool with_bias : {false, true}) check_rms_norm_matmul(cpu, *cuda, g, T, K, N, with_res, with_bias);
    }
    check_rms_norm_matmul_declines(*cuda, g, 1, 36);
    check_rms_norm_matmul_declines(*cuda, g, 3, 64);
  }
  // down 4864 -> 896 (Qwen2.5-0.5B), small and odd ones, and a wide N (two rows per warp).
  if (!cuda->silu_mul_matmul) {
    check(false, "silu_mul_matmul: the CUDA table has no entry");
  } else {
    for (auto [K, N] : {std::pair{4864, 896}, std::pair{64, 37}, std::pair{1000, 130}, std::pair{256, 9000},
                        std::pair{12000, 16}}) {
      for (int T : {1, 2})
        for (bool with_bias : {false, true}) check_silu_mul_matmul(cpu, *cuda, g, T, K, N, with_bias);
    }
  }
  // The prefill gate|up GEMM with silu_mul: gte-Qwen2-1.5B's and Qwen2.5-0.5B's MLPs at token counts that
  // are not multiples of the 128-token tile, one k step, and shapes it must decline.
  if (!cuda->matmul_silu_mul) {
    check(false, "matmul_silu_mul: the CUDA table has no entry");
  } else {
    setenv("SGL_MATMUL_SILU", "1", 1);  // read at its first call
    int dev = 0, major = 0, minor = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    const bool sm90 = major == 9 && minor == 0;
    for (auto [T, K, I] : {std::tuple{300, 1536, 8960}, std::tuple{77, 896, 4864}, std::tuple{129, 64, 128},
                           std::tuple{1000, 256, 384}, std::tuple{63, 896, 4864}, std::tuple{128, 100, 128},
                           std::tuple{128, 128, 200}})
      check_matmul_silu_mul(cpu, *cuda, g, T, K, I, sm90);
  }
  for (bool tanh_approx : {false, true}) {
    std::vector<float> x = rand_bf16(100003, g), ref(x.size(), nan);
    for (auto& v : x) v = __bfloat162float(__float2bfloat16(v * 4.0f));
    cpu.gelu({x.data(), ref.data(), int64_t(x.size()), tanh_approx});
    void* dx = to_device(*cuda, x);
    void* dout = to_device(*cuda, std::vector<float>(x.size(), nan));
    cuda->gelu({dx, dout, int64_t(x.size()), tanh_approx});
    std::string why;
    check(close(from_device(*cuda, dout, ref.size()), ref, 1e-2, why), std::string("gelu ") + (tanh_approx ? "tanh: " : "erf: ") + why);
    cuda->free(dx);
    cuda->free(dout);
  }
  return gpu_check::summary();
}
