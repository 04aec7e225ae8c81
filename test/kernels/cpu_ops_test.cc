// Standalone test of the CPU backend ops (no Node): every op of sgl::cpu_backend(), under every ISA this
// machine supports, against plain double-precision references written here. Outputs are pre-filled with
// NaN so unwritten elements fail. Prints one line per check, then informational timings (GEMV / GEMM /
// memcpy bandwidth; skipped with --no-timings), and ends with "N passed, M failed"; exits non-zero on any
// failure.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cpu/cpu_features.h"
#include "cpu/mem_bandwidth.h"
#include "cpu/thread_pool.h"

using namespace sgl;

namespace {

int g_passed = 0, g_failed = 0;
std::mt19937 g_rng(1234);
const float kNaN = std::numeric_limits<float>::quiet_NaN();

float urand(float lo = -1.0f, float hi = 1.0f) { return std::uniform_real_distribution<float>(lo, hi)(g_rng); }
int irand(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g_rng); }

std::vector<float> rand_vec(size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(n);
  for (auto& x : v) x = urand(lo, hi);
  return v;
}

void report(const std::string& name, bool ok, const std::string& detail) {
  std::printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.empty() ? "" : " ", detail.c_str());
  (ok ? g_passed : g_failed)++;
}

// got[i] vs ref[i] within atol + rtol * scale[i] (scale: magnitude of the terms summed, or |ref|).
void compare(const std::string& name, const float* got, const std::vector<double>& ref,
             const std::vector<double>& scale, double rtol, double atol) {
  double worst = 0.0;
  size_t bad = 0, first_bad = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    double err = std::fabs(double(got[i]) - ref[i]);
    double allowed = atol + rtol * scale[i];
    if (!(err <= allowed)) {  // NaN fails too
      if (!bad) first_bad = i;
      bad++;
    }
    double ratio = allowed > 0 ? err / allowed : (err > 0 ? INFINITY : 0.0);
    worst = std::max(worst, std::isnan(err) ? INFINITY : ratio);
  }
  char buf[160];
  if (bad)
    std::snprintf(buf, sizeof buf, "(%zu/%zu bad, first #%zu got %.7g want %.7g)", bad, ref.size(), first_bad,
                  double(got[first_bad]), ref[first_bad]);
  else
    std::snprintf(buf, sizeof buf, "(n=%zu, worst err/tol %.3f)", ref.size(), worst);
  report(name, bad == 0, buf);
}

std::vector<double> abs_of(const std::vector<double>& v) {
  std::vector<double> a(v.size());
  for (size_t i = 0; i < v.size(); i++) a[i] = std::fabs(v[i]);
  return a;
}

// ---- weights in a stored dtype, decoded here independently of the backend's converters ------------------

struct TestWeight {
  DType dtype;
  std::vector<uint8_t> bytes;  // as stored
  std::vector<double> value;   // exact value of each stored element
  WeightRef ref() const { return WeightRef{bytes.data(), dtype}; }
};

double decode_f16(uint16_t h) {
  int sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
  double v = exp == 0 ? std::ldexp(double(man), -24) : std::ldexp(double(1024 + man), exp - 25);
  return sign ? -v : v;
}

// n random elements of roughly [-1, 1] (f16 also gets some subnormals).
TestWeight make_weight(DType dt, size_t n) {
  TestWeight w{dt, {}, std::vector<double>(n)};
  w.bytes.resize(n * (dt == DType::F32 ? 4 : 2));
  for (size_t i = 0; i < n; i++) {
    float f = urand();
    if (dt == DType::F32) {
      std::memcpy(w.bytes.data() + 4 * i, &f, 4);
      w.value[i] = f;
    } else if (dt == DType::BF16) {
      uint32_t u;
      std::memcpy(&u, &f, 4);
      uint16_t h = uint16_t(u >> 16);  // truncation: any bf16 pattern is a valid weight
      std::memcpy(w.bytes.data() + 2 * i, &h, 2);
      uint32_t back = uint32_t(h) << 16;
      float g;
      std::memcpy(&g, &back, 4);
      w.value[i] = g;
    } else {
      int exp = irand(0, 40) == 0 ? 0 : irand(8, 15);  // 1/41 subnormal, else 2^-7 .. 1
      uint16_t h = uint16_t((irand(0, 1) << 15) | (exp << 10) | irand(0, 1023));
      std::memcpy(w.bytes.data() + 2 * i, &h, 2);
      w.value[i] = decode_f16(h);
    }
  }
  return w;
}

