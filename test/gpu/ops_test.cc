// GPU parity harness for the CUDA backend (cuda/): every op of sgl::cuda_backend() except attention
// against sgl::cpu_backend() (f32, host) on fresh random inputs with fixed seeds. Inputs are rounded to
// bf16 first and the CPU gets the f32 values of those bf16s; CUDA outputs are poisoned first (bf16 0xFFFF,
// f32 NaN) so unwritten elements fail. A check passes when ||out - ref|| / ||ref|| is under its tolerance
// with nothing non-finite (bit equality for the data-movement ops and the weight conversions). Also: the
// upload/download/memset/to_f32 plumbing, place_weight from f32/f16/bf16 (including weights larger than
// one staging chunk), logits_argmax, and a CUDA-graph capture of a few ops replayed against eager runs.
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
#include "cuda_common.cuh"
#include "gpu_check.h"

using namespace sgl;
using gpu_check::fmt;
using gpu_check::guarded;
using gpu_check::report;
using gpu_check::Rng;

namespace {

const Backend* CU = nullptr;
const Backend* CPU = nullptr;
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// A bf16 tensor on the host: its bits and the f32 value of each.
struct Bf16 {
  std::vector<uint16_t> bits;
  std::vector<float> f;
};

Bf16 rand_bf16(size_t n, Rng& r, float lo = -1.0f, float hi = 1.0f) {
  Bf16 t{std::vector<uint16_t>(n), std::vector<float>(n)};
  for (size_t i = 0; i < n; i++) {
    t.bits[i] = f32_to_bf16(r.uni(lo, hi));
    t.f[i] = bf16_to_f32(t.bits[i]);
  }
  return t;
}

std::vector<float> to_floats(const std::vector<uint16_t>& bits) {
  std::vector<float> f(bits.size());
  for (size_t i = 0; i < bits.size(); i++) f[i] = bf16_to_f32(bits[i]);
  return f;
}

// A device allocation of the CUDA backend, freed on scope exit.
struct Dev {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Dev(size_t b) : bytes(b) {
    p = CU->alloc(b);
    if (!p) throw std::runtime_error(fmt("CUDA alloc of %zu bytes failed", b));
  }
  ~Dev() { CU->free(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(p); }
};

template <class T>
void upload(void* dst, const std::vector<T>& v) { CU->upload(dst, v.data(), v.size() * sizeof(T)); }

template <class T>
std::vector<T> download(const void* src, size_t n) {
  std::vector<T> v(n);
  CU->download(v.data(), src, n * sizeof(T));
  return v;
}

void poison_bf16(void* d, size_t n) { upload(d, std::vector<uint16_t>(n, 0xFFFF)); }
void poison_f32(void* d, size_t n) { upload(d, std::vector<float>(n, kNaN)); }

// A placed (device, bf16) copy of host bf16 bits; released on scope exit.
struct Placed {
  WeightRef w;
  explicit Placed(const std::vector<uint16_t>& bits) { w = CU->place_weight({bits.data(), DType::BF16}, bits.size()); }
  ~Placed() { CU->release_weight(w); }
  Placed(const Placed&) = delete;
  Placed& operator=(const Placed&) = delete;
};

struct RelErr {
  double rel = 0.0;
  size_t nonfinite = 0;
};

RelErr rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0.0, den = 0.0;
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    if (!std::isfinite(got[i])) {
      bad++;
      continue;
    }
    double d = double(got[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return {den > 0 ? std::sqrt(num / den) : std::sqrt(num), bad};
}

void check_rel(const std::string& name, const std::vector<float>& got, const std::vector<float>& ref, double tol) {
  RelErr e = rel_err(got, ref);
  report(name, e.nonfinite == 0 && e.rel < tol && got.size() == ref.size(),
         fmt("(n=%zu rel=%.3g tol=%.0e nonfinite=%zu)", ref.size(), e.rel, tol, e.nonfinite));
}

template <class T>
void check_exact(const std::string& name, const std::vector<T>& got, const std::vector<T>& want) {
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < want.size(); i++)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) {
      if (!bad) first = i;
      bad++;
    }
  std::string detail = bad ? fmt("(%zu/%zu differ, first #%zu got 0x%llx want 0x%llx)", bad, want.size(), first,
                                 (unsigned long long)got[first], (unsigned long long)want[first])
                           : fmt("(n=%zu identical)", want.size());
  report(name, bad == 0, detail);
}

// CPU outputs (f32) as the bf16 bits they round to (exact for values that are bf16 already).
std::vector<uint16_t> to_bf16_bits(const std::vector<float>& f) {
  std::vector<uint16_t> b(f.size());
  for (size_t i = 0; i < f.size(); i++) b[i] = f32_to_bf16(f[i]);
  return b;
}

const int kTs[] = {1, 3, 17, 300};
const int kCs[] = {16, 37, 64, 100, 896, 4096};  // 37, 100: not multiples of 8 (narrower vector paths)

// ---- plumbing ---------------------------------------------------------------------------------------------

void test_plumbing() {
  Rng r(1);
  guarded("upload/download", [&] {
    const size_t n = 1000003;  // odd byte count
    std::vector<uint8_t> h(n);
    for (auto& b : h) b = uint8_t(r.next());
    Dev d(n);
    upload(d.p, h);
    check_exact("upload/download round trip", download<uint8_t>(d.p, n), h);
    // memset_zero of an interior range leaves the rest alone.
    CU->memset_zero(d.as<uint8_t>() + 1001, 500001);
    std::vector<uint8_t> want = h;
    std::fill(want.begin() + 1001, want.begin() + 1001 + 500001, uint8_t(0));
    check_exact("memset_zero (interior range)", download<uint8_t>(d.p, n), want);
    CU->sync();
  });
  guarded("to_f32", [&] {
    // Every bf16 bit pattern (NaNs, infinities, subnormals) then random values: an exact widening.
    std::vector<uint16_t> bits(65536 + 12345);
    for (size_t i = 0; i < bits.size(); i++) bits[i] = i < 65536 ? uint16_t(i) : uint16_t(r.next());
    Dev d(bits.size() * 2);
    upload(d.p, bits);
    std::vector<float> got(bits.size(), kNaN);
    CU->to_f32(d.p, got.data(), bits.size());
    std::vector<uint32_t> gb(bits.size()), wb(bits.size());
    for (size_t i = 0; i < bits.size(); i++) {
      std::memcpy(&gb[i], &got[i], 4);
      wb[i] = uint32_t(bits[i]) << 16;
    }
    check_exact("to_f32 (all bf16 patterns + random)", gb, wb);
  });
}

// ---- place_weight -----------------------------------------------------------------------------------------

void check_placed(const std::string& name, const WeightRef& host, size_t n, const std::vector<uint16_t>& want) {
  WeightRef w = CU->place_weight(host, n);
  bool ok_ref = w.data != nullptr && w.dtype == DType::BF16;
  if (!ok_ref) {
    report(name, false, "(place_weight returned null or a non-bf16 dtype)");
    CU->release_weight(w);
    return;
  }
  std::vector<uint16_t> got = download<uint16_t>(w.data, n);
  CU->release_weight(w);
  check_exact(name, got, want);
}

void test_place_weight() {
  Rng r(2);
  const float specials[] = {0.0f, -0.0f, kInf, -kInf, kNaN, 1e-40f, -1e-42f, 3.4028235e38f, -3.4e38f,
                            1.0f + 1.0f / 256, 1.0f + 3.0f / 256, 1.00390625f, 65504.0f, 5.96e-8f};
  guarded("place_weight bf16", [&] {
    std::vector<uint16_t> bits(65536 + 777);
    for (size_t i = 0; i < bits.size(); i++) bits[i] = i < 65536 ? uint16_t(i) : uint16_t(r.next());
    check_placed("place_weight bf16 (all patterns, identical bits)", {bits.data(), DType::BF16}, bits.size(), bits);
  });
  guarded("place_weight f32", [&] {
    std::vector<float> f(100001);
    for (size_t i = 0; i < f.size(); i++) {
      if (i < sizeof specials / sizeof specials[0]) {
        f[i] = specials[i];
      } else {
        uint32_t u = uint32_t(r.next());  // any bit pattern: every exponent, ties, NaNs
        std::memcpy(&f[i], &u, 4);
      }
    }
    std::vector<uint16_t> want(f.size());
    for (size_t i = 0; i < f.size(); i++) want[i] = f32_to_bf16(f[i]);
    check_placed("place_weight f32 (round to nearest even)", {f.data(), DType::F32}, f.size(), want);
  });
  guarded("place_weight f16", [&] {
    std::vector<uint16_t> h(65536 + 1001);
    for (size_t i = 0; i < h.size(); i++) h[i] = i < 65536 ? uint16_t(i) : uint16_t(r.next());
    std::vector<uint16_t> want(h.size());
    for (size_t i = 0; i < h.size(); i++) want[i] = f32_to_bf16(f16_to_f32(h[i]));
    check_placed("place_weight f16 (all patterns)", {h.data(), DType::F16}, h.size(), want);
  });
  guarded("place_weight small", [&] {
    std::vector<float> f = {1.5f, -2.25f, 3.0f};
    check_placed("place_weight f32 (3 elements)", {f.data(), DType::F32}, 3, to_bf16_bits(f));
    WeightRef z = CU->place_weight({f.data(), DType::F32}, 0);
    report("place_weight (0 elements)", z.data != nullptr && z.dtype == DType::BF16, "");
    CU->release_weight(z);
    WeightRef absent = CU->place_weight(WeightRef{}, 10);
    report("place_weight (absent stays absent)", absent.data == nullptr, "");
  });
  // Larger than one 64 MiB staging chunk, with a ragged last chunk.
  guarded("place_weight f32 100 MiB", [&] {
    const size_t n = (size_t(100) << 20) / 4 + 3;
    std::vector<float> f(n);
    for (auto& x : f) x = r.uni(-4.0f, 4.0f);
    std::vector<uint16_t> want(n);
    for (size_t i = 0; i < n; i++) want[i] = f32_to_bf16(f[i]);
    check_placed("place_weight f32 100 MiB (2 chunks)", {f.data(), DType::F32}, n, want);
  });
  guarded("place_weight bf16 150 MiB", [&] {
    const size_t n = (size_t(150) << 20) / 2 + 1;
    std::vector<uint16_t> b(n);
    for (auto& x : b) x = uint16_t(r.next());
    check_placed("place_weight bf16 150 MiB (3 chunks)", {b.data(), DType::BF16}, n, b);
  });
  guarded("place_weight f16 100 MiB", [&] {
    const size_t n = (size_t(100) << 20) / 2 + 5;
    std::vector<uint16_t> h(n);
    for (auto& x : h) x = uint16_t(r.next());
    std::vector<uint16_t> want(n);
    for (size_t i = 0; i < n; i++) want[i] = f32_to_bf16(f16_to_f32(h[i]));
    check_placed("place_weight f16 100 MiB (2 chunks)", {h.data(), DType::F16}, n, want);
  });
}

// ---- data movement: embed, gather_rows, kv_store (bit-exact) ------------------------------------------------

void test_embed_gather() {
  Rng r(3);
  for (int C : kCs)
    for (int T : kTs) {
      std::string name = fmt("embed T=%d C=%d", T, C);
      guarded(name, [&] {
        const int V = 1000;
        Bf16 table = rand_bf16(size_t(V) * C, r);
        std::vector<int32_t> ids(T);
        for (auto& i : ids) i = r.range(0, V - 1);
        ids[0] = V - 1;
        std::vector<float> ref(size_t(T) * C);
        CPU->embed({ids.data(), {table.f.data(), DType::F32}, ref.data(), T, C});
        Placed w(table.bits);
        Dev d_ids(ids.size() * 4), d_out(size_t(T) * C * 2);
        upload(d_ids.p, ids);
        poison_bf16(d_out.p, size_t(T) * C);
        CU->embed({d_ids.as<int32_t>(), w.w, d_out.p, T, C});
        check_exact(name, download<uint16_t>(d_out.p, size_t(T) * C), to_bf16_bits(ref));
      });
    }
  for (int C : kCs)
    for (int R : kTs) {
      std::string name = fmt("gather_rows R=%d C=%d", R, C);
      guarded(name, [&] {
        const int T = 300;
        Bf16 src = rand_bf16(size_t(T) * C, r);
        std::vector<int32_t> rows(R);
        for (auto& i : rows) i = r.range(0, T - 1);
        rows[R - 1] = T - 1;
        std::vector<float> ref(size_t(R) * C);
        CPU->gather_rows({src.f.data(), rows.data(), ref.data(), R, C});
        Dev d_src(src.bits.size() * 2), d_rows(rows.size() * 4), d_dst(size_t(R) * C * 2);
        upload(d_src.p, src.bits);
        upload(d_rows.p, rows);
        poison_bf16(d_dst.p, size_t(R) * C);
        CU->gather_rows({d_src.p, d_rows.as<int32_t>(), d_dst.p, R, C});
        check_exact(name, download<uint16_t>(d_dst.p, size_t(R) * C), to_bf16_bits(ref));
      });
    }
}

void test_kv_store() {
  Rng r(4);
  struct HD {
    int Hkv, D;
  };
  const HD shapes[] = {{1, 8}, {2, 64}, {8, 128}, {3, 10}};
  for (HD s : shapes)
    for (int T : kTs) {
      std::string name = fmt("kv_store T=%d Hkv=%d D=%d", T, s.Hkv, s.D);
      guarded(name, [&] {
        const int P = 16, pages = (2 * T + P - 1) / P + 1;
        const size_t row = size_t(s.Hkv) * s.D, cache_n = size_t(pages) * P * row;
        Bf16 k = rand_bf16(size_t(T) * row, r), v = rand_bf16(size_t(T) * row, r);
        Bf16 kc = rand_bf16(cache_n, r), vc = rand_bf16(cache_n, r);  // what is not written must stay
        std::vector<int32_t> all(size_t(pages) * P);
        std::iota(all.begin(), all.end(), 0);
        for (size_t i = all.size() - 1; i > 0; i--) std::swap(all[i], all[size_t(r.next() % (i + 1))]);
        std::vector<int32_t> slots(all.begin(), all.begin() + T);
        if (T >= 3) slots[1] = -1;  // a padding token is skipped
        std::vector<float> ref_k = kc.f, ref_v = vc.f;
        CPU->kv_store({k.f.data(), v.f.data(), ref_k.data(), ref_v.data(), slots.data(), T, s.Hkv, s.D});
        Dev dk(k.bits.size() * 2), dv(v.bits.size() * 2), dkc(cache_n * 2), dvc(cache_n * 2), ds(slots.size() * 4);
        upload(dk.p, k.bits);
        upload(dv.p, v.bits);
        upload(dkc.p, kc.bits);
        upload(dvc.p, vc.bits);
        upload(ds.p, slots);
        CU->kv_store({dk.p, dv.p, dkc.p, dvc.p, ds.as<int32_t>(), T, s.Hkv, s.D});
        std::vector<uint16_t> got = download<uint16_t>(dkc.p, cache_n), gv = download<uint16_t>(dvc.p, cache_n);
        got.insert(got.end(), gv.begin(), gv.end());
        std::vector<uint16_t> want = to_bf16_bits(ref_k), wv = to_bf16_bits(ref_v);
        want.insert(want.end(), wv.begin(), wv.end());
        check_exact(name, got, want);
      });
    }
}

// ---- rms_norm -----------------------------------------------------------------------------------------------

void test_rms_norm() {
  Rng r(5);
  for (int with_res = 0; with_res < 2; with_res++)
    for (int alias = 0; alias < 2; alias++)
      for (int C : kCs)
        for (int T : kTs) {
          std::string name = fmt("rms_norm T=%d C=%d%s%s", T, C, with_res ? " +residual" : "", alias ? " out=x" : "");
          guarded(name, [&] {
            const size_t n = size_t(T) * C;
            const float eps = 1e-6f;
            Bf16 x = rand_bf16(n, r, -2.0f, 2.0f), res = rand_bf16(n, r, -2.0f, 2.0f);
            Bf16 w = rand_bf16(size_t(C), r, 0.5f, 1.5f);
            // CPU: same aliasing as the GPU call.
            std::vector<float> cx = x.f, cres = res.f, cout(n);
            float* cpu_out = alias ? cx.data() : cout.data();
            CPU->rms_norm({cx.data(), with_res ? cres.data() : nullptr, cpu_out, {w.f.data(), DType::F32}, T, C, eps});
            std::vector<float> ref(cpu_out, cpu_out + n);
            Placed pw(w.bits);
            Dev dx(n * 2), dres(n * 2), dout(n * 2);
            upload(dx.p, x.bits);
            upload(dres.p, res.bits);
            poison_bf16(dout.p, n);
            void* out = alias ? dx.p : dout.p;
            CU->rms_norm({dx.p, with_res ? dres.p : nullptr, out, pw.w, T, C, eps});
            std::vector<float> got = to_floats(download<uint16_t>(out, n));
            RelErr e = rel_err(got, ref);
            RelErr er;
            if (with_res) er = rel_err(to_floats(download<uint16_t>(dres.p, n)), cres);
            const double tol = 1e-2;
            bool ok = e.nonfinite == 0 && e.rel < tol && er.nonfinite == 0 && er.rel < tol;
            report(name, ok, fmt("(n=%zu rel=%.3g residual rel=%.3g tol=%.0e nonfinite=%zu)", n, e.rel, er.rel, tol,
                                 e.nonfinite + er.nonfinite));
          });
        }
}

// ---- rope ---------------------------------------------------------------------------------------------------

std::vector<float> inv_freq_for(int D, double base) {
  std::vector<float> f(size_t(D / 2));
  for (int i = 0; i < D / 2; i++) f[size_t(i)] = float(std::pow(base, -2.0 * i / D));
  return f;
}

void test_rope() {
  Rng r(6);
  struct S {
    int H, Hkv, D;
  };
  const S shapes[] = {{4, 2, 8}, {14, 2, 64}, {8, 1, 128}, {3, 1, 10}, {5, 5, 64}};
  for (S s : shapes)
    for (int T : kTs) {
      std::string name = fmt("rope T=%d H=%d Hkv=%d D=%d", T, s.H, s.Hkv, s.D);
      guarded(name, [&] {
        const size_t nq = size_t(T) * s.H * s.D, nk = size_t(T) * s.Hkv * s.D;
        Bf16 q = rand_bf16(nq, r), k = rand_bf16(nk, r);
        std::vector<int32_t> pos(T);
        for (auto& p : pos) p = r.range(0, 131071);  // long-context positions
        pos[0] = T > 1 ? 0 : 131071;
        if (T > 2) pos[1] = 131071;
        std::vector<float> inv = inv_freq_for(s.D, 1e6);
        std::vector<float> cq = q.f, ck = k.f;
        CPU->rope({cq.data(), ck.data(), pos.data(), inv.data(), T, s.H, s.Hkv, s.D});
        Dev dq(nq * 2), dk(nk * 2), dp(pos.size() * 4), di(inv.size() * 4);
        upload(dq.p, q.bits);
        upload(dk.p, k.bits);
        upload(dp.p, pos);
        upload(di.p, inv);
        CU->rope({dq.p, dk.p, dp.as<int32_t>(), di.as<float>(), T, s.H, s.Hkv, s.D});
        std::vector<float> got = to_floats(download<uint16_t>(dq.p, nq)), gk = to_floats(download<uint16_t>(dk.p, nk));
        got.insert(got.end(), gk.begin(), gk.end());
        cq.insert(cq.end(), ck.begin(), ck.end());
        check_rel(name, got, cq, 1e-2);
      });
    }
}

// ---- silu_mul -----------------------------------------------------------------------------------------------

void test_silu_mul() {
  Rng r(7);
  const int Is[] = {16, 37, 896, 4864};
  for (int alias = 0; alias < 2; alias++)
    for (int I : Is)
      for (int T : kTs) {
        std::string name = fmt("silu_mul T=%d I=%d%s", T, I, alias ? " out=gate" : "");
        guarded(name, [&] {
          const size_t n = size_t(T) * I;
          Bf16 g = rand_bf16(n, r, -8.0f, 8.0f), u = rand_bf16(n, r, -2.0f, 2.0f);
          std::vector<float> ref(n);
          CPU->silu_mul({g.f.data(), u.f.data(), ref.data(), T, I});
          Dev dg(n * 2), du(n * 2), dout(n * 2);
          upload(dg.p, g.bits);
          upload(du.p, u.bits);
          poison_bf16(dout.p, n);
          void* out = alias ? dg.p : dout.p;
          CU->silu_mul({dg.p, du.p, out, T, I});
          check_rel(name, to_floats(download<uint16_t>(out, n)), ref, 1e-2);
        });
      }
}

// silu_mul on a fused gate|up output: rows [T, 2I] (gate then up, ld = 2I), out contiguous [T, I]. I = 37 and
// a start one element off 16 bytes take the scalar kernel; the others the 16-byte one.
void test_silu_mul_strided() {
  Rng r(8);
  const int Is[] = {37, 896, 8960};
  for (int offset = 0; offset < 2; offset++)
    for (int I : Is)
      for (int T : kTs) {
        std::string name = fmt("silu_mul strided T=%d I=%d%s", T, I, offset ? " gate+1" : "");
        guarded(name, [&] {
          const size_t n = size_t(T) * I, ld = size_t(2) * I;
          Bf16 gu = rand_bf16(size_t(T) * ld + offset, r, -8.0f, 8.0f);
          std::vector<float> g(n), u(n), ref(n);
          for (size_t t = 0; t < size_t(T); t++)
            for (size_t i = 0; i < size_t(I); i++) {
              g[t * I + i] = gu.f[offset + t * ld + i];
              u[t * I + i] = gu.f[offset + t * ld + I + i];
            }
          CPU->silu_mul({g.data(), u.data(), ref.data(), T, I});
          Dev dgu(gu.bits.size() * 2), dout(n * 2);
          upload(dgu.p, gu.bits);
          poison_bf16(dout.p, n);
          const uint16_t* base = static_cast<const uint16_t*>(dgu.p) + offset;
          CU->silu_mul({base, base + I, dout.p, T, I, int32_t(ld)});
          check_rel(name, to_floats(download<uint16_t>(dout.p, n)), ref, 1e-2);
        });
      }
}

// ---- matmul -------------------------------------------------------------------------------------------------

struct MatmulCase {
  int T, K, N;
  bool bias, y_f32;
  int x_offset = 0, bias_offset = 0;  // elements: misaligned pointers
};

void run_matmul(const MatmulCase& c, Rng& r) {
  std::string name = fmt("matmul T=%d K=%d N=%d%s%s%s%s", c.T, c.K, c.N, c.bias ? " +bias" : "",
                         c.y_f32 ? " y_f32" : "", c.x_offset ? " x+1" : "", c.bias_offset ? " bias+1" : "");
  guarded(name, [&] {
    const float ws = 1.0f / std::sqrt(float(c.K));
    Bf16 x = rand_bf16(size_t(c.T) * c.K, r);
    Bf16 w = rand_bf16(size_t(c.N) * c.K, r, -ws, ws);
    Bf16 b = rand_bf16(size_t(c.N) + c.bias_offset, r, -0.5f, 0.5f);
    const size_t ny = size_t(c.T) * c.N;
    std::vector<float> ref(ny);
    // The CPU reads the same bf16 weight bits (its bf16 path is exact), x as f32 values.
    WeightRef cb = c.bias ? WeightRef{b.bits.data() + c.bias_offset, DType::BF16} : WeightRef{};
    CPU->matmul({x.f.data(), {w.bits.data(), DType::BF16}, cb, ref.data(), c.T, c.K, c.N});
    Placed pw(w.bits), pb(b.bits);
    Dev dx((x.bits.size() + c.x_offset) * 2), dy(ny * (c.y_f32 ? 4 : 2));
    CU->upload(dx.as<uint16_t>() + c.x_offset, x.bits.data(), x.bits.size() * 2);
    if (c.y_f32)
      poison_f32(dy.p, ny);
    else
      poison_bf16(dy.p, ny);
    WeightRef gb = c.bias ? WeightRef{static_cast<const uint16_t*>(pb.w.data) + c.bias_offset, DType::BF16} : WeightRef{};
    MatmulParams p{dx.as<uint16_t>() + c.x_offset, pw.w, gb, dy.p, c.T, c.K, c.N};
    p.y_f32 = c.y_f32;
    CU->matmul(p);
    std::vector<float> got = c.y_f32 ? download<float>(dy.p, ny) : to_floats(download<uint16_t>(dy.p, ny));
    check_rel(name, got, ref, c.y_f32 ? 1e-2 : 2e-2);
  });
}

void test_matmul() {
  Rng r(8);
  const int dims[] = {16, 64, 896, 4864};
  for (int K : dims)
    for (int N : dims)
      for (int T : kTs)
        for (int bias = 0; bias < 2; bias++)
          for (int f32 = 0; f32 < 2; f32++) run_matmul({T, K, N, bias != 0, f32 != 0}, r);
  // Qwen2.5-0.5B's fused-width QKV projection (896 + 2 * 128 outputs).
  for (int T : kTs) run_matmul({T, 896, 1152, true, false}, r);
  // The lm_head: a 151936-row vocabulary, f32 logits.
  run_matmul({4, 896, 151936, false, true}, r);
  run_matmul({4, 896, 151936, true, true}, r);
  // Odd sizes and loosely aligned pointers (cuBLASLt plans keyed by alignment, or the fallback kernel).
  run_matmul({5, 17, 33, true, false}, r);
  run_matmul({5, 17, 33, true, true}, r);
  run_matmul({17, 896, 896, true, false, 1, 0}, r);
  run_matmul({17, 896, 896, true, false, 0, 1}, r);
  run_matmul({3, 64, 100, true, true, 1, 1}, r);
}

// matmul_add (y += x · Wᵀ + bias in place: the prefill o_proj / down_proj into the residual stream) against
// the CPU's matmul plus the old y, in f32; each case twice, so the second call runs the tuned plan (the first
// times the candidates on the call's own y, which must come back untouched).
void test_matmul_add() {
  Rng r(10);
  struct AddCase { int T, K, N; bool bias; };
  const AddCase cases[] = {{500, 1536, 1536, false}, {500, 8960, 1536, false}, {64, 896, 896, true}, {3, 64, 128, true},
                           {1000, 896, 896, false}, {17, 64, 100, true}};
  for (const AddCase& c : cases)
    for (int rep = 0; rep < 2; rep++) {
      std::string name = fmt("matmul_add T=%d K=%d N=%d%s #%d", c.T, c.K, c.N, c.bias ? " +bias" : "", rep);
      guarded(name, [&] {
        const float ws = 1.0f / std::sqrt(float(c.K));
        Bf16 x = rand_bf16(size_t(c.T) * c.K, r);
        Bf16 w = rand_bf16(size_t(c.N) * c.K, r, -ws, ws);
        Bf16 b = rand_bf16(size_t(c.N), r, -0.5f, 0.5f);
        const size_t ny = size_t(c.T) * c.N;
        Bf16 y0 = rand_bf16(ny, r, -4.0f, 4.0f);
        std::vector<float> ref(ny);
        WeightRef cb = c.bias ? WeightRef{b.bits.data(), DType::BF16} : WeightRef{};
        CPU->matmul({x.f.data(), {w.bits.data(), DType::BF16}, cb, ref.data(), c.T, c.K, c.N});
        for (size_t i = 0; i < ny; i++) ref[i] += y0.f[i];
        Placed pw(w.bits), pb(b.bits);
        Dev dx(x.bits.size() * 2), dy(ny * 2);
        upload(dx.p, x.bits);
        upload(dy.p, y0.bits);
        WeightRef gb = c.bias ? pb.w : WeightRef{};
        if (!CU->matmul_add || !CU->matmul_add({dx.p, pw.w, gb, dy.p, c.T, c.K, c.N})) {
          gpu_check::report(name, false, "matmul_add declined");
          return;
        }
        check_rel(name, to_floats(download<uint16_t>(dy.p, ny)), ref, 2e-2);
      });
    }
}

// ---- logits_argmax ------------------------------------------------------------------------------------------

void test_logits_argmax() {
  Rng r(9);
  const int Vs[] = {1000, 151936};
  for (int V : Vs) {
    std::string name = fmt("logits_argmax R=6 V=%d", V);
    guarded(name, [&] {
      const int R = 6;
      std::vector<float> lg(size_t(R) * V);
      for (auto& x : lg) x = r.uni(-20.0f, 20.0f);
      float* row = lg.data();
      row[7] = 30.0f;  // row 0: a tie, the first index wins
      row[V - 3] = 30.0f;
      row = lg.data() + V;  // row 1: NaNs never chosen
      row[0] = kNaN;
      row[V / 2] = kNaN;
      row[V - 1] = 25.0f;
      row = lg.data() + 2 * size_t(V);  // row 2: nothing above -inf
      for (int i = 0; i < V; i++) row[i] = i % 3 ? -kInf : kNaN;
      row = lg.data() + 3 * size_t(V);  // row 3: -inf entries
      for (int i = 0; i < V; i += 2) row[i] = -kInf;
      // rows 4, 5: plain random
      std::vector<int32_t> ref_tok(R);
      std::vector<float> ref_lp(R);
      CPU->logits_argmax({lg.data(), ref_tok.data(), ref_lp.data(), R, V});
      Dev dl(lg.size() * 4), dt(size_t(R) * 4), dlp(size_t(R) * 4);
      upload(dl.p, lg);
      upload(dt.p, std::vector<int32_t>(R, -7));
      poison_f32(dlp.p, R);
      CU->logits_argmax({dl.as<float>(), dt.as<int32_t>(), dlp.as<float>(), R, V});
      std::vector<int32_t> tok = download<int32_t>(dt.p, R);
      std::vector<float> lp = download<float>(dlp.p, R);
      bool ok = tok == ref_tok;
      double worst = 0.0;
      for (int i = 0; i < R; i++) {
        double d = std::fabs(double(lp[i]) - double(ref_lp[i]));
        double tol = 1e-5 + 1e-5 * std::fabs(double(ref_lp[i]));
        if (!(d <= tol)) ok = false;
        worst = std::max(worst, std::isnan(d) ? INFINITY : d / tol);
      }
      report(name, ok, fmt("(tokens %s, worst logprob err/tol %.3f)", tok == ref_tok ? "equal" : "DIFFER", worst));
    });
  }
}

// ---- CUDA graph capture -------------------------------------------------------------------------------------
// rms_norm (+residual) -> matmul (+bias) -> silu_mul -> matmul (f32 out) captured through the table's graph
// hooks, replayed on new inputs, against the same ops run eagerly on those inputs.

void test_graph_capture() {
  guarded("graph capture", [&] {
    Rng r(10);
    const int T = 8, C = 896, I = 4864, V = 1000;
    Bf16 wn = rand_bf16(size_t(C), r, 0.5f, 1.5f);
    Bf16 wup = rand_bf16(size_t(I) * C, r, -0.05f, 0.05f), bup = rand_bf16(size_t(I), r, -0.5f, 0.5f);
    Bf16 whead = rand_bf16(size_t(V) * I, r, -0.02f, 0.02f);
    Placed pn(wn.bits), pup(wup.bits), pbup(bup.bits), phead(whead.bits);
    Dev dx(size_t(T) * C * 2), dres(size_t(T) * C * 2), dh(size_t(T) * I * 2), dy(size_t(T) * V * 4);
    auto step = [&] {
      CU->rms_norm({dx.p, dres.p, dx.p, pn.w, T, C, 1e-6f});
      CU->matmul({dx.p, pup.w, pbup.w, dh.p, T, C, I});
      CU->silu_mul({dh.p, dh.p, dh.p, T, I});
      MatmulParams mp{dh.p, phead.w, WeightRef{}, dy.p, T, I, V};
      mp.y_f32 = true;
      CU->matmul(mp);
    };
    Bf16 x = rand_bf16(size_t(T) * C, r), res = rand_bf16(size_t(T) * C, r);
    auto load_inputs = [&] {
      upload(dx.p, x.bits);
      upload(dres.p, res.bits);
      poison_f32(dy.p, size_t(T) * V);
      CU->sync();
    };
    load_inputs();
    step();  // warm-up: cuBLASLt plans are made outside the capture
    std::vector<float> eager = download<float>(dy.p, size_t(T) * V);

    if (!CU->graph_begin || !CU->graph_end || !CU->graph_launch || !CU->graph_free) {
      report("graph capture", false, "(graph hooks missing from the table)");
      return;
    }
    CU->graph_begin();
    try {
      step();
    } catch (...) {
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(sgl_stream(), &g);
      if (g) cudaGraphDestroy(g);
      throw;
    }
    void* exec = CU->graph_end();
    load_inputs();
    CU->graph_launch(exec);
    CU->sync();
    std::vector<float> replay = download<float>(dy.p, size_t(T) * V);
    // Once more on other inputs: the graph reads the buffers, not what they held at capture.
    x = rand_bf16(size_t(T) * C, r);
    load_inputs();
    step();
    std::vector<float> eager2 = download<float>(dy.p, size_t(T) * V);
    load_inputs();
    CU->graph_launch(exec);
    std::vector<float> replay2 = download<float>(dy.p, size_t(T) * V);
    CU->graph_free(exec);
    check_rel("graph capture: replay vs eager", replay, eager, 1e-3);
    check_rel("graph capture: replay vs eager (new inputs)", replay2, eager2, 1e-3);
  });
}

}  // namespace

int main() {
  CU = gpu_check::cuda_or_skip();
  if (!CU) return 0;
  CPU = &cpu_backend();
  char dev[320] = "";
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
    std::snprintf(dev, sizeof dev, "%s (sm_%d%d)", prop.name, prop.major, prop.minor);
  std::printf("CUDA backend \"%s\" on %s\n", CU->name, dev);
  report("backend table", std::strcmp(CU->name, "cuda") == 0 && CU->act_dtype == DType::BF16, "");

  test_plumbing();
  test_place_weight();
  test_embed_gather();
  test_kv_store();
  test_rms_norm();
  test_rope();
  test_silu_mul();
  test_silu_mul_strided();
  test_matmul();
  test_matmul_add();
  test_logits_argmax();
  test_graph_capture();

  return gpu_check::summary();
}
