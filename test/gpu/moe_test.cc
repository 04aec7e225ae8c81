// GPU parity harness of the MoE ops (cuda/moe.cu: moe_route, moe_permute, grouped_matmul, moe_unpermute) on
// both CUDA tables (bf16: sgl::cuda_backend(), float32: sgl::cuda_backend_f32()) against the CPU ops
// (addon/cpu/moe.cc) on fixed-seed random inputs. Activations are rounded to bf16 first on the bf16 table
// and the CPU gets the f32 values of those bf16s; CUDA outputs are poisoned first (bf16 0xFFFF, f32 NaN, ids
// -1) so that unwritten elements fail. Pass rules (cuda/NOTES.md): exact for the routing ids, counts, dst,
// offsets and the permuted rows; routing weights ||d|| / ||ref|| < 1e-6; grouped_matmul every output row
// within relative error 2e-2 (bf16) / 1e-4 (f32), unpermute 1e-2 / 1e-5, nothing non-finite; rows past
// offsets[E] left untouched. Shapes: tiny (T 1..7, E 4 / 8, K 2, the fixture's C 16), odd sizes (the
// narrower copy / fallback matmul paths), Qwen1.5-MoE-A2.7B (C 2048, E 60, K 4, gate|up 2048 -> 2816, down
// 1408 -> 2048) at T 1, 16, 64, 1000, skewed routing (experts with no rows), count_tokens < T, every
// grouped_matmul path forced on the same inputs, and the whole MoE MLP chain captured in a CUDA graph and
// replayed on new inputs (bit-equal to eager: no host reads of the offsets).
//
// Prints one line per check and ends with "N passed, M failed"; exits non-zero on any failure. Without a
// CUDA device: "no CUDA device: skipped", "0 passed, 0 failed", exit 0.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cpu/convert.h"
#include "cpu/ops.h"
#include "cuda_common.cuh"
#include "gpu_check.h"
#include "ops.h"

using namespace sgl;
using gpu_check::fmt;
using gpu_check::guarded;
using gpu_check::report;

namespace {

struct Rng : gpu_check::Rng {
  explicit Rng(uint64_t seed) : gpu_check::Rng(seed, 0x4d6f45ull) {}
};

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// One CUDA table under test and its tolerances.
struct Tab {
  const Backend* be;
  bool f32;
  const char* name;
  double mm_tol, ew_tol;
  size_t es() const { return f32 ? 4 : 2; }
};

struct Dev {
  const Backend* be;
  void* p = nullptr;
  Dev(const Backend* b, size_t bytes) : be(b) {
    p = be->alloc(std::max<size_t>(bytes, 16));
    if (!p) throw std::runtime_error(fmt("CUDA alloc of %zu bytes failed", bytes));
  }
  ~Dev() { be->free(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(p); }
};

template <class T>
void up(const Tab& tb, void* d, const std::vector<T>& v) { tb.be->upload(d, v.data(), v.size() * sizeof(T)); }
template <class T>
std::vector<T> down(const Tab& tb, const void* d, size_t n) {
  std::vector<T> v(n);
  tb.be->download(v.data(), d, n * sizeof(T));
  return v;
}

// Activations: values the table can hold (rounded to bf16 on the bf16 table).
float representable(const Tab& tb, float f) { return tb.f32 ? f : bf16_to_f32(f32_to_bf16(f)); }
std::vector<float> rand_act(const Tab& tb, size_t n, Rng& r, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(n);
  for (float& x : v) x = representable(tb, r.uni(lo, hi));
  return v;
}
void round_act(const Tab& tb, std::vector<float>& v) {
  for (float& x : v) x = representable(tb, x);
}
// The bytes of an activation tensor in the table's dtype.
std::vector<uint8_t> act_bytes(const Tab& tb, const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * tb.es());
  if (tb.f32) {
    std::memcpy(b.data(), v.data(), b.size());
  } else {
    for (size_t i = 0; i < v.size(); i++) {
      const uint16_t h = f32_to_bf16(v[i]);
      std::memcpy(b.data() + 2 * i, &h, 2);
    }
  }
  return b;
}
void up_act(const Tab& tb, void* d, const std::vector<float>& v) { up(tb, d, act_bytes(tb, v)); }
std::vector<float> down_act(const Tab& tb, const void* d, size_t n) {
  std::vector<float> v(n);
  if (tb.f32) {
    tb.be->download(v.data(), d, n * 4);
  } else {
    std::vector<uint16_t> h = down<uint16_t>(tb, d, n);
    for (size_t i = 0; i < n; i++) v[i] = bf16_to_f32(h[i]);
  }
  return v;
}
std::vector<uint8_t> down_bytes(const Tab& tb, const void* d, size_t n) { return down<uint8_t>(tb, d, n * tb.es()); }
void poison_act(const Tab& tb, void* d, size_t n) {
  if (tb.f32)
    up(tb, d, std::vector<float>(n, kNaN));
  else
    up(tb, d, std::vector<uint16_t>(n, 0xFFFF));
}

template <class T>
void check_exact(const std::string& name, const std::vector<T>& got, const std::vector<T>& want) {
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < want.size(); i++)
    if (i >= got.size() || std::memcmp(&got[i], &want[i], sizeof(T)) != 0) {
      if (!bad) first = i;
      bad++;
    }
  report(name, bad == 0 && got.size() == want.size(),
         bad ? fmt("(%zu/%zu differ, first #%zu got %lld want %lld)", bad, want.size(), first,
                   (long long)(first < got.size() ? got[first] : 0), (long long)want[first])
             : fmt("(n=%zu identical)", want.size()));
}