const DType kWeightTypes[] = {DType::F32, DType::BF16, DType::F16};

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

const Backend& B() { return cpu_backend(); }

// ---- matmul -----------------------------------------------------------------------------------------------

struct MatmulCase {
  int T, K, N;
  bool bias;
  DType dt;
  std::vector<float> x;
  TestWeight w, b;
  std::vector<double> ref, scale;
};

MatmulCase make_matmul(int T, int K, int N, bool bias, DType dt) {
  MatmulCase c{T, K, N, bias, dt, rand_vec(size_t(T) * K), make_weight(dt, size_t(N) * K),
               make_weight(dt, bias ? size_t(N) : 0), {}, {}};
  c.ref.assign(size_t(T) * N, 0.0);
  c.scale.assign(size_t(T) * N, 0.0);
  for (int t = 0; t < T; t++)
    for (int n = 0; n < N; n++) {
      double s = 0, a = 0;
      for (int k = 0; k < K; k++) {
        double term = double(c.x[size_t(t) * K + k]) * c.w.value[size_t(n) * K + k];
        s += term;
        a += std::fabs(term);
      }
      if (bias) s += c.b.value[size_t(n)], a += std::fabs(c.b.value[size_t(n)]);
      c.ref[size_t(t) * N + n] = s;
      c.scale[size_t(t) * N + n] = a;
    }
  return c;
}

void run_matmul(const MatmulCase& c, const std::string& tag) {
  std::vector<float> y(size_t(c.T) * c.N, kNaN);
  MatmulParams p{c.x.data(), c.w.ref(), c.bias ? c.b.ref() : WeightRef{}, y.data(), c.T, c.K, c.N};
  B().matmul(p);
  compare(fmt("%s matmul %s T=%d K=%d N=%d%s", tag.c_str(), dtype_name(c.dt), c.T, c.K, c.N, c.bias ? " +bias" : ""),
          y.data(), c.ref, c.scale, 1e-5, 1e-6);
}

// ---- attention --------------------------------------------------------------------------------------------

struct AttnCase {
  int H = 0, Hkv = 0, D = 0, P = 0;
  bool causal = true;
  std::vector<int32_t> q_lens, kv_lens, qo_indptr, kv_indptr, pages;
  int T = 0, num_pages = 0;
  std::vector<float> q, kc, vc;
  std::vector<double> ref;
};

