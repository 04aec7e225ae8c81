// Backend::sample_rows on the GPU (SampleRowsParams in addon/backend/backend.h): one block per sampled row
// finishes it as sample_row (addon/engine/sampler.cc) does, so that no [V] row leaves the GPU.
//
// Per row, in order:
//  1. The sparse edits (penalties, min_new_tokens mask, logit_bias): the repetition / subtract / mask phases
//     in parallel (a token appears at most once per phase), a barrier between phases, then logit_bias by one
//     thread in list order (a token may repeat there). IEEE-rounded intrinsics, so that --use_fast_math's
//     approximate division and FMA contraction cannot change a value: bit-for-bit the CPU's edits.
//  2. x = logits * inv_temp (NaN as -inf, __fmul_rn), m = max x, e = float(exp(double(x - m))) (double exp:
//     --use_fast_math would make expf approximate; rounded from double it is what std::exp(float) gives up
//     to a double rounding), Z = Σ e in double.
//  3. Selection by rank without sorting the row. Ranks are "x descending, ties by lower id". A monotone
//     uint32 key of x (-0 folded onto +0) orders by x; radix_select finds, in 4 passes of 8-bit histograms
//     over the key (counts and masses per bin), the key of either the element of a given rank or the first
//     rank whose inclusive running mass exceeds a threshold; select_tie_id then names the element among the
//     ties of that key by id (a 4-pass radix over ids, or one min-reduction when the key is unique).
//     Masses are fixed point, q = round(e · 2^40) in uint64 (exact for e >= 2^-16, V < 2^23 keeps the sums in
//     range): integer atomics in shared memory are native, and integer sums do not depend on their order.
//  4. Greedy: the first index of m. Sampled: L = min(top_k, max(1, #{e >= min_p})); with top_p < 1 the nucleus
//     ends at the first rank whose inclusive mass exceeds top_p · Z (so Kp = that rank + 1); the kept set is
//     ranks < K = min(L, Kp), tot its mass, and the token the first kept rank whose inclusive mass exceeds
//     u · tot (else rank K - 1). With top_p >= 1 and L = V: the first id, in id order, whose running sum
//     exceeds u · Z (a scan over contiguous per-thread id ranges), as sample_row walks such rows.
//  5. Logprobs: x - m - log S with S = Z (greedy, top_p >= 1) or the nucleus's e summed in double; outside
//     the nucleus float32 min. Top-N: the rank N-1 element is selected, the N elements at or above it are
//     compacted into shared memory and each finds its place by counting the ones before it.
// Against the CPU reference the tokens agree except where a rounding difference of Z, a mass or expf moves a
// boundary (top_p · Z, u · tot, min_p), and logprobs agree to ~1e-6.
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>

#include "cuda_common.cuh"
#include "ops.h"

