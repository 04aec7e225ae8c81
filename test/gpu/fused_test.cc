// Parity of the fused device ops against the CPU backend: qkv_rope_store (split q|k|v rows, rope, store into
// the paged cache), silu_mul over strided gate|up rows, layer_norm (+ residual) and gelu. Random inputs rounded to bf16, outputs and the
// cache poisoned with NaN first; relative error < 1e-2 and no NaN where something was written, untouched
// cache slots still NaN. Prints PASS/FAIL lines and "N passed, M failed".
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "backend/backend.h"
#include "gpu_check.h"

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