AttnCase make_attention(int H, int Hkv, int D, int P, bool causal, std::vector<int32_t> q_lens,
                        std::vector<int32_t> kv_lens) {
  AttnCase c;
  c.H = H, c.Hkv = Hkv, c.D = D, c.P = P, c.causal = causal;
  c.q_lens = q_lens, c.kv_lens = kv_lens, c.qo_indptr = {0}, c.kv_indptr = {0};
  const int nb = int(q_lens.size());
  int total_pages = 0;
  for (int b = 0; b < nb; b++) {
    c.qo_indptr.push_back(c.qo_indptr.back() + q_lens[b]);
    int np = (kv_lens[b] + P - 1) / P;
    c.kv_indptr.push_back(c.kv_indptr.back() + np);
    total_pages += np;
  }
  c.T = c.qo_indptr.back();
  c.num_pages = total_pages + 3;  // a few pages nobody owns
  std::vector<int32_t> ids(static_cast<size_t>(c.num_pages));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), g_rng);
  c.pages.assign(ids.begin(), ids.begin() + total_pages);
  c.q = rand_vec(size_t(c.T) * H * D);
  c.kc = rand_vec(size_t(c.num_pages) * P * Hkv * D, -2.0f, 2.0f);
  c.vc = rand_vec(size_t(c.num_pages) * P * Hkv * D);
  const double scale = 1.0 / std::sqrt(double(D));
  c.ref.assign(size_t(c.T) * H * D, 0.0);
  for (int b = 0; b < nb; b++) {
    for (int i = 0; i < q_lens[b]; i++) {
      const int t = c.qo_indptr[b] + i;
      const int pos = kv_lens[b] - q_lens[b] + i;
      const int nk = causal ? pos + 1 : kv_lens[b];
      for (int h = 0; h < H; h++) {
        const int kvh = h / (H / Hkv);
        std::vector<double> s(static_cast<size_t>(nk));
        double m = -INFINITY;
        for (int j = 0; j < nk; j++) {
          int page = c.pages[size_t(c.kv_indptr[b] + j / P)];
          const float* kr = &c.kc[((size_t(page) * P + j % P) * Hkv + kvh) * D];
          double d = 0;
          for (int e = 0; e < D; e++) d += double(c.q[(size_t(t) * H + h) * D + e]) * kr[e];
          s[size_t(j)] = d * scale;
          m = std::max(m, s[size_t(j)]);
        }
        double l = 0;
        for (auto& v : s) l += (v = std::exp(v - m));
        for (int j = 0; j < nk; j++) {
          int page = c.pages[size_t(c.kv_indptr[b] + j / P)];
          const float* vr = &c.vc[((size_t(page) * P + j % P) * Hkv + kvh) * D];
          for (int e = 0; e < D; e++) c.ref[(size_t(t) * H + h) * D + e] += s[size_t(j)] / l * vr[e];
        }
      }
    }
  }
  return c;
}

void run_attention(const AttnCase& c, const std::string& tag) {
  std::vector<float> out(c.ref.size(), kNaN);
  AttentionParams p{};
  p.q = c.q.data();
  p.k_cache = c.kc.data();
  p.v_cache = c.vc.data();
  p.out = out.data();
  p.qo_indptr = c.qo_indptr.data();
  p.kv_indptr = c.kv_indptr.data();
  p.kv_page_indices = c.pages.data();
  p.kv_lens = c.kv_lens.data();
  p.B = int(c.q_lens.size());
  p.T = c.T;
  p.H = c.H;
  p.Hkv = c.Hkv;
  p.D = c.D;
  p.P = c.P;
  p.scale = 1.0f / std::sqrt(float(c.D));
  p.causal = c.causal;
  B().attention(p);
  std::string lens;
  for (size_t b = 0; b < c.q_lens.size(); b++) lens += fmt(" %d/%d", c.q_lens[b], c.kv_lens[b]);
  compare(fmt("%s attention%s H=%d Hkv=%d D=%d P=%d q/kv:%s", tag.c_str(), c.causal ? "" : " non-causal", c.H, c.Hkv,
              c.D, c.P, lens.c_str()),
          out.data(), c.ref, std::vector<double>(c.ref.size(), 1.0), 1e-5, 1e-6);
}

// ---- silu_mul ---------------------------------------------------------------------------------------------

void test_silu_mul(const std::string& tag) {
  for (auto [T, I] : {std::pair<int, int>{1, 7}, {1, 4864}, {3, 100}, {17, 33}, {64, 1000}}) {
    size_t n = size_t(T) * I;
    std::vector<float> g = rand_vec(n, -12.0f, 12.0f), u = rand_vec(n), out(n, kNaN);
    g[0] = -100.0f;
    if (n > 1) g[1] = 100.0f;
    if (n > 2) g[2] = 0.0f;
    std::vector<double> ref(n);
    for (size_t i = 0; i < n; i++) ref[i] = double(g[i]) / (1.0 + std::exp(-double(g[i]))) * u[i];
    B().silu_mul(SiluMulParams{g.data(), u.data(), out.data(), T, I});
    compare(fmt("%s silu_mul T=%d I=%d", tag.c_str(), T, I), out.data(), ref, abs_of(ref), 1e-5, 1e-7);
  }
}

// ---- ISA-independent ops ----------------------------------------------------------------------------------