namespace sgl {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFull = 0xffffffffu;
typedef unsigned long long u64;

__device__ __forceinline__ float x_at(const float* l, int32_t i, float inv_t) {
  const float v = l[i];
  return isnan(v) ? -INFINITY : __fmul_rn(v, inv_t);
}
// Larger x <=> larger key; equal x <=> equal key (x is never NaN; -0 and +0 share a key).
__device__ __forceinline__ uint32_t key_of(float x) {
  const uint32_t b = __float_as_uint(x == 0.0f ? 0.0f : x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float e_of(float x, float m) { return float(exp(double(__fsub_rn(x, m)))); }
__device__ __forceinline__ u64 q_of(float e) { return __double2ull_rn(double(e) * 0x1p40); }
// floor(t) for t >= 0, saturating; 0 for t <= 0 (also NaN).
__device__ __forceinline__ u64 floor_u64(double t) {
  if (!(t > 0.0)) return 0;
  if (t >= 1.8e19) return ~0ull;
  return __double2ull_rd(t);
}

struct Shared {
  uint32_t cnt[256];
  u64 mass[256];
  alignas(8) unsigned char red[kWarps * 8];  // block_reduce's per-warp partials
  // radix_select's state, written by thread 0 between barriers
  uint32_t prefix, above, tie_count, found;
  u64 mass_above, rem, q;
  int32_t tok;
  // top-N compaction
  int32_t n_top;
  uint32_t top_key[kSampleMaxTopN];
  int32_t top_id[kSampleMaxTopN];
  u64 scan[kWarps];
};

// Every thread gets op over the block's values (the same value in every thread: one fixed order).
template <class T, class Op>
__device__ T block_reduce(T v, Op op, Shared& sh) {
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(kFull, v, off));
  T* part = reinterpret_cast<T*>(sh.red);
  __syncthreads();  // the previous reduction's readers are done with sh.red
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
  __syncthreads();
  T r = part[0];
  for (int w = 1; w < kWarps; ++w) r = op(r, part[w]);
  return r;
}
struct MaxF { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };
struct MinI { __device__ int32_t operator()(int32_t a, int32_t b) const { return a < b ? a : b; } };
struct MaxI { __device__ int32_t operator()(int32_t a, int32_t b) const { return a > b ? a : b; } };
struct AddD { __device__ double operator()(double a, double b) const { return a + b; } };
struct AddU { __device__ u64 operator()(u64 a, u64 b) const { return a + b; } };
struct AddI { __device__ uint32_t operator()(uint32_t a, uint32_t b) const { return a + b; } };

struct Row {
  const float* l;
  int32_t V;
  float inv_t, m;
};

// The selected element's key and where it sits: `above` elements (mass `mass_above`) have a larger key,
// `tie_count` share its key (each of mass q), and it is the tie_index-th of those by id.
struct Sel {
  bool found;
  uint32_t key, above, tie_count, tie_index;
  u64 mass_above, q;
  __device__ uint32_t rank() const { return above + tie_index; }
  __device__ u64 mass_through() const { return mass_above + u64(tie_index + 1) * q; }  // inclusive running mass
};

// by_mass false: the element of rank `target` (< V). by_mass true: the first rank whose inclusive running
// mass exceeds `target` (found false when the whole row's mass does not). with_mass false skips the masses
// (q, mass_above then 0; not allowed with by_mass).
__device__ Sel radix_select(const Row& row, bool by_mass, bool with_mass, u64 target, Shared& sh) {
  uint32_t prefix = 0, mask = 0, above = 0;
  u64 mass_above = 0, rem = target;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kThreads) sh.cnt[b] = 0, sh.mass[b] = 0;
    __syncthreads();
    for (int32_t i = threadIdx.x; i < row.V; i += kThreads) {
      const float x = x_at(row.l, i, row.inv_t);
      const uint32_t k = key_of(x);
      if ((k & mask) != prefix) continue;
      const uint32_t b = (k >> shift) & 0xffu;
      atomicAdd(&sh.cnt[b], 1u);
      if (with_mass) atomicAdd(&sh.mass[b], q_of(e_of(x, row.m)));
    }
    __syncthreads();
    if (threadIdx.x == 0) {  // the bin holding the target, scanning keys from the largest down
      uint32_t c = 0;
      u64 w = 0;
      int b = 255;
      for (; b >= 0; --b) {
        if (by_mass ? w + sh.mass[b] > rem : c + sh.cnt[b] > rem) break;
        c += sh.cnt[b];
        w += sh.mass[b];
      }
      sh.found = b >= 0;
      if (b >= 0) {
        sh.prefix = prefix | (uint32_t(b) << shift);
        sh.above = above + c;
        sh.mass_above = mass_above + w;
        sh.rem = rem - (by_mass ? w : u64(c));
        sh.tie_count = sh.cnt[b];
        sh.q = sh.cnt[b] ? sh.mass[b] / sh.cnt[b] : 0;  // one key: equal masses (exact)
      }
    }
    __syncthreads();
    Sel s{};
    if (!sh.found) return s;  // found false
    prefix = sh.prefix;
    mask |= 0xffu << shift;
    above = sh.above;
    mass_above = sh.mass_above;
    rem = sh.rem;
    if (shift == 0) {
      s.found = true;
      s.key = prefix;
      s.above = above;
      s.mass_above = mass_above;
      s.tie_count = sh.tie_count;
      s.q = sh.q;
      // by count: rem is the rank among the ties; by mass: ties add q each, rem < tie_count * q
      s.tie_index = by_mass ? uint32_t(rem / s.q) : uint32_t(rem);
      if (s.tie_index >= s.tie_count) s.tie_index = s.tie_count - 1;  // cannot happen; keeps it in range
      return s;
    }
  }
  return Sel{};
}

