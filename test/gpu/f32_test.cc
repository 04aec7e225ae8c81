// GPU parity harness of the float32 CUDA table (sgl::cuda_backend_f32(), SGLang's --dtype float32) against
// sgl::cpu_backend(), which computes in f32 too: every op that table replaces (place_weight, embed, matmul,
// rms_norm, rope, kv_store, qkv_rope_store, attention, silu_mul, gather_rows, layer_norm, gelu, to_f32) on
// fresh fixed-seed f32 inputs, CUDA outputs poisoned with NaN first (and, for attention, every KV slot no
// sequence owns), so unwritten or unmasked elements fail. Pass: ||out - ref|| / ||ref|| < 1e-4 with nothing
// non-finite (f32 math on both sides: only the summation order and the fast-math intrinsics differ), bit
// equality for the copies and the weight conversions.
//
// Prints one line per check and ends with "N passed, M failed"; exits non-zero on any failure. Without a
// CUDA device: "no CUDA device: skipped", "0 passed, 0 failed", exit 0.
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cpu/convert.h"
#include "gpu_check.h"

using namespace sgl;
using gpu_check::fmt;
using gpu_check::guarded;
using gpu_check::report;

// This harness's own random streams (the salt of gpu_check::Rng).
struct Rng : gpu_check::Rng {
  explicit Rng(uint64_t seed) : gpu_check::Rng(seed, 0x7654321ull) {}
};