void test_embed() {
  for (DType dt : kWeightTypes) {
    for (auto [V, C, T] : {std::tuple<int, int, int>{50, 16, 1}, {100, 33, 7}, {1000, 896, 40}}) {
      TestWeight table = make_weight(dt, size_t(V) * C);
      std::vector<int32_t> ids(static_cast<size_t>(T));
      for (auto& id : ids) id = irand(0, V - 1);
      std::vector<float> out(size_t(T) * C, kNaN);
      B().embed(EmbedParams{ids.data(), table.ref(), out.data(), T, C});
      std::vector<double> ref(out.size());
      for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++) ref[size_t(t) * C + c] = table.value[size_t(ids[size_t(t)]) * C + c];
      compare(fmt("embed %s V=%d C=%d T=%d", dtype_name(dt), V, C, T), out.data(), ref,
              std::vector<double>(ref.size(), 0.0), 0.0, 0.0);
    }
  }
}

void test_rms_norm() {
  for (DType dt : kWeightTypes) {
    for (auto [T, C] : {std::pair<int, int>{1, 16}, {3, 33}, {5, 896}, {64, 1000}}) {
      for (int mode = 0; mode < 3; mode++) {  // 0: plain, 1: with residual, 2: plain in place (out == x)
        const float eps = 1e-6f;
        size_t n = size_t(T) * C;
        std::vector<float> x = rand_vec(n, -3.0f, 3.0f), res = rand_vec(n, -3.0f, 3.0f), out(n, kNaN);
        TestWeight w = make_weight(dt, size_t(C));
        std::vector<double> ref(n), ref_res(n);
        for (int t = 0; t < T; t++) {
          double ss = 0;
          for (int c = 0; c < C; c++) {
            size_t i = size_t(t) * C + c;
            float src = mode == 1 ? res[i] + x[i] : x[i];  // residual += x is an f32 add
            ref_res[i] = src;
            ss += double(src) * src;
          }
          double inv = 1.0 / std::sqrt(ss / C + eps);
          for (int c = 0; c < C; c++) {
            size_t i = size_t(t) * C + c;
            ref[i] = ref_res[i] * inv * w.value[size_t(c)];
          }
        }
        float* dst = mode == 2 ? x.data() : out.data();
        B().rms_norm(RmsNormParams{x.data(), mode == 1 ? res.data() : nullptr, dst, w.ref(), T, C, eps});
        const char* what = mode == 0 ? "" : mode == 1 ? " +residual" : " in-place";
        compare(fmt("rms_norm %s T=%d C=%d%s", dtype_name(dt), T, C, what), dst, ref, abs_of(ref), 1e-5, 1e-6);
        if (mode == 1)
          compare(fmt("rms_norm %s T=%d C=%d residual sum", dtype_name(dt), T, C), res.data(), ref_res,
                  std::vector<double>(n, 0.0), 0.0, 0.0);
      }
    }
  }
}