// The id of the tie_index-th (by id) element whose key is s.key.
__device__ int32_t select_tie_id(const Row& row, const Sel& s, Shared& sh) {
  if (s.tie_count == 1) {
    int32_t best = INT32_MAX;
    for (int32_t i = threadIdx.x; i < row.V; i += kThreads)
      if (key_of(x_at(row.l, i, row.inv_t)) == s.key) best = min(best, i);
    return block_reduce(best, MinI{}, sh);
  }
  uint32_t prefix = 0, mask = 0, rem = s.tie_index;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kThreads) sh.cnt[b] = 0;
    __syncthreads();
    for (int32_t i = threadIdx.x; i < row.V; i += kThreads) {
      if ((uint32_t(i) & mask) != prefix || key_of(x_at(row.l, i, row.inv_t)) != s.key) continue;
      atomicAdd(&sh.cnt[(uint32_t(i) >> shift) & 0xffu], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {  // ids ascending
      uint32_t c = 0;
      int b = 0;
      for (; b < 255; ++b) {
        if (c + sh.cnt[b] > rem) break;
        c += sh.cnt[b];
      }
      sh.prefix = prefix | (uint32_t(b) << shift);
      sh.rem = rem - c;
    }
    __syncthreads();
    prefix = sh.prefix;
    rem = uint32_t(sh.rem);
    mask |= 0xffu << shift;
  }
  return int32_t(prefix);
}

// Exclusive scan of one u64 per thread (thread order); every thread gets its own prefix.
__device__ u64 block_exclusive_scan(u64 v, Shared& sh) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  u64 inc = v;
  for (int off = 1; off < 32; off <<= 1) {
    const u64 o = __shfl_up_sync(kFull, inc, off);
    if (lane >= off) inc += o;
  }
  __syncthreads();
  if (lane == 31) sh.scan[warp] = inc;
  __syncthreads();
  u64 base = 0;
  for (int w = 0; w < warp; ++w) base += sh.scan[w];
  return base + inc - v;
}