namespace {

const Backend* F = nullptr;    // the float32 CUDA table
const Backend* CPU = nullptr;
const float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kTol = 1e-4;

std::vector<float> rand_f(size_t n, Rng& r, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(n);
  for (float& x : v) x = r.uni(lo, hi);
  return v;
}

struct Dev {
  void* p = nullptr;
  explicit Dev(size_t b) {
    p = F->alloc(b);
    if (!p) throw std::runtime_error(fmt("CUDA alloc of %zu bytes failed", b));
  }
  ~Dev() { F->free(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(p); }
};

// A device buffer holding a copy of v.
template <class T>
struct DevVec : Dev {
  size_t n;
  explicit DevVec(const std::vector<T>& v) : Dev(std::max<size_t>(v.size(), 1) * sizeof(T)), n(v.size()) {
    F->upload(p, v.data(), v.size() * sizeof(T));
  }
  std::vector<T> get() const {
    std::vector<T> v(n);
    F->download(v.data(), p, n * sizeof(T));
    return v;
  }
};

// A NaN-filled f32 device buffer of n elements.
struct Out : DevVec<float> {
  explicit Out(size_t n) : DevVec<float>(std::vector<float>(n, kNaN)) {}
};

// A placed f32 weight (from host f32 values); released on scope exit.
struct Placed {
  WeightRef w;
  explicit Placed(const std::vector<float>& v) { w = F->place_weight({v.data(), DType::F32}, v.size()); }
  ~Placed() { F->release_weight(w); }
  Placed(const Placed&) = delete;
  Placed& operator=(const Placed&) = delete;
};

void check_rel(const std::string& name, const std::vector<float>& got, const std::vector<float>& ref,
               double tol = kTol) {
  double num = 0.0, den = 0.0;
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    if (!std::isfinite(got[i])) {
      bad++;
      continue;
    }
    const double d = double(got[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  report(name, bad == 0 && rel < tol && got.size() == ref.size(),
         fmt("(n=%zu rel=%.3g tol=%.0e nonfinite=%zu)", ref.size(), rel, tol, bad));
}

void check_exact(const std::string& name, const std::vector<float>& got, const std::vector<float>& want) {
  size_t bad = 0;
  for (size_t i = 0; i < want.size(); i++) bad += std::memcmp(&got[i], &want[i], 4) != 0;
  report(name, bad == 0 && got.size() == want.size(), fmt("(%zu/%zu differ)", bad, want.size()));
}

// ---- weights and plumbing ----------------------------------------------------------------------------------

void test_place_weight() {
  Rng r(1);
  for (size_t n : {size_t(1), size_t(37), size_t(4096), size_t(36000001)}) {  // the last spans several 64 MiB staging chunks
    guarded(fmt("place_weight n=%zu", n), [&] {
      std::vector<float> f32 = rand_f(n, r, -3.0f, 3.0f);
      std::vector<uint16_t> bf(n), h(n);
      std::vector<float> bf_ref(n), h_ref(n);
      for (size_t i = 0; i < n; i++) {
        bf[i] = f32_to_bf16(f32[i]);
        bf_ref[i] = bf16_to_f32(bf[i]);
        h[i] = f32_to_f16(f32[i] * (i % 7 == 0 ? 1e-6f : 1.0f));  // some f16 subnormals
        h_ref[i] = f16_to_f32(h[i]);
      }
      const struct {
        const char* name;
        WeightRef host;
        const std::vector<float>* want;
      } cases[] = {{"f32", {f32.data(), DType::F32}, &f32},
                   {"bf16", {bf.data(), DType::BF16}, &bf_ref},
                   {"f16", {h.data(), DType::F16}, &h_ref}};
      for (const auto& c : cases) {
        WeightRef w = F->place_weight(c.host, n);
        std::vector<float> got(n);
        F->download(got.data(), w.data, n * sizeof(float));
        F->release_weight(w);
        report(fmt("place_weight %s->f32 n=%zu dtype", c.name, n), w.dtype == DType::F32, "");
        check_exact(fmt("place_weight %s->f32 n=%zu", c.name, n), got, *c.want);
      }
    });
  }
  guarded("to_f32", [&] {
    std::vector<float> v = rand_f(1001, r);
    DevVec<float> d(v);
    std::vector<float> got(v.size(), kNaN);
    F->to_f32(d.p, got.data(), v.size());
    check_exact("to_f32 n=1001", got, v);
  });
  report("act_dtype is F32", F->act_dtype == DType::F32, "");
}

// ---- elementwise ---------------------------------------------------------------------------------------------

void test_embed_gather() {
  Rng r(2);
  for (int C : {8, 37, 896}) {
    guarded(fmt("embed C=%d", C), [&] {
      const int V = 301, T = 17;
      std::vector<float> table = rand_f(size_t(V) * C, r);
      std::vector<int32_t> ids(T);
      for (int& id : ids) id = r.range(0, V - 1);
      std::vector<float> ref(size_t(T) * C);
      CPU->embed({ids.data(), {table.data(), DType::F32}, ref.data(), T, C});
      Placed w(table);
      DevVec<int32_t> dids(ids);
      Out out(size_t(T) * C);
      F->embed({dids.as<int32_t>(), w.w, out.p, T, C});
      check_exact(fmt("embed T=%d C=%d", T, C), out.get(), ref);

      const int R = 5;
      std::vector<int32_t> rows = {3, 0, 16, 3, 9};
      std::vector<float> src = rand_f(size_t(T) * C, r), gref(size_t(R) * C);
      CPU->gather_rows({src.data(), rows.data(), gref.data(), R, C});
      DevVec<float> dsrc(src);
      DevVec<int32_t> drows(rows);
      Out g(size_t(R) * C);
      F->gather_rows({dsrc.p, drows.as<int32_t>(), g.p, R, C});
      check_exact(fmt("gather_rows R=%d C=%d", R, C), g.get(), gref);
    });
  }
}

void test_rms_norm() {
  Rng r(3);
  for (int C : {8, 37, 896, 4096}) {
    for (bool res : {false, true}) {
      guarded(fmt("rms_norm C=%d res=%d", C, int(res)), [&] {
        const int T = 13;
        std::vector<float> x = rand_f(size_t(T) * C, r, -2.0f, 2.0f), rs = rand_f(size_t(T) * C, r, -2.0f, 2.0f);
        std::vector<float> w = rand_f(size_t(C), r, 0.5f, 1.5f);
        std::vector<float> ref(x.size()), rref = rs;
        CPU->rms_norm({x.data(), res ? rref.data() : nullptr, ref.data(), {w.data(), DType::F32}, T, C, 1e-6f});
        Placed pw(w);
        DevVec<float> dx(x), dres(rs);
        // In place (out aliases x), as the model calls it.
        F->rms_norm({dx.p, res ? dres.p : nullptr, dx.p, pw.w, T, C, 1e-6f});
        check_rel(fmt("rms_norm T=%d C=%d residual=%d", T, C, int(res)), dx.get(), ref);
        if (res) check_rel(fmt("rms_norm T=%d C=%d residual stream", T, C), dres.get(), rref);
      });
    }
  }
}

void test_rope_kv_qkv() {
  Rng r(4);
  for (int D : {8, 16, 64, 128}) {
    guarded(fmt("rope D=%d", D), [&] {
      const int T = 9, H = 4, Hkv = 2, P = 4, pages = 6;
      std::vector<int32_t> pos(T);
      for (int& p : pos) p = r.range(0, 100000);
      std::vector<float> inv(size_t(D / 2));
      for (int i = 0; i < D / 2; i++) inv[i] = std::pow(10000.0f, -2.0f * i / D);
      std::vector<float> q = rand_f(size_t(T) * H * D, r), k = rand_f(size_t(T) * Hkv * D, r);
      std::vector<float> qr = q, kr = k;
      CPU->rope({qr.data(), kr.data(), pos.data(), inv.data(), T, H, Hkv, D});
      DevVec<float> dq(q), dk(k), dinv(inv);
      DevVec<int32_t> dpos(pos);
      F->rope({dq.p, dk.p, dpos.as<int32_t>(), dinv.as<float>(), T, H, Hkv, D});
      check_rel(fmt("rope q T=%d D=%d", T, D), dq.get(), qr);
      check_rel(fmt("rope k T=%d D=%d", T, D), dk.get(), kr);

      // kv_store: distinct slots.
      std::vector<int32_t> slots(T);
      std::vector<int32_t> perm(size_t(pages) * P);
      std::iota(perm.begin(), perm.end(), 0);
      for (size_t i = perm.size() - 1; i > 0; i--) std::swap(perm[i], perm[r.next() % (i + 1)]);
      for (int t = 0; t < T; t++) slots[t] = perm[t];
      const size_t cache_n = size_t(pages) * P * Hkv * D;
      std::vector<float> v = rand_f(size_t(T) * Hkv * D, r);
      std::vector<float> kc(cache_n, 0.0f), vc(cache_n, 0.0f);
      CPU->kv_store({k.data(), v.data(), kc.data(), vc.data(), slots.data(), T, Hkv, D});
      DevVec<float> dk0(k), dv0(v), dkc(std::vector<float>(cache_n, 0.0f)), dvc(std::vector<float>(cache_n, 0.0f));
      DevVec<int32_t> dslots(slots);
      F->kv_store({dk0.p, dv0.p, dkc.p, dvc.p, dslots.as<int32_t>(), T, Hkv, D});
      check_exact(fmt("kv_store k D=%d", D), dkc.get(), kc);
      check_exact(fmt("kv_store v D=%d", D), dvc.get(), vc);

      // qkv_rope_store: one fused row per token, a negative slot skips the token.
      std::vector<float> qkv = rand_f(size_t(T) * (H + 2 * Hkv) * D, r);
      std::vector<int32_t> slots2 = slots;
      slots2[2] = -1;
      std::vector<float> qo(size_t(T) * H * D, 0.0f), kc2(cache_n, 0.0f), vc2(cache_n, 0.0f);
      CPU->qkv_rope_store({qkv.data(), qo.data(), kc2.data(), vc2.data(), pos.data(), inv.data(), slots2.data(), T, H,
                           Hkv, D});
      DevVec<float> dqkv(qkv), dkc2(std::vector<float>(cache_n, 0.0f)), dvc2(std::vector<float>(cache_n, 0.0f));
      Out dqo(size_t(T) * H * D);
      DevVec<int32_t> dslots2(slots2);
      F->qkv_rope_store({dqkv.p, dqo.p, dkc2.p, dvc2.p, dpos.as<int32_t>(), dinv.as<float>(), dslots2.as<int32_t>(), T,
                         H, Hkv, D});
      check_rel(fmt("qkv_rope_store q D=%d", D), dqo.get(), qo);
      check_rel(fmt("qkv_rope_store k cache D=%d", D), dkc2.get(), kc2);
      check_exact(fmt("qkv_rope_store v cache D=%d", D), dvc2.get(), vc2);
    });
  }
}

void test_silu_gelu_layer_norm() {
  Rng r(5);
  for (int I : {7, 64, 4864}) {
    guarded(fmt("silu_mul I=%d", I), [&] {
      const int T = 11;
      std::vector<float> g = rand_f(size_t(T) * I, r, -6.0f, 6.0f), u = rand_f(size_t(T) * I, r, -2.0f, 2.0f);
      std::vector<float> ref(size_t(T) * I);
      CPU->silu_mul({g.data(), u.data(), ref.data(), T, I});
      DevVec<float> dg(g), du(u);
      Out o(size_t(T) * I);
      F->silu_mul({dg.p, du.p, o.p, T, I});
      check_rel(fmt("silu_mul T=%d I=%d", T, I), o.get(), ref);
      // Strided: a fused gate|up row [T, 2I].
      std::vector<float> gu(size_t(T) * 2 * I);
      for (int t = 0; t < T; t++)
        for (int i = 0; i < I; i++) {
          gu[size_t(t) * 2 * I + i] = g[size_t(t) * I + i];
          gu[size_t(t) * 2 * I + I + i] = u[size_t(t) * I + i];
        }
      DevVec<float> dgu(gu);
      Out o2(size_t(T) * I);
      SiluMulParams sp{dgu.p, dgu.as<float>() + I, o2.p, T, I};
      sp.ld = 2 * I;
      F->silu_mul(sp);
      check_rel(fmt("silu_mul strided T=%d I=%d", T, I), o2.get(), ref);
    });
  }
  for (bool tanh_approx : {false, true}) {
    guarded(fmt("gelu tanh=%d", int(tanh_approx)), [&] {
      std::vector<float> x = rand_f(10007, r, -5.0f, 5.0f), ref(x.size());
      CPU->gelu({x.data(), ref.data(), int64_t(x.size()), tanh_approx});
      DevVec<float> dx(x);
      Out o(x.size());
      F->gelu({dx.p, o.p, int64_t(x.size()), tanh_approx});
      check_rel(fmt("gelu n=%zu tanh=%d", x.size(), int(tanh_approx)), o.get(), ref);
    });
  }
  for (int C : {37, 768}) {
    guarded(fmt("layer_norm C=%d", C), [&] {
      const int T = 6;
      std::vector<float> x = rand_f(size_t(T) * C, r, -2.0f, 2.0f), rs = rand_f(size_t(T) * C, r);
      std::vector<float> w = rand_f(size_t(C), r, 0.5f, 1.5f), b = rand_f(size_t(C), r, -0.5f, 0.5f);
      std::vector<float> ref(x.size());
      CPU->layer_norm({x.data(), rs.data(), ref.data(), {w.data(), DType::F32}, {b.data(), DType::F32}, T, C, 1e-5f});
      Placed pw(w), pb(b);
      DevVec<float> dx(x), drs(rs);
      Out o(x.size());
      F->layer_norm({dx.p, drs.p, o.p, pw.w, pb.w, T, C, 1e-5f});
      check_rel(fmt("layer_norm T=%d C=%d", T, C), o.get(), ref);
    });
  }
}

// ---- matmul ----------------------------------------------------------------------------------------------------

void test_matmul() {
  Rng r(6);
  struct Shape {
    int T, K, N;
  };
  for (Shape s : {Shape{1, 64, 96}, Shape{2, 37, 53}, Shape{3, 896, 1152}, Shape{8, 128, 300}, Shape{64, 256, 512},
                  Shape{300, 96, 1000}, Shape{1, 896, 4864}}) {
    for (int mode = 0; mode < 3; mode++) {  // 0 plain, 1 bias, 2 logits (y_f32, no bias)
      guarded(fmt("matmul T=%d K=%d N=%d mode=%d", s.T, s.K, s.N, mode), [&] {
        std::vector<float> x = rand_f(size_t(s.T) * s.K, r), w = rand_f(size_t(s.N) * s.K, r, -0.2f, 0.2f);
        std::vector<float> b = rand_f(size_t(s.N), r);
        std::vector<float> ref(size_t(s.T) * s.N);
        MatmulParams hp{x.data(), {w.data(), DType::F32}, mode == 1 ? WeightRef{b.data(), DType::F32} : WeightRef{},
                        ref.data(), s.T, s.K, s.N};
        hp.y_f32 = mode == 2;
        CPU->matmul(hp);
        Placed pw(w), pb(b);
        DevVec<float> dx(x);
        Out y(size_t(s.T) * s.N);
        MatmulParams dp{dx.p, pw.w, mode == 1 ? pb.w : WeightRef{}, y.p, s.T, s.K, s.N};
        dp.y_f32 = mode == 2;
        F->matmul(dp);
        check_rel(fmt("matmul T=%d K=%d N=%d %s", s.T, s.K, s.N, mode == 0 ? "plain" : mode == 1 ? "bias" : "logits"),
                  y.get(), ref);
      });
    }
  }
  guarded("matmul rejects a bf16 weight", [&] {
    std::vector<uint16_t> w(64 * 8, 0);
    WeightRef bad{w.data(), DType::BF16};
    bool threw = false;
    try {
      F->matmul({nullptr, bad, {}, nullptr, 1, 64, 8});
    } catch (const std::exception&) {
      threw = true;
    }
    report("matmul rejects a bf16 weight", threw, "");
  });
}

// ---- attention -------------------------------------------------------------------------------------------------

struct Seq {
  int q_len, kv_len;
};

void attention_case(const std::string& name, int D, int P, int H, int Hkv, bool causal, const std::vector<Seq>& seqs,
                    Rng& r) {
  guarded(name, [&] {
    const int B = int(seqs.size());
    std::vector<int32_t> qo(B + 1, 0), kvp(B + 1, 0), kvl(B), pages;
    int max_q = 0, max_kv = 0, total_pages = 0;
    for (int b = 0; b < B; b++) {
      qo[b + 1] = qo[b] + seqs[b].q_len;
      kvl[b] = seqs[b].kv_len;
      const int np = (seqs[b].kv_len + P - 1) / P;
      kvp[b + 1] = kvp[b] + np;
      total_pages += np;
      max_q = std::max(max_q, seqs[b].q_len);
      max_kv = std::max(max_kv, seqs[b].kv_len);
    }
    const int num_pages = total_pages + 3;  // unused pages stay NaN
    std::vector<int32_t> perm(num_pages);
    std::iota(perm.begin(), perm.end(), 0);
    for (int i = num_pages - 1; i > 0; i--) std::swap(perm[i], perm[r.next() % uint64_t(i + 1)]);
    pages.assign(perm.begin(), perm.begin() + total_pages);
    const size_t row = size_t(Hkv) * D, cache_n = size_t(num_pages) * P * row;
    std::vector<float> kc(cache_n, kNaN), vc(cache_n, kNaN);
    for (int b = 0; b < B; b++)
      for (int pos = 0; pos < seqs[b].kv_len; pos++) {
        const size_t slot = size_t(pages[kvp[b] + pos / P]) * P + pos % P;
        for (size_t j = 0; j < row; j++) {
          kc[slot * row + j] = r.uni(-2.0f, 2.0f);
          vc[slot * row + j] = r.uni(-1.0f, 1.0f);
        }
      }
    const int T = qo[B];
    std::vector<float> q = rand_f(size_t(T) * H * D, r, -2.0f, 2.0f), ref(size_t(T) * H * D);
    AttentionParams p{};
    p.B = B, p.T = T, p.H = H, p.Hkv = Hkv, p.D = D, p.P = P;
    p.scale = 1.0f / std::sqrt(float(D));
    p.causal = causal;
    p.max_q_len = max_q, p.max_kv_len = max_kv;
    AttentionParams h = p;
    h.q = q.data(), h.k_cache = kc.data(), h.v_cache = vc.data(), h.out = ref.data();
    h.qo_indptr = qo.data(), h.kv_indptr = kvp.data(), h.kv_page_indices = pages.data(), h.kv_lens = kvl.data();
    CPU->attention(h);
    DevVec<float> dq(q), dkc(kc), dvc(vc);
    DevVec<int32_t> dqo(qo), dkvp(kvp), dpages(pages), dkvl(kvl);
    Out out(size_t(T) * H * D);
    AttentionParams d = p;
    d.q = dq.p, d.k_cache = dkc.p, d.v_cache = dvc.p, d.out = out.p;
    d.qo_indptr = dqo.as<int32_t>(), d.kv_indptr = dkvp.as<int32_t>(), d.kv_page_indices = dpages.as<int32_t>();
    d.kv_lens = dkvl.as<int32_t>();
    F->attention(d);
    check_rel(name, out.get(), ref);
  });
}

void test_attention() {
  Rng r(7);
  for (int D : {8, 16, 64, 128}) {
    for (int P : {1, 16}) {
      attention_case(fmt("attention prefill D=%d P=%d H=8/Hkv=2 causal", D, P), D, P, 8, 2, true,
                     {{37, 37}, {5, 70}, {1, 9}, {64, 64}}, r);
      attention_case(fmt("attention decode D=%d P=%d H=8/Hkv=2", D, P), D, P, 8, 2, true,
                     {{1, 1}, {1, 300}, {1, 17}, {1, 1025}}, r);
    }
    attention_case(fmt("attention non-causal D=%d P=4 H=4/Hkv=4", D), D, 4, 4, 4, false, {{9, 20}, {3, 3}}, r);
  }
}

}  // namespace

int main() {
  if (!gpu_check::cuda_or_skip()) return 0;
  F = cuda_backend_f32();
  if (!F) {
    report("cuda_backend_f32() exists where cuda_backend() does", false, "");
    return gpu_check::summary();
  }
  CPU = &cpu_backend();
  test_place_weight();
  test_embed_gather();
  test_rms_norm();
  test_rope_kv_qkv();
  test_silu_gelu_layer_norm();
  test_matmul();
  test_attention();
  return gpu_check::summary();
}