void test_layer_norm_gelu() {
  for (DType dt : kWeightTypes) {
    for (auto [T, C] : {std::pair<int, int>{1, 16}, {3, 33}, {5, 1024}}) {
      for (int mode = 0; mode < 3; mode++) {  // 0: plain, 1: + residual, 2: in place
        size_t n = size_t(T) * C;
        std::vector<float> x = rand_vec(n, -3.0f, 3.0f), res = rand_vec(n, -3.0f, 3.0f), out(n, kNaN);
        for (auto& v : x) v += 2.0f;  // a mean away from 0
        TestWeight w = make_weight(dt, size_t(C)), b = make_weight(dt, size_t(C));
        std::vector<double> ref(n);
        for (int t = 0; t < T; t++) {
          double mean = 0, var = 0;
          std::vector<double> row(static_cast<size_t>(C));
          for (int c = 0; c < C; c++) {
            size_t i = size_t(t) * C + c;
            row[size_t(c)] = double(mode == 1 ? x[i] + res[i] : x[i]);
            mean += row[size_t(c)];
          }
          mean /= C;
          for (int c = 0; c < C; c++) var += (row[size_t(c)] - mean) * (row[size_t(c)] - mean);
          double inv = 1.0 / std::sqrt(var / C + 1e-5);
          for (int c = 0; c < C; c++) ref[size_t(t) * C + c] = (row[size_t(c)] - mean) * inv * w.value[size_t(c)] + b.value[size_t(c)];
        }
        float* dst = mode == 2 ? x.data() : out.data();
        B().layer_norm(LayerNormParams{x.data(), mode == 1 ? res.data() : nullptr, dst, w.ref(), b.ref(), T, C, 1e-5f});
        const char* what = mode == 0 ? "" : mode == 1 ? " +residual" : " in-place";
        compare(fmt("layer_norm %s T=%d C=%d%s", dtype_name(dt), T, C, what), dst, ref, abs_of(ref), 1e-5, 1e-5);
      }
    }
  }
  for (bool tanh_approx : {false, true}) {
    std::vector<float> x = rand_vec(5000, -8.0f, 8.0f), out(5000, kNaN);
    std::vector<double> ref(x.size());
    for (size_t i = 0; i < x.size(); i++) {
      double v = x[i];
      ref[i] = tanh_approx ? 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)))
                           : 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
    }
    B().gelu(GeluParams{x.data(), out.data(), int64_t(x.size()), tanh_approx});
    compare(fmt("gelu %s", tanh_approx ? "tanh" : "erf"), out.data(), ref, abs_of(ref), 1e-5, 1e-6);
  }
}

void test_rope() {
  for (auto [T, H, Hkv, D] :
       {std::tuple<int, int, int, int>{1, 2, 1, 8}, {5, 14, 2, 64}, {33, 8, 4, 128}, {3, 3, 3, 6}}) {
    std::vector<float> inv_freq(static_cast<size_t>(D / 2));
    for (int i = 0; i < D / 2; i++) inv_freq[size_t(i)] = float(1.0 / std::pow(1e6, 2.0 * i / D));
    std::vector<int32_t> pos(static_cast<size_t>(T));
    for (auto& p : pos) p = irand(0, 32767);
    pos[0] = T > 1 ? 0 : 32767;
    std::vector<float> q = rand_vec(size_t(T) * H * D), k = rand_vec(size_t(T) * Hkv * D);
    auto ref_of = [&](const std::vector<float>& x, int heads, std::vector<double>& ref, std::vector<double>& scale) {
      ref.assign(x.size(), 0.0);
      scale.assign(x.size(), 0.0);
      for (int t = 0; t < T; t++)
        for (int h = 0; h < heads; h++)
          for (int i = 0; i < D / 2; i++) {
            size_t a = (size_t(t) * heads + h) * D + i, b = a + D / 2;
            double ang = double(float(pos[size_t(t)]) * inv_freq[size_t(i)]);  // HF: f32 product
            double c = std::cos(ang), s = std::sin(ang);
            ref[a] = x[a] * c - x[b] * s;
            ref[b] = x[b] * c + x[a] * s;
            scale[a] = scale[b] = std::fabs(x[a]) + std::fabs(x[b]);
          }
    };
    std::vector<double> rq, sq, rk, sk;
    ref_of(q, H, rq, sq);
    ref_of(k, Hkv, rk, sk);
    B().rope(RopeParams{q.data(), k.data(), pos.data(), inv_freq.data(), T, H, Hkv, D});
    compare(fmt("rope q T=%d H=%d D=%d", T, H, D), q.data(), rq, sq, 1e-5, 1e-6);
    compare(fmt("rope k T=%d Hkv=%d D=%d", T, Hkv, D), k.data(), rk, sk, 1e-5, 1e-6);
  }
  // Informational: how far a double-precision angle would drift from HF's f32 one at large positions.
  double worst = 0;
  for (int p = 30000; p < 32768; p += 7) {
    float inv = 1.0f;
    double fa = double(float(p) * inv), da = double(p) * double(inv);
    worst = std::max(worst, std::fabs(std::cos(fa) - std::cos(da)));
    inv = float(1.0 / std::pow(1e6, 2.0 / 64));
    fa = double(float(p) * inv), da = double(p) * double(inv);
    worst = std::max(worst, std::fabs(std::cos(fa) - std::cos(da)));
  }
  std::printf("info rope: max |cos(f32 angle) - cos(f64 angle)| for positions 30000..32767 = %.3g\n", worst);
}