__global__ void __launch_bounds__(kThreads) sample_rows_kernel(SampleRowsParams p) {
  __shared__ Shared sh;
  const int32_t r = blockIdx.x, V = p.V, tid = threadIdx.x;
  float* l = p.logits + size_t(p.rows[r]) * size_t(V);

  // 1. edits: repetition, subtract, mask in parallel phase by phase; logit_bias in order by one thread
  {
    const LogitEdit* ed = p.edits + p.edit_indptr[r];
    const int32_t n = p.edit_indptr[r + 1] - p.edit_indptr[r];
    for (int32_t op = kLogitEditRepetition; op <= kLogitEditMask; ++op) {
      for (int32_t j = tid; j < n; j += kThreads) {
        const LogitEdit e = ed[j];
        if (e.op != op) continue;
        float& v = l[e.token];
        if (op == kLogitEditRepetition) v = v > 0.0f ? __fdiv_rn(v, e.value) : __fmul_rn(v, e.value);
        else if (op == kLogitEditSubtract) v = __fsub_rn(v, e.value);
        else v = -INFINITY;
      }
      __syncthreads();
    }
    // the logit_bias edits are the list's tail (ops ascending): find where it starts, then one thread
    int32_t first_bias = n;
    for (int32_t j = tid; j < n; j += kThreads)
      if (ed[j].op == kLogitEditBias) first_bias = min(first_bias, j);
    first_bias = block_reduce(first_bias, MinI{}, sh);
    if (tid == 0)
      for (int32_t j = first_bias; j < n; ++j) l[ed[j].token] = __fadd_rn(l[ed[j].token], ed[j].value);
    __syncthreads();
  }

  // 2. max, Z, the min-p count
  Row row{l, V, p.inv_temp[r], 0.0f};
  float mx = -INFINITY;
  for (int32_t i = tid; i < V; i += kThreads) mx = fmaxf(mx, x_at(l, i, row.inv_t));
  const float m = block_reduce(mx, MaxF{}, sh);
  if (m == -INFINITY) {  // everything masked: sample_row's answer
    // (its greedy no-logprob fast path takes the first logit equal to -inf, NaN excluded; the other paths 0)
    int32_t first = INT32_MAX;
    if (p.top_k[r] == 1 && !(p.flags[r] & kSampleReturnLogprob))
      for (int32_t i = tid; i < V; i += kThreads)
        if (l[i] == -INFINITY) first = min(first, i);
    first = block_reduce(first, MinI{}, sh);
    if (tid == 0) p.token[r] = first == INT32_MAX ? 0 : first, p.logprob[r] = -FLT_MAX, p.status[r] = 1;
    return;
  }
  row.m = m;
  const float min_p = p.min_p[r];
  double z = 0.0;
  u64 zq = 0;
  uint32_t n_minp = 0;
  for (int32_t i = tid; i < V; i += kThreads) {
    const float e = e_of(x_at(l, i, row.inv_t), m);
    z += double(e);
    zq += q_of(e);
    n_minp += min_p > 0.0f && e >= min_p;
  }
  const double Z = block_reduce(z, AddD{}, sh);
  const u64 ZQ = block_reduce(zq, AddU{}, sh);
  const uint32_t C = block_reduce(n_minp, AddI{}, sh);

  const bool greedy = p.top_k[r] == 1;
  const bool want_lp = (p.flags[r] & kSampleReturnLogprob) != 0;
  const float top_p = p.top_p[r];
  const bool use_top_p = !greedy && double(top_p) < 1.0;

  // The top-p nucleus of the whole row: ranks < Kp; its last element (cut_key, cut_id) when Kp < V.
  uint32_t Kp = uint32_t(V), cut_key = 0;
  int32_t cut_id = -1;
  u64 mass_Kp = ZQ;
  if (use_top_p) {
    const Sel s = radix_select(row, true, true, floor_u64(double(top_p) * double(ZQ)), sh);
    if (s.found && s.rank() + 1 < uint32_t(V)) {
      Kp = s.rank() + 1;
      mass_Kp = s.mass_through();
      cut_key = s.key;
      cut_id = select_tie_id(row, s, sh);
    }
  }

  // 3. the token
  int32_t token;
  if (greedy) {
    int32_t first = INT32_MAX;
    for (int32_t i = tid; i < V; i += kThreads)
      if (x_at(l, i, row.inv_t) == m) first = min(first, i);
    token = block_reduce(first, MinI{}, sh);
  } else {
    uint32_t L = uint32_t(p.top_k[r]);
    if (min_p > 0.0f) L = min(L, max(C, 1u));
    const double u = p.u[r];
    if (!use_top_p && L == uint32_t(V)) {
      // id order: each thread a contiguous id range; the range where the running sum crosses u · Z walks it
      const u64 tgt = floor_u64(u * double(ZQ));
      const int32_t chunk = (V + kThreads - 1) / kThreads;
      const int32_t b0 = min(V, tid * chunk), b1 = min(V, b0 + chunk);
      u64 sum = 0;
      for (int32_t i = b0; i < b1; ++i) sum += q_of(e_of(x_at(l, i, row.inv_t), m));
      if (tid == 0) sh.tok = -1;
      const u64 start = block_exclusive_scan(sum, sh);  // its barriers also publish sh.tok = -1
      if (sum > 0 && start <= tgt && start + sum > tgt) {
        u64 acc = start;
        for (int32_t i = b0; i < b1; ++i) {
          const u64 q = q_of(e_of(x_at(l, i, row.inv_t), m));
          if (q == 0) continue;
          acc += q;
          if (acc > tgt) {
            sh.tok = i;
            break;
          }
        }
      }
      __syncthreads();
      token = sh.tok;
      if (token < 0) {  // the target past the end (rounding): the last id with a positive term
        int32_t last = -1;
        for (int32_t i = tid; i < V; i += kThreads)
          if (e_of(x_at(l, i, row.inv_t), m) > 0.0f) last = max(last, i);
        token = block_reduce(last, MaxI{}, sh);
      }
    } else {
      const uint32_t K = min(L, Kp);
      u64 tot;
      if (K == Kp) tot = mass_Kp;  // Kp = V gives ZQ
      else tot = radix_select(row, false, true, K - 1, sh).mass_through();
      const Sel s = radix_select(row, true, true, floor_u64(u * double(tot)), sh);
      if (s.found && s.rank() < K) {
        token = select_tie_id(row, s, sh);
      } else {  // rounding put the target past the kept set: its last rank
        const Sel last = radix_select(row, false, false, K - 1, sh);
        token = select_tie_id(row, last, sh);
      }
    }
  }

  // 4. logprobs
  const bool cut = use_top_p && Kp < uint32_t(V);
  double S = Z;
  if (cut) {
    double part = 0.0;
    for (int32_t i = tid; i < V; i += kThreads) {
      const float x = x_at(l, i, row.inv_t);
      const uint32_t k = key_of(x);
      if (k > cut_key || (k == cut_key && i <= cut_id)) part += double(e_of(x, m));
    }
    S = block_reduce(part, AddD{}, sh);
  }
  const double logS = log(S);
  auto lp_of = [&](int32_t t) -> float {
    if (t < 0 || t >= V) return -FLT_MAX;
    const float x = x_at(l, t, row.inv_t);
    if (cut) {
      const uint32_t k = key_of(x);
      if (!(k > cut_key || (k == cut_key && t <= cut_id))) return -FLT_MAX;
    }
    const float v = float(double(__fsub_rn(x, m)) - logS);
    return greedy ? v : fmaxf(v, -FLT_MAX);
  };
  if (tid == 0) p.token[r] = token, p.logprob[r] = lp_of(token), p.status[r] = 0;
  if (!want_lp) return;

  const int32_t N = min(min(p.top_n[r], kSampleMaxTopN), V);
  if (N > 0) {
    const Sel s = radix_select(row, false, false, uint32_t(N - 1), sh);
    const int32_t id_n = select_tie_id(row, s, sh);  // ends with a barrier
    if (tid == 0) sh.n_top = 0;
    __syncthreads();
    for (int32_t i = tid; i < V; i += kThreads) {
      const uint32_t k = key_of(x_at(l, i, row.inv_t));
      if (k > s.key || (k == s.key && i <= id_n)) {
        const int32_t slot = atomicAdd(&sh.n_top, 1);
        if (slot < kSampleMaxTopN) sh.top_key[slot] = k, sh.top_id[slot] = i;
      }
    }
    __syncthreads();
    const int32_t n = min(sh.n_top, N);  // exactly N by construction
    if (tid < n) {
      const uint32_t k = sh.top_key[tid];
      const int32_t id = sh.top_id[tid];
      int32_t rank = 0;
      for (int32_t j = 0; j < n; ++j)
        rank += sh.top_key[j] > k || (sh.top_key[j] == k && sh.top_id[j] < id);
      p.top_ids[size_t(r) * kSampleMaxTopN + rank] = id;
      p.top_lps[size_t(r) * kSampleMaxTopN + rank] = lp_of(id);
    }
  }
  const int32_t i0 = p.ids_indptr[r], i1 = p.ids_indptr[r + 1];
  for (int32_t j = i0 + tid; j < i1; j += kThreads) p.ids_lps[j] = lp_of(p.ids[j]);
}

}  // namespace

void sample_rows_cuda(const SampleRowsParams& p) {
  if (p.R <= 0) return;
  sample_rows_kernel<<<p.R, kThreads, 0, sgl_stream()>>>(p);
  SGL_CUDA_LAUNCH_CHECK();
}

}  // namespace sgl