double rel_of(const float* got, const float* ref, size_t n, size_t& nonfinite) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    if (!std::isfinite(got[i])) {
      nonfinite++;
      continue;
    }
    const double d = double(got[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

void check_rel(const std::string& name, const std::vector<float>& got, const std::vector<float>& ref, double tol) {
  size_t bad = 0;
  const double rel = rel_of(got.data(), ref.data(), ref.size(), bad);
  report(name, bad == 0 && rel < tol && got.size() == ref.size(),
         fmt("(n=%zu rel=%.3g tol=%.0e nonfinite=%zu)", ref.size(), rel, tol, bad));
}

// Every row of [rows, cols] within tol (a wrong expert's rows cannot hide in the norm of the others).
void check_rows(const std::string& name, const std::vector<float>& got, const std::vector<float>& ref, size_t rows,
                size_t cols, double tol) {
  size_t bad = 0, worst_row = 0;
  double worst = 0.0;
  for (size_t r = 0; r < rows; r++) {
    const double rel = rel_of(got.data() + r * cols, ref.data() + r * cols, cols, bad);
    if (rel > worst) worst = rel, worst_row = r;
  }
  report(name, bad == 0 && worst < tol && got.size() >= rows * cols,
         fmt("(rows=%zu x %zu worst row rel=%.3g at #%zu tol=%.0e nonfinite=%zu)", rows, cols, worst, worst_row, tol,
             bad));
}

// Router logits [T, E] in [-3, 3]; `skew` experts (the first `skew`) get +8, so the others stay empty when
// skew >= K; `ties`: multiples of 0.5 in [-2, 2] (many exact ties).
std::vector<float> rand_logits(int T, int E, Rng& r, int skew = 0, bool ties = false) {
  std::vector<float> l(size_t(T) * E);
  for (int t = 0; t < T; t++)
    for (int e = 0; e < E; e++) {
      float v = ties ? 0.5f * float(r.range(-4, 4)) : r.uni(-3.0f, 3.0f);
      if (e < skew) v += 8.0f;
      l[size_t(t) * E + e] = v;
    }
  return l;
}

struct Routing {
  std::vector<int32_t> ids;
  std::vector<float> w;
};
Routing cpu_route(const std::vector<float>& logits, int T, int E, int K, bool renorm) {
  Routing r{std::vector<int32_t>(size_t(T) * K), std::vector<float>(size_t(T) * K)};
  moe_route_cpu({logits.data(), r.ids.data(), r.w.data(), nullptr, T, E, K, renorm});
  return r;
}
struct Perm {
  std::vector<int32_t> dst, offsets;
};
Perm cpu_perm_index(const std::vector<int32_t>& ids, int T, int E, int K) {
  Perm p{std::vector<int32_t>(size_t(T) * K), std::vector<int32_t>(size_t(E) + 1)};
  std::vector<float> x(static_cast<size_t>(T)), xp(static_cast<size_t>(T) * K);  // C = 1
  moe_permute_cpu({x.data(), ids.data(), xp.data(), p.dst.data(), p.offsets.data(), T, 1, E, K});
  return p;
}

// ---- moe_route ---------------------------------------------------------------------------------------------

// counted < 0: count_tokens null; with_counts false: counts null.
void test_route(const Tab& tb, int T, int E, int K, bool renorm, int counted, bool with_counts, int skew, bool ties,
                uint64_t seed) {
  const std::string name = fmt("%s moe_route T=%d E=%d K=%d%s%s%s%s", tb.name, T, E, K, renorm ? " renorm" : "",
                               counted >= 0 ? fmt(" count_tokens=%d", counted).c_str() : "",
                               with_counts ? "" : " no-counts", ties ? " ties" : skew ? " skewed" : "");
  guarded(name, [&] {
    Rng r(seed);
    const std::vector<float> logits = rand_logits(T, E, r, skew, ties);
    std::vector<int32_t> base(static_cast<size_t>(E));
    for (auto& c : base) c = r.range(0, 100);
    std::vector<int32_t> ids(size_t(T) * K), want_counts = base;
    std::vector<float> w(size_t(T) * K);
    MoeRouteParams cp{logits.data(), ids.data(), w.data(), with_counts ? want_counts.data() : nullptr, T, E, K, renorm};
    const int32_t ct = counted;
    if (counted >= 0) cp.count_tokens = &ct;
    moe_route_cpu(cp);

    Dev dl(tb.be, logits.size() * 4), di(tb.be, ids.size() * 4), dw(tb.be, w.size() * 4), dc(tb.be, size_t(E) * 4),
        dn(tb.be, 4);
    up(tb, dl.p, logits);
    up(tb, di.p, std::vector<int32_t>(ids.size(), -1));
    up(tb, dw.p, std::vector<float>(w.size(), kNaN));
    up(tb, dc.p, base);
    up(tb, dn.p, std::vector<int32_t>{ct});
    MoeRouteParams gp{dl.as<float>(), di.as<int32_t>(), dw.as<float>(), with_counts ? dc.as<int32_t>() : nullptr,
                      T, E, K, renorm};
    if (counted >= 0) gp.count_tokens = dn.as<int32_t>();
    tb.be->moe_route(gp);
    check_exact(name + ": topk_ids", down<int32_t>(tb, di.p, ids.size()), ids);
    check_rel(name + ": topk_w", down<float>(tb, dw.p, w.size()), w, 1e-6);
    check_exact(name + ": counts", down<int32_t>(tb, dc.p, size_t(E)), with_counts ? want_counts : base);
  });
}

// ---- moe_permute -------------------------------------------------------------------------------------------

void test_permute(const Tab& tb, int T, int C, int E, int K, int skew, uint64_t seed) {
  const std::string name = fmt("%s moe_permute T=%d C=%d E=%d K=%d%s", tb.name, T, C, E, K, skew ? " skewed" : "");
  guarded(name, [&] {
    Rng r(seed);
    const Routing rt = cpu_route(rand_logits(T, E, r, skew), T, E, K, false);
    const std::vector<float> x = rand_act(tb, size_t(T) * C, r);
    const size_t M = size_t(T) * K;
    std::vector<float> xp(M * size_t(C));
    std::vector<int32_t> dst(M), off(size_t(E) + 1);
    moe_permute_cpu({x.data(), rt.ids.data(), xp.data(), dst.data(), off.data(), T, C, E, K});

    Dev dx(tb.be, x.size() * tb.es()), di(tb.be, M * 4), dxp(tb.be, xp.size() * tb.es()), dd(tb.be, M * 4),
        doff(tb.be, off.size() * 4);
    up_act(tb, dx.p, x);
    up(tb, di.p, rt.ids);
    poison_act(tb, dxp.p, xp.size());
    up(tb, dd.p, std::vector<int32_t>(M, -1));
    up(tb, doff.p, std::vector<int32_t>(off.size(), -1));
    tb.be->moe_permute({dx.p, di.as<int32_t>(), dxp.p, dd.as<int32_t>(), doff.as<int32_t>(), T, C, E, K});
    check_exact(name + ": dst", down<int32_t>(tb, dd.p, M), dst);
    check_exact(name + ": offsets", down<int32_t>(tb, doff.p, off.size()), off);
    check_exact(name + ": x_perm bits", down_bytes(tb, dxp.p, xp.size()), act_bytes(tb, xp));
    int empty = 0;
    for (int e = 0; e < E; e++) empty += off[size_t(e) + 1] == off[size_t(e)];
    if (skew) report(name + ": some experts have no rows", empty > 0, fmt("(%d of %d empty)", empty, E));
  });
}

// ---- grouped_matmul ----------------------------------------------------------------------------------------

// E expert weights [N, K] of one table: host values (bf16-representable on the bf16 table), device copies and
// the device pointer array.
struct Experts {
  const Tab& tb;
  int E, N, K;
  std::vector<std::vector<float>> host;
  std::vector<std::vector<uint16_t>> bits;  // bf16 table: the CPU reads the bf16 weights in place
  std::vector<void*> dev;
  void* ptrs = nullptr;
  Experts(const Tab& t, int E_, int N_, int K_, Rng& r) : tb(t), E(E_), N(N_), K(K_) {
    const float s = 1.0f / std::sqrt(float(K));
    for (int e = 0; e < E; e++) {
      const size_t n = size_t(N) * K;
      void* d = tb.be->alloc(n * tb.es());
      if (!d) throw std::runtime_error("CUDA alloc of expert weights failed");
      dev.push_back(d);
      if (tb.f32) {
        host.push_back(rand_act(tb, n, r, -s, s));
        up(tb, d, host.back());
      } else {
        std::vector<uint16_t> b(n);
        for (auto& h : b) h = f32_to_bf16(r.uni(-s, s));
        up(tb, d, b);
        bits.push_back(std::move(b));
      }
    }
    ptrs = tb.be->alloc(size_t(E) * sizeof(void*));
    tb.be->upload(ptrs, dev.data(), size_t(E) * sizeof(void*));
  }
  ~Experts() {
    for (void* d : dev) tb.be->free(d);
    tb.be->free(ptrs);
  }
  std::vector<const void*> host_ptrs() const {
    std::vector<const void*> p;
    for (int e = 0; e < E; e++) p.push_back(tb.f32 ? static_cast<const void*>(host[size_t(e)].data()) : bits[size_t(e)].data());
    return p;
  }
  DType dtype() const { return tb.f32 ? DType::F32 : DType::BF16; }
  const void* const* dptrs() const { return static_cast<const void* const*>(ptrs); }
  size_t bytes() const { return size_t(E) * N * K * tb.es(); }
};

const char* path_name(int p) { return p == 0 ? "auto" : p == 1 ? "gemv" : p == 2 ? "mma" : "tiled"; }

// Rows grouped by the routing of T random tokens (skew: only the first `skew` experts chosen), plus `extra`
// rows past offsets[E] that must stay untouched; every path in `paths` on the same inputs.
void test_grouped(const Tab& tb, const char* shape, Experts& W, int T, int Ktop, int skew, int extra,
                  const std::vector<int>& paths, uint64_t seed) {
  const int E = W.E, N = W.N, K = W.K;
  const std::string base = fmt("%s grouped_matmul %s T=%d M=%d K=%d N=%d E=%d%s%s", tb.name, shape, T, T * Ktop, K, N,
                               E, skew ? " skewed" : "", extra ? fmt(" +%d rows", extra).c_str() : "");
  guarded(base, [&] {
    Rng r(seed);
    const Routing rt = cpu_route(rand_logits(T, E, r, skew), T, E, Ktop, false);
    const Perm pm = cpu_perm_index(rt.ids, T, E, Ktop);
    const int Mr = T * Ktop, M = Mr + extra;
    const std::vector<float> x = rand_act(tb, size_t(M) * K, r);
    std::vector<float> ref(size_t(M) * N, 0.0f);
    const std::vector<const void*> hp = W.host_ptrs();
    grouped_matmul_cpu({x.data(), hp.data(), W.dtype(), pm.offsets.data(), ref.data(), M, K, N, E});
    round_act(tb, ref);
    Dev dx(tb.be, x.size() * tb.es()), dy(tb.be, ref.size() * tb.es()), doff(tb.be, pm.offsets.size() * 4);
    up_act(tb, dx.p, x);
    up(tb, doff.p, pm.offsets);
    for (int path : paths) {
      const std::string name = base + " path=" + path_name(path);
      guarded(name, [&] {
        poison_act(tb, dy.p, ref.size());
        grouped_matmul_cuda_force_path(path);
        try {
          tb.be->grouped_matmul({dx.p, W.dptrs(), W.dtype(), doff.as<int32_t>(), dy.p, M, K, N, E});
        } catch (...) {
          grouped_matmul_cuda_force_path(0);
          throw;
        }
        grouped_matmul_cuda_force_path(0);
        const std::vector<float> got = down_act(tb, dy.p, ref.size());
        check_rows(name, got, ref, size_t(Mr), size_t(N), tb.mm_tol);
        if (extra) {
          size_t touched = 0;
          for (size_t i = size_t(Mr) * N; i < got.size(); i++) touched += !std::isnan(got[i]);
          report(name + ": rows past offsets[E] untouched", touched == 0, fmt("(%zu written)", touched));
        }
      });
    }
  });
}

// ---- moe_unpermute -----------------------------------------------------------------------------------------

// shared: 0 none, 1 with gate logits, 2 gate null (weight 1).
void test_unpermute(const Tab& tb, int T, int C, int E, int K, int shared, uint64_t seed) {
  const std::string name = fmt("%s moe_unpermute T=%d C=%d E=%d K=%d shared=%s", tb.name, T, C, E, K,
                               shared == 0 ? "none" : shared == 1 ? "gated" : "ungated");
  guarded(name, [&] {
    Rng r(seed);
    const Routing rt = cpu_route(rand_logits(T, E, r), T, E, K, r.range(0, 1) == 1);
    const Perm pm = cpu_perm_index(rt.ids, T, E, K);
    const size_t M = size_t(T) * K;
    const std::vector<float> y = rand_act(tb, M * C, r), sh = rand_act(tb, size_t(T) * C, r);
    std::vector<float> gate(static_cast<size_t>(T));
    for (float& g : gate) g = r.uni(-4.0f, 4.0f);
    std::vector<float> ref(size_t(T) * C);
    moe_unpermute_cpu({y.data(), pm.dst.data(), rt.ids.data(), rt.w.data(), shared ? sh.data() : nullptr,
                       shared == 1 ? gate.data() : nullptr, ref.data(), T, C, K});
    Dev dy(tb.be, y.size() * tb.es()), dd(tb.be, M * 4), di(tb.be, M * 4), dw(tb.be, M * 4),
        dsh(tb.be, sh.size() * tb.es()), dg(tb.be, gate.size() * 4), dout(tb.be, ref.size() * tb.es());
    up_act(tb, dy.p, y);
    up(tb, dd.p, pm.dst);
    up(tb, di.p, rt.ids);
    up(tb, dw.p, rt.w);
    up_act(tb, dsh.p, sh);
    up(tb, dg.p, gate);
    poison_act(tb, dout.p, ref.size());
    tb.be->moe_unpermute({dy.p, dd.as<int32_t>(), di.as<int32_t>(), dw.as<float>(), shared ? dsh.p : nullptr,
                          shared == 1 ? dg.as<float>() : nullptr, dout.p, T, C, K});
    round_act(tb, ref);
    check_rows(name, down_act(tb, dout.p, ref.size()), ref, size_t(T), size_t(C), tb.ew_tol);
  });
}

// ---- the MoE MLP chain, eager against the CPU and replayed from a CUDA graph --------------------------------
// route (f32 logits given) -> permute -> gate|up grouped matmul -> strided silu_mul -> down grouped matmul ->
// unpermute with a gated shared expert input, as LlamaModel::moe_mlp runs them on a device backend. The CPU
// chain rounds its intermediates where the table stores them. The graph is captured once at T and replayed on
// fresh logits / x (other routing: other offsets and tiles), bit-equal to an eager run on the same inputs;
// its counter counts only the first `counted` tokens of each replay.

void test_chain(const Tab& tb, const char* shape, int T, int C, int E, int K, int Im, int counted, uint64_t seed) {
  const std::string name = fmt("%s moe chain %s T=%d C=%d E=%d K=%d Im=%d count_tokens=%d", tb.name, shape, T, C, E,
                               K, Im, counted);
  guarded(name, [&] {
    Rng r(seed);
    Experts gu(tb, E, 2 * Im, C, r), dn(tb, E, C, Im, r);
    const int M = T * K;
    const size_t es = tb.es();
    Dev dl(tb.be, size_t(T) * E * 4), di(tb.be, size_t(M) * 4), dw(tb.be, size_t(M) * 4), dcnt(tb.be, size_t(E) * 4),
        dct(tb.be, 4), dx(tb.be, size_t(T) * C * es), dxp(tb.be, size_t(M) * C * es), dd(tb.be, size_t(M) * 4),
        doff(tb.be, size_t(E + 1) * 4), dh(tb.be, size_t(M) * 2 * Im * es), dh2(tb.be, size_t(M) * Im * es),
        dyv(tb.be, size_t(M) * C * es), dsh(tb.be, size_t(T) * C * es), dg(tb.be, size_t(T) * 4),
        dout(tb.be, size_t(T) * C * es);
    up(tb, dct.p, std::vector<int32_t>{counted});
    auto enqueue = [&] {
      MoeRouteParams rp{dl.as<float>(), di.as<int32_t>(), dw.as<float>(), dcnt.as<int32_t>(), T, E, K, false};
      rp.count_tokens = dct.as<int32_t>();
      tb.be->moe_route(rp);
      tb.be->moe_permute({dx.p, di.as<int32_t>(), dxp.p, dd.as<int32_t>(), doff.as<int32_t>(), T, C, E, K});
      tb.be->grouped_matmul({dxp.p, gu.dptrs(), gu.dtype(), doff.as<int32_t>(), dh.p, M, C, 2 * Im, E});
      SiluMulParams sm{dh.p, static_cast<const char*>(dh.p) + size_t(Im) * es, dh2.p, M, Im};
      sm.ld = 2 * Im;
      tb.be->silu_mul(sm);
      tb.be->grouped_matmul({dh2.p, dn.dptrs(), dn.dtype(), doff.as<int32_t>(), dyv.p, M, Im, C, E});
      tb.be->moe_unpermute({dyv.p, dd.as<int32_t>(), di.as<int32_t>(), dw.as<float>(), dsh.p, dg.as<float>(), dout.p,
                            T, C, K});
    };
    struct Inputs {
      std::vector<float> logits, x, sh, g;
    };
    auto make_inputs = [&](int skew) {
      Inputs in{rand_logits(T, E, r, skew), rand_act(tb, size_t(T) * C, r), rand_act(tb, size_t(T) * C, r),
                std::vector<float>(size_t(T))};
      for (float& g : in.g) g = r.uni(-3.0f, 3.0f);
      return in;
    };
    auto load = [&](const Inputs& in) {
      up(tb, dl.p, in.logits);
      up_act(tb, dx.p, in.x);
      up_act(tb, dsh.p, in.sh);
      up(tb, dg.p, in.g);
      up(tb, dcnt.p, std::vector<int32_t>(size_t(E), 0));
      poison_act(tb, dout.p, size_t(T) * C);
      tb.be->sync();
    };
    // The CPU chain on the same inputs; returns out and fills counts.
    auto cpu_chain = [&](const Inputs& in, std::vector<int32_t>& counts) {
      std::vector<int32_t> ids(static_cast<size_t>(M)), dst(static_cast<size_t>(M)), off(size_t(E) + 1);
      std::vector<float> w(static_cast<size_t>(M)), xp(size_t(M) * C), h(size_t(M) * 2 * Im), h2(size_t(M) * Im),
          yv(size_t(M) * C), out(size_t(T) * C);
      counts.assign(size_t(E), 0);
      MoeRouteParams rp{in.logits.data(), ids.data(), w.data(), counts.data(), T, E, K, false};
      rp.count_tokens = &counted;
      moe_route_cpu(rp);
      moe_permute_cpu({in.x.data(), ids.data(), xp.data(), dst.data(), off.data(), T, C, E, K});
      const std::vector<const void*> pgu = gu.host_ptrs(), pdn = dn.host_ptrs();
      grouped_matmul_cpu({xp.data(), pgu.data(), gu.dtype(), off.data(), h.data(), M, C, 2 * Im, E});
      round_act(tb, h);
      SiluMulParams sm{h.data(), h.data() + Im, h2.data(), M, Im};
      sm.ld = 2 * Im;
      silu_mul_cpu(sm);
      round_act(tb, h2);
      grouped_matmul_cpu({h2.data(), pdn.data(), dn.dtype(), off.data(), yv.data(), M, Im, C, E});
      round_act(tb, yv);
      moe_unpermute_cpu({yv.data(), dst.data(), ids.data(), w.data(), in.sh.data(), in.g.data(), out.data(), T, C, K});
      round_act(tb, out);
      return out;
    };

    const Inputs a = make_inputs(0);
    load(a);
    enqueue();  // eager (also sets kernel attributes outside the capture)
    const std::vector<uint8_t> eager_a = down_bytes(tb, dout.p, size_t(T) * C);
    std::vector<int32_t> cpu_counts;
    const std::vector<float> ref_a = cpu_chain(a, cpu_counts);
    check_rows(name + ": eager vs CPU", down_act(tb, dout.p, size_t(T) * C), ref_a, size_t(T), size_t(C),
               tb.mm_tol);
    check_exact(name + ": eager counts", down<int32_t>(tb, dcnt.p, size_t(E)), cpu_counts);

    tb.be->graph_begin();
    try {
      enqueue();
    } catch (...) {
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(sgl_stream(), &g);
      if (g) cudaGraphDestroy(g);
      throw;
    }
    void* exec = tb.be->graph_end();
    load(a);
    tb.be->graph_launch(exec);
    check_exact(name + ": graph replay vs eager (same inputs)", down_bytes(tb, dout.p, size_t(T) * C), eager_a);
    // New inputs with skewed routing (other offsets, empty experts): eager first, then the replay.
    const Inputs b = make_inputs(std::max(K, E / 4));
    load(b);
    enqueue();
    const std::vector<uint8_t> eager_b = down_bytes(tb, dout.p, size_t(T) * C);
    load(b);
    tb.be->graph_launch(exec);
    const std::vector<uint8_t> replay_b = down_bytes(tb, dout.p, size_t(T) * C);
    const std::vector<int32_t> replay_counts = down<int32_t>(tb, dcnt.p, size_t(E));
    tb.be->graph_free(exec);
    check_exact(name + ": graph replay vs eager (new routing)", replay_b, eager_b);
    const std::vector<float> ref_b = cpu_chain(b, cpu_counts);
    check_exact(name + ": graph replay counts (count_tokens)", replay_counts, cpu_counts);
    std::vector<float> got_b(size_t(T) * C);
    {
      Dev tmp(tb.be, replay_b.size());
      tb.be->upload(tmp.p, replay_b.data(), replay_b.size());
      got_b = down_act(tb, tmp.p, size_t(T) * C);
    }
    check_rows(name + ": graph replay vs CPU", got_b, ref_b, size_t(T), size_t(C), tb.mm_tol);
  });
}

// ---- the suites --------------------------------------------------------------------------------------------

void run_table(const Tab& tb, bool full) {
  uint64_t seed = tb.f32 ? 1000 : 1;
  // routing
  for (int T = 1; T <= 7; T++) test_route(tb, T, T % 2 ? 4 : 8, 2, T % 3 == 0, -1, true, 0, false, seed++);
  test_route(tb, 64, 8, 2, false, 5, true, 0, true, seed++);
  test_route(tb, 300, 60, 4, false, 299, true, 0, false, seed++);
  test_route(tb, 1000, 60, 4, true, -1, true, 0, false, seed++);
  test_route(tb, 33, 60, 4, false, 0, true, 0, true, seed++);
  test_route(tb, 17, 256, 8, true, 9, true, 0, false, seed++);
  test_route(tb, 17, 37, 3, false, -1, false, 0, false, seed++);
  test_route(tb, 9, 8, 8, false, -1, true, 0, false, seed++);  // K = E
  // permute
  for (int T = 1; T <= 7; T += 3) test_permute(tb, T, 16, T % 2 ? 4 : 8, 2, 0, seed++);
  test_permute(tb, 5, 21, 8, 2, 0, seed++);   // odd C: 2-byte units (bf16)
  test_permute(tb, 6, 20, 8, 2, 0, seed++);   // 4-byte units
  test_permute(tb, 64, 2048, 60, 4, 0, seed++);
  test_permute(tb, 1000, 2048, 60, 4, 15, seed++);
  test_permute(tb, 4096, 64, 60, 4, 0, seed++);  // 16384 pairs: two tiles of the index kernel
  test_permute(tb, 2500, 16, 256, 8, 12, seed++);  // skew >= K: 244 experts empty
  // grouped_matmul, tiny and odd shapes (every path)
  const std::vector<int> all = tb.f32 ? std::vector<int>{0} : std::vector<int>{0, 1, 2, 3};
  {
    Rng r(seed++);
    Experts w16(tb, 8, 32, 16, r), w_odd(tb, 4, 36, 20, r), w_mid(tb, 8, 200, 64, r);
    for (int T = 1; T <= 7; T += 2) test_grouped(tb, "tiny", w16, T, 2, 0, 0, all, seed++);
    test_grouped(tb, "tiny", w16, 50, 4, 2, 3, all, seed++);  // skewed, rows past offsets[E]
    test_grouped(tb, "odd", w_odd, 7, 2, 0, 2, all, seed++);
    test_grouped(tb, "mid", w_mid, 300, 2, 0, 0, all, seed++);
    test_grouped(tb, "mid", w_mid, 40, 2, 3, 0, all, seed++);
  }
  // grouped_matmul at Qwen1.5-MoE-A2.7B
  if (full) {
    const int C = 2048, E = 60, K = 4, Im = 1408;
    Rng r(seed++);
    Experts gu(tb, E, 2 * Im, C, r);
    if (tb.f32) {
      test_grouped(tb, "qwen-gate_up", gu, 16, K, 0, 0, {0}, seed++);
    } else {
      test_grouped(tb, "qwen-gate_up", gu, 1, K, 0, 0, {0}, seed++);
      test_grouped(tb, "qwen-gate_up", gu, 16, K, 0, 0, {0, 2}, seed++);
      test_grouped(tb, "qwen-gate_up", gu, 64, K, 0, 0, {0, 1}, seed++);
      test_grouped(tb, "qwen-gate_up", gu, 64, K, 12, 5, {0}, seed++);
      test_grouped(tb, "qwen-gate_up", gu, 1000, K, 0, 0, {0}, seed++);
    }
  }
  if (full) {
    const int C = 2048, E = 60, K = 4, Im = 1408;
    Rng r(seed++);
    Experts dn(tb, E, C, Im, r);
    if (tb.f32) {
      test_grouped(tb, "qwen-down", dn, 16, K, 0, 0, {0}, seed++);
    } else {
      test_grouped(tb, "qwen-down", dn, 1, K, 0, 0, {0}, seed++);
      test_grouped(tb, "qwen-down", dn, 16, K, 0, 0, {0, 2}, seed++);
      test_grouped(tb, "qwen-down", dn, 64, K, 0, 0, {0, 1}, seed++);
      test_grouped(tb, "qwen-down", dn, 1000, K, 15, 0, {0}, seed++);
    }
  }
  // unpermute
  for (int T = 1; T <= 7; T += 2) test_unpermute(tb, T, 16, 8, 2, T % 3, seed++);
  test_unpermute(tb, 5, 21, 8, 2, 1, seed++);
  test_unpermute(tb, 64, 2048, 60, 4, 1, seed++);
  test_unpermute(tb, 1000, 2048, 60, 4, 0, seed++);
  test_unpermute(tb, 1000, 2048, 60, 4, 2, seed++);
  test_unpermute(tb, 33, 300, 256, 8, 1, seed++);
  // the chain, with graphs
  test_chain(tb, "tiny", 3, 16, 8, 4, 16, 2, seed++);  // the fixture's shape (count_tokens < T)
  test_chain(tb, "tiny", 7, 16, 4, 2, 16, 7, seed++);
  test_chain(tb, "small", 100, 64, 8, 2, 48, 97, seed++);
  if (full) {
    test_chain(tb, "qwen", 1, 2048, 60, 4, 1408, 1, seed++);
    if (!tb.f32) test_chain(tb, "qwen", 64, 2048, 60, 4, 1408, 61, seed++);
  }
}

}  // namespace

int main() {
  const Backend* cu = gpu_check::cuda_or_skip();
  if (!cu) return 0;
  const Backend* f = cuda_backend_f32();
  char dev[320] = "";
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
    std::snprintf(dev, sizeof dev, "%s (sm_%d%d)", prop.name, prop.major, prop.minor);
  std::printf("CUDA MoE ops on %s\n", dev);
  report("both tables have the MoE ops",
         cu->moe_route && cu->moe_permute && cu->grouped_matmul && cu->moe_unpermute && f && f->moe_route &&
             f->moe_permute && f->grouped_matmul && f->moe_unpermute && f->moe_permute != cu->moe_permute,
         "");
  run_table(Tab{cu, false, "bf16", 2e-2, 1e-2}, true);
  if (f) run_table(Tab{f, true, "f32", 1e-4, 1e-5}, true);
  return gpu_check::summary();
}