void test_kv_store() {
  for (auto [T, Hkv, D, P, pages] :
       {std::tuple<int, int, int, int, int>{1, 1, 8, 1, 4}, {5, 2, 64, 4, 6}, {20, 4, 16, 16, 3}}) {
    size_t row = size_t(Hkv) * D, cache_n = size_t(pages) * P * row;
    std::vector<float> k = rand_vec(size_t(T) * row), v = rand_vec(size_t(T) * row);
    std::vector<float> kc(cache_n, -7.0f), vc(cache_n, -7.0f);
    std::vector<int32_t> all(size_t(pages) * P);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), g_rng);
    std::vector<int32_t> slots(all.begin(), all.begin() + T);
    if (T > 2) slots[1] = -1;  // padding token: skipped
    std::vector<double> rk(cache_n, -7.0), rv(cache_n, -7.0);
    for (int t = 0; t < T; t++) {
      if (slots[size_t(t)] < 0) continue;
      for (size_t e = 0; e < row; e++) {
        rk[size_t(slots[size_t(t)]) * row + e] = k[size_t(t) * row + e];
        rv[size_t(slots[size_t(t)]) * row + e] = v[size_t(t) * row + e];
      }
    }
    B().kv_store(KvStoreParams{k.data(), v.data(), kc.data(), vc.data(), slots.data(), T, Hkv, D});
    std::vector<double> zero(cache_n, 0.0);
    compare(fmt("kv_store k T=%d Hkv=%d D=%d P=%d", T, Hkv, D, P), kc.data(), rk, zero, 0.0, 0.0);
    compare(fmt("kv_store v T=%d Hkv=%d D=%d P=%d", T, Hkv, D, P), vc.data(), rv, zero, 0.0, 0.0);
  }
}

void test_gather_and_copy() {
  for (auto [T, C, R] : {std::tuple<int, int, int>{1, 16, 1}, {9, 33, 4}, {64, 896, 64}}) {
    std::vector<float> src = rand_vec(size_t(T) * C), dst(size_t(R) * C, kNaN);
    std::vector<int32_t> rows(static_cast<size_t>(R));
    for (auto& r : rows) r = irand(0, T - 1);
    rows.back() = T - 1;
    B().gather_rows(GatherRowsParams{src.data(), rows.data(), dst.data(), R, C});
    std::vector<double> ref(dst.size());
    for (int r = 0; r < R; r++)
      for (int c = 0; c < C; c++) ref[size_t(r) * C + c] = src[size_t(rows[size_t(r)]) * C + c];
    compare(fmt("gather_rows T=%d C=%d R=%d", T, C, R), dst.data(), ref, std::vector<double>(ref.size(), 0.0), 0.0,
            0.0);
  }
  std::vector<float> src = rand_vec(1001), dst(1001, kNaN);
  B().to_f32(src.data(), dst.data(), src.size());
  std::vector<double> ref(src.begin(), src.end());
  compare("to_f32 n=1001", dst.data(), ref, std::vector<double>(ref.size(), 0.0), 0.0, 0.0);
}

void test_memory() {
  const Backend& b = B();
  bool ok = std::strcmp(b.name, "cpu") == 0 && b.act_dtype == DType::F32;
  for (size_t n : {size_t(1), size_t(100), size_t(1) << 20}) {
    auto* p = static_cast<uint8_t*>(b.alloc(n));
    ok = ok && p && (reinterpret_cast<uintptr_t>(p) % 64) == 0;
    std::vector<uint8_t> h(n, 0x5a), back(n, 0);
    b.upload(p, h.data(), n);
    b.download(back.data(), p, n);
    ok = ok && back == h;
    b.memset_zero(p, n);
    b.download(back.data(), p, n);
    ok = ok && std::all_of(back.begin(), back.end(), [](uint8_t v) { return v == 0; });
    b.sync();
    b.free(p);
  }
  report("backend table / alloc (64-byte aligned) / upload / download / memset_zero", ok, "");
}

// ---- thread pool ------------------------------------------------------------------------------------------

void test_thread_pool() {
  ThreadPool& pool = cpu_pool();
  for (int64_t n : {1, 2, 3, 7, 1000}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    const int reps = 2000;
    bool chunks_ok = true;
    for (int r = 0; r < reps; r++) {
      pool.parallel_for(n, [&](int64_t b, int64_t e) {
        if (!(0 <= b && b < e && e <= n)) chunks_ok = false;
        for (int64_t i = b; i < e; i++) hits[size_t(i)].fetch_add(1);
      });
      pool.parallel_for_dynamic(n, [&](int64_t i) { hits[size_t(i)].fetch_add(1); });
    }
    bool ok = chunks_ok;
    for (auto& h : hits) ok = ok && h.load() == 2 * reps;
    report(fmt("thread_pool parallel_for + parallel_for_dynamic n=%lld x%d: every index exactly once", (long long)n,
               reps),
           ok, "");
  }
  // A parallel region opened inside a job runs inline instead of deadlocking.
  std::atomic<int64_t> inner{0};
  pool.parallel_for(4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) pool.parallel_for(10, [&](int64_t b2, int64_t e2) { inner += e2 - b2; });
  });
  report("thread_pool nested parallel_for runs inline", inner.load() == 40, "");
  auto t0 = std::chrono::steady_clock::now();
  const int calls = 20000;
  for (int i = 0; i < calls; i++) pool.run([](int, int) {});
  double us = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e6 / calls;
  std::printf("info thread_pool: %.2f us per empty run() on %d threads\n", us, pool.num_threads());
}

// ---- timings (informational) -------------------------------------------------------------------------------

template <class F>
double seconds_per_call(F&& f, double min_seconds) {
  f();  // warm-up
  int iters = 0;
  auto t0 = std::chrono::steady_clock::now();
  double s = 0;
  do {
    f();
    iters++;
    s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (s < min_seconds);
  return s / iters;
}

void timings() {
  std::printf("info timings: isa=%s threads=%d\n", cpu_isa_name(cpu_isa()), cpu_threads());
  const int K = 896, N = 4864;
  std::vector<uint16_t> w(size_t(N) * K);
  for (auto& e : w) e = uint16_t(0x3c00 + irand(0, 255));  // bf16 ~ [0.0078, 0.0156): values don't matter
  std::vector<float> x = rand_vec(size_t(512) * K), y(size_t(512) * N);
  const double wbytes = double(w.size()) * 2;

  // Cache-resident GEMV (8.7 MB of bf16 fits this CPU's L3).
  MatmulParams gv{x.data(), WeightRef{w.data(), DType::BF16}, WeightRef{}, y.data(), 1, K, N};
  double s = seconds_per_call([&] { B().matmul(gv); }, 0.5);
  std::printf("info gemv bf16 T=1 K=%d N=%d (weights cache-resident): %.1f us, %.1f GB/s, %.2f GFLOP/s\n", K, N,
              s * 1e6, wbytes / s / 1e9, 2.0 * K * N / s / 1e9);

  // DRAM-streaming GEMV: cycle through 32 distinct copies (280 MB) like a decode step walks the layers.
  const int copies = 32;
  std::vector<uint16_t> big(w.size() * copies);
  for (int c = 0; c < copies; c++) std::memcpy(big.data() + w.size() * c, w.data(), w.size() * 2);
  s = seconds_per_call([&] {
    for (int c = 0; c < copies; c++) {
      MatmulParams p = gv;
      p.w.data = big.data() + w.size() * c;
      B().matmul(p);
    }
  }, 1.0) / copies;
  double gemv_gbs = wbytes / s / 1e9;
  double memcpy_gbs = cpu_memcpy_bandwidth_gbs(size_t(256) << 20, 8);
  std::printf("info gemv bf16 T=1 K=%d N=%d streaming %d MB from DRAM: %.1f us, %.1f GB/s of weights\n", K, N,
              int(wbytes * copies / 1e6), s * 1e6, gemv_gbs);
  std::printf("info cpu_memcpy_bandwidth_gbs(256 MiB) = %.1f GB/s (bytes copied); streaming gemv = %.0f%% of it\n",
              memcpy_gbs, 100.0 * gemv_gbs / memcpy_gbs);

  MatmulParams gm{x.data(), WeightRef{w.data(), DType::BF16}, WeightRef{}, y.data(), 512, K, N};
  s = seconds_per_call([&] { B().matmul(gm); }, 1.0);
  std::printf("info gemm bf16 T=512 K=%d N=%d: %.2f ms, %.1f GFLOP/s\n", K, N, s * 1e3, 2.0 * 512 * K * N / s / 1e9);
}

}  // namespace

int main(int argc, char** argv) {
  bool with_timings = !(argc > 1 && std::strcmp(argv[1], "--no-timings") == 0);
  std::printf("cpu_ops_test: max isa %s, %d threads\n", cpu_isa_name(cpu_max_isa()), cpu_threads());

  test_memory();
  test_thread_pool();
  test_embed();
  test_rms_norm();
  test_layer_norm_gelu();
  test_rope();
  test_kv_store();
  test_gather_and_copy();

  // Matmul cases and their references are built once and run under every ISA.
  std::vector<MatmulCase> mm;
  for (DType dt : kWeightTypes)
    for (int T : {1, 2, 3, 5, 8, 17, 64})
      for (int K : {16, 64, 200, 203, 896})
        for (int N : {1, 7, 64, 300})
          for (bool bias : {false, true}) mm.push_back(make_matmul(T, K, N, bias, dt));
  std::vector<AttnCase> at;
  for (int P : {1, 4, 16})
    for (auto [H, Hkv] : {std::pair<int, int>{8, 4}, {2, 1}, {14, 2}})
      for (int D : {8, 64})
        // decode (1 of 37), chunked prefill (5 of 21), full prefill (13 of 13)
        at.push_back(make_attention(H, Hkv, D, P, true, {1, 5, 13}, {37, 21, 13}));
  at.push_back(make_attention(14, 2, 64, 16, true, {1, 1, 1}, {1, 100, 300}));
  at.push_back(make_attention(8, 2, 24, 4, true, {1, 5, 13}, {37, 21, 13}));  // D not a multiple of 16
  // Long decodes: few (token, KV head) tasks, so keys are split across threads and merged (one split of
  // the 1-key sequence is empty).
  at.push_back(make_attention(2, 1, 64, 16, true, {1, 1}, {1, 600}));
  at.push_back(make_attention(14, 2, 64, 4, true, {1, 1}, {1000, 37}));
  at.push_back(make_attention(4, 2, 64, 4, false, {3, 2, 1}, {3, 9, 30}));

  const CpuIsa isas[] = {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512};
  for (CpuIsa isa : isas) {
    if (int(isa) > int(cpu_max_isa())) {
      std::printf("skip %s (not supported here)\n", cpu_isa_name(isa));
      continue;
    }
    set_cpu_isa(isa);
    std::string tag = std::string("[") + cpu_isa_name(isa) + "]";
    for (const auto& c : mm) run_matmul(c, tag);
    for (const auto& c : at) run_attention(c, tag);
    test_silu_mul(tag);
  }
  set_cpu_isa(cpu_max_isa());

  // Other thread counts (odd splits, more threads than rows).
  const int default_threads = cpu_threads();
  for (int n : {1, 3}) {
    set_cpu_threads(n);
    std::string tag = fmt("[%s threads=%d]", cpu_isa_name(cpu_isa()), n);
    for (const auto& c : mm)
      if (c.K == 200 && c.dt == DType::BF16 && c.bias && (c.T == 1 || c.T == 5 || c.T == 64)) run_matmul(c, tag);
    run_attention(at[at.size() - 2], tag);
    run_attention(at[at.size() - 3], tag);
    test_silu_mul(tag);
    if (n == 3) test_thread_pool();
  }
  set_cpu_threads(default_threads);

  if (with_timings) timings();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
