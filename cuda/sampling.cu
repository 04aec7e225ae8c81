// Backend::sample_rows on the GPU (SampleRowsParams in addon/backend/backend.h): each sampled row finished as
// sample_row (addon/engine/sampler.cc) finishes it, where the logits are, so that no [V] row leaves the GPU.
//
// Three kernels, run for groups of at most kSampleRowsPerGroup rows over one scratch (SampleRowsParams::
// scratch, sample_rows_scratch_bytes). The first two cut each row into fixed chunks of kChunk ids, one block
// per (row, chunk), so that a few rows still fill the GPU; the third takes one block per row. Every sum is
// either an integer sum (order-free) or a double sum in an order fixed by the chunking, so no result depends
// on R, on the other rows or on scheduling.
//  1. edits_max_kernel: the row's sparse edits that fall in the chunk (penalties, min_new_tokens mask,
//     logit_bias): the repetition / subtract / mask phases in parallel (a token appears at most once per
//     phase), a barrier between phases, then logit_bias by one thread in list order (a token may repeat
//     there). IEEE-rounded intrinsics, so that --use_fast_math's approximate division and FMA contraction
//     cannot change a value: bit for bit the CPU's edits, written back in place (the only change to the
//     logits). Then the chunk's max of x = logits * inv_temp (NaN as -inf, __fmul_rn) and its first index.
//  2. exp_hist_kernel: m = max x; e = float(exp(double(x - m))) (double exp: --use_fast_math would make expf
//     approximate; rounded from double it is what std::exp(float) gives up to a double rounding); the chunk's
//     Σ e in double, Σ q with q = round(e · 2^40) in uint64 (fixed point: exact for e >= 2^-16, V < 2^23
//     keeps the sums in range), and #{e >= min_p}; for rows that select by rank, the level-1 histogram
//     (count and Σ q per bin of the top 11 bits of a monotone uint32 key of x, -0 folded onto +0: larger x,
//     larger key), summed over the chunks with integer atomics.
//  3. select_kernel, per row: Z, ZQ = Σ q, the min-p count and the first index of m from the chunks; then
//     selection by rank without sorting the row. Ranks are "x descending, ties by lower id". A query is
//     either "the element of rank t" or "the first rank whose inclusive running mass exceeds t"; its level-1
//     bin comes from the histogram, then the elements of that bin, gathered once from the row into scratch
//     (a "segment"), are refined by three more radix levels over the key's remaining 21 bits (8, 8, 5 bits:
//     counts and masses per bin in shared memory, q recomputed from the key), giving the key, the elements
//     above it (count, mass) and its ties; select_tie_id then names the element among the ties by id (a
//     3-level radix over ids, or one min-reduction when the key is unique). Before any query, the bins every
//     query of the row will hit are predicted from the histogram alone and gathered in one pass over the
//     row; a query whose bin was not predicted gathers it then (another pass; not expected to happen).
//  Histogram updates (both kernels): the lanes of a warp that share the first taking lane's bin add once;
//  the others add their own (shared-memory atomics; spread rows have few lanes per bin, concentrated rows
//  and ties many).
// What is selected, per row: greedy: the first index of m. Sampled: L = min(top_k, max(1, #{e >= min_p}));
// with top_p < 1 the nucleus ends at the first rank whose inclusive mass exceeds top_p · ZQ (so Kp = that
// rank + 1); the kept set is ranks < K = min(L, Kp), tot its mass, and the token the first kept rank whose
// inclusive mass exceeds u · tot (else rank K - 1). With top_p >= 1 and L = V: the first id, in id order,
// whose running sum of q exceeds u · ZQ, as sample_row walks such rows (the chunk from the per-chunk sums,
// then the warp, then the lane).
// Logprobs: x - m - log S with S = Z (greedy, top_p >= 1) or the nucleus's e summed in double (one more pass
// over the row); outside the nucleus float32 min. Top-N: the rank N-1 element is selected, the N elements at
// or above it are collected from the segments into shared memory and each finds its place by counting the
// ones before it.
// Against the CPU reference the tokens agree except where a rounding difference of Z, a mass or expf moves a
// boundary (top_p · Z, u · tot, min_p), and logprobs agree to ~1e-6.
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_common.cuh"
#include "ops.h"

namespace sgl {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kChunk = 8192;              // ids per block of the first two kernels (sample_rows_scratch_bytes)
constexpr int kPer = kChunk / kThreads;   // ids per thread and tile of a pass over a row
constexpr int kBinShift = 21;             // level 1: the key's top 11 bits
constexpr int kBins = 1 << (32 - kBinShift);
constexpr int kSubBins = 256;             // later levels: at most 8 bits
constexpr unsigned kFull = 0xffffffffu;
typedef unsigned long long u64;
static_assert(kBins == 2048 && kChunk == 8192, "sample_rows_scratch_bytes (backend.h) assumes these");

struct Entry {  // one gathered element
  uint32_t key;
  int32_t id;
};

// The parts of SampleRowsParams::scratch (layout_of).
struct Scratch {
  Entry* entries;    // [R, V] per row: the segments, one per gathered bin
  u64* hmass;        // [R, kBins] level-1 histogram: Σ q per bin
  uint32_t* hcnt;    // [R, kBins] and the count
  double* cz;        // [R, nc] per chunk: Σ e
  u64* czq;          // [R, nc] Σ q
  float* cmax;       // [R, nc] max x
  int32_t* carg;     // [R, nc] its first index
  uint32_t* cminp;   // [R, nc] #{e >= min_p}
  int32_t nc;        // chunks per row
};

__device__ __forceinline__ float x_of(float logit, float inv_t) {
  return isnan(logit) ? -INFINITY : __fmul_rn(logit, inv_t);
}
// Larger x <=> larger key; equal x <=> equal key (x is never NaN; -0 and +0 share a key).
__device__ __forceinline__ uint32_t key_of(float x) {
  const uint32_t b = __float_as_uint(x == 0.0f ? 0.0f : x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
// The x of a key (+0 for the zeros: the same e).
__device__ __forceinline__ float x_of_key(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
__device__ __forceinline__ uint32_t bin_of(uint32_t key) { return key >> kBinShift; }
__device__ __forceinline__ float e_of(float x, float m) { return float(exp(double(__fsub_rn(x, m)))); }
__device__ __forceinline__ u64 q_of(float e) { return __double2ull_rn(double(e) * 0x1p40); }
// floor(t) for t >= 0, saturating; 0 for t <= 0 (also NaN).
__device__ __forceinline__ u64 floor_u64(double t) {
  if (!(t > 0.0)) return 0;
  if (t >= 1.8e19) return ~0ull;
  return __double2ull_rd(t);
}

// Sum over the warp of a 32-bit value (every lane gets it).
__device__ __forceinline__ uint32_t warp_sum_u32(uint32_t v) {
#if __CUDA_ARCH__ >= 800
  return __reduce_add_sync(kFull, v);
#else
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFull, v, off);
  return v;
#endif
}

// Adds one element (count 1, mass q) at `bin` of (cnt, mass) for every lane whose `take` is set; mass may be
// null (counts only). All 32 lanes of the warp call it together. The lanes that share the first taking
// lane's bin add once, with their summed mass; the others add their own.
__device__ __forceinline__ void hist_add(uint32_t* cnt, u64* mass, bool take, uint32_t bin, u64 q) {
  const unsigned act = __ballot_sync(kFull, take);
  if (act == 0) return;
  const int lane = threadIdx.x & 31, leader = __ffs(act) - 1;
  const uint32_t b0 = __shfl_sync(kFull, bin, leader);
  const bool in0 = take && bin == b0;
  const unsigned g0 = __ballot_sync(kFull, in0);
  bool own = take;
  if (__popc(g0) > 1) {
    if (mass) {  // q <= 2^40: its low 24 and high 17 bits each sum over 32 lanes without overflow
      const uint32_t lo = warp_sum_u32(in0 ? uint32_t(q) & 0xffffffu : 0u);
      const uint32_t hi = warp_sum_u32(in0 ? uint32_t(q >> 24) : 0u);
      if (lane == leader) atomicAdd(&mass[b0], (u64(hi) << 24) + lo);
    }
    if (lane == leader) atomicAdd(&cnt[b0], uint32_t(__popc(g0)));
    own = take && !in0;
  }
  if (own) {
    atomicAdd(&cnt[bin], 1u);
    if (mass) atomicAdd(&mass[bin], q);
  }
}

// Every thread gets op over the block's values (the same value in every thread: one fixed order). `red`
// holds kWarps values of T (8 bytes at most).
template <class T, class Op>
__device__ T block_reduce(T v, Op op, u64* red) {
  static_assert(sizeof(T) <= sizeof(u64), "one u64 a warp");
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(kFull, v, off));
  T* part = reinterpret_cast<T*>(red);
  __syncthreads();  // the previous reduction's readers are done with red
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

// (x, i) <- the larger x, the lower i among equal x.
__device__ __forceinline__ void argmax_merge(float& x, int32_t& i, float ox, int32_t oi) {
  if (ox > x || (ox == x && oi < i)) x = ox, i = oi;
}
// Every thread gets the block's (max x, its first index).
__device__ void block_argmax(float& x, int32_t& i, float* rx, int32_t* ri) {
  for (int off = 16; off > 0; off >>= 1)
    argmax_merge(x, i, __shfl_xor_sync(kFull, x, off), __shfl_xor_sync(kFull, i, off));
  __syncthreads();
  if (threadIdx.x % 32 == 0) rx[threadIdx.x / 32] = x, ri[threadIdx.x / 32] = i;
  __syncthreads();
  x = rx[0], i = ri[0];
  for (int w = 1; w < kWarps; ++w) argmax_merge(x, i, rx[w], ri[w]);
}

// f(i, x, valid) for the ids [i0, i1) of a row, in tiles of kChunk ids: each thread first loads its kPer
// logits of the tile (independent loads in flight), then calls f on them in id order. Every thread of the
// block makes every call (valid false past i1), so f may hold warp-synchronous code.
template <class F>
__device__ __forceinline__ void for_ids(const float* l, int32_t i0, int32_t i1, float inv_t, F f) {
  for (int32_t base = i0; base < i1; base += kChunk) {
    float v[kPer];
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int32_t i = base + k * kThreads + int32_t(threadIdx.x);
      v[k] = i < i1 ? l[i] : -INFINITY;
    }
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      const int32_t i = base + k * kThreads + int32_t(threadIdx.x);
      f(i, x_of(v[k], inv_t), i < i1);
    }
  }
}

// f(entry, valid) over seg[0, n), four entries a thread at a time; every thread makes every call, as above.
template <class F>
__device__ __forceinline__ void for_entries(const Entry* seg, uint32_t n, F f) {
  for (uint32_t base = 0; base < n; base += 4 * kThreads) {
    Entry v[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint32_t j = base + k * kThreads + threadIdx.x;
      v[k] = j < n ? seg[j] : Entry{0u, -1};
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) f(v[k], base + k * kThreads + threadIdx.x < n);
  }
}

// Whether the row selects by rank (needs the level-1 histogram): top-N logprobs, or a sampled row other
// than the whole-vocabulary id walk. select_kernel decides alike.
__device__ __forceinline__ bool needs_hist(const SampleRowsParams& p, int32_t r) {
  if ((p.flags[r] & kSampleReturnLogprob) && p.top_n[r] > 0) return true;
  if (p.top_k[r] == 1) return false;  // greedy: the first index of the max
  return double(p.top_p[r]) < 1.0 || p.top_k[r] < p.V || p.min_p[r] > 0.0f;
}

// ---- 1. edits, chunk maxima --------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads) edits_max_kernel(SampleRowsParams p, Scratch s) {
  __shared__ u64 red[kWarps];
  __shared__ float rx[kWarps];
  __shared__ int32_t ri[kWarps];
  const int32_t r = blockIdx.x, c = blockIdx.y, tid = threadIdx.x;
  const int32_t i0 = c * kChunk, i1 = min(p.V, i0 + kChunk);
  float* l = p.logits + size_t(p.rows[r]) * size_t(p.V);

  // the row's edits that fall in [i0, i1): repetition, subtract, mask in parallel phase by phase; logit_bias
  // in list order by one thread
  const LogitEdit* ed = p.edits + p.edit_indptr[r];
  const int32_t n = p.edit_indptr[r + 1] - p.edit_indptr[r];
  if (n > 0) {
    for (int32_t op = kLogitEditRepetition; op <= kLogitEditMask; ++op) {
      for (int32_t j = tid; j < n; j += kThreads) {
        const LogitEdit e = ed[j];
        if (e.op != op || e.token < i0 || e.token >= i1) continue;
        float& v = l[e.token];
        if (op == kLogitEditRepetition) v = v > 0.0f ? __fdiv_rn(v, e.value) : __fmul_rn(v, e.value);
        else if (op == kLogitEditSubtract) v = __fsub_rn(v, e.value);
        else v = -INFINITY;
      }
      __syncthreads();
    }
    // the logit_bias edits are the list's tail (ops ascending): find where it starts
    int32_t first_bias = n;
    for (int32_t j = tid; j < n; j += kThreads)
      if (ed[j].op == kLogitEditBias) first_bias = min(first_bias, j);
    first_bias = block_reduce(first_bias, MinI{}, red);
    if (tid == 0)
      for (int32_t j = first_bias; j < n; ++j)
        if (ed[j].token >= i0 && ed[j].token < i1) l[ed[j].token] = __fadd_rn(l[ed[j].token], ed[j].value);
    __syncthreads();
  }
  if (c == 0 && needs_hist(p, r))  // exp_hist_kernel adds into it
    for (int32_t b = tid; b < kBins; b += kThreads) s.hcnt[size_t(r) * kBins + b] = 0, s.hmass[size_t(r) * kBins + b] = 0;

  float best = -INFINITY;
  int32_t arg = INT32_MAX;
  for_ids(l, i0, i1, p.inv_temp[r], [&](int32_t i, float x, bool valid) {
    if (valid && x > best) best = x, arg = i;  // ids ascending per thread: the first of equal maxima
  });
  block_argmax(best, arg, rx, ri);
  if (tid == 0) s.cmax[size_t(r) * s.nc + c] = best, s.carg[size_t(r) * s.nc + c] = arg;
}

// ---- 2. exponentials, chunk sums, level-1 histogram ----------------------------------------------------------

__global__ void __launch_bounds__(kThreads) exp_hist_kernel(SampleRowsParams p, Scratch s) {
  __shared__ uint32_t hc[kBins];
  __shared__ u64 hm[kBins];
  __shared__ u64 red[kWarps];
  const int32_t r = blockIdx.x, c = blockIdx.y, tid = threadIdx.x, nc = s.nc;
  const int32_t i0 = c * kChunk, i1 = min(p.V, i0 + kChunk);
  const float* l = p.logits + size_t(p.rows[r]) * size_t(p.V);

  float mx = -INFINITY;
  for (int32_t j = tid; j < nc; j += kThreads) mx = fmaxf(mx, s.cmax[size_t(r) * nc + j]);
  const float m = block_reduce(mx, MaxF{}, red);
  double z = 0.0;
  u64 zq = 0;
  uint32_t n_minp = 0;
  if (m != -INFINITY) {  // (a row of only NaN / -inf is answered by select_kernel)
    const bool hist = needs_hist(p, r);
    if (hist)
      for (int32_t b = tid; b < kBins; b += kThreads) hc[b] = 0, hm[b] = 0;
    __syncthreads();
    const float min_p = p.min_p[r];
    for_ids(l, i0, i1, p.inv_temp[r], [&](int32_t, float x, bool valid) {
      const float e = valid ? e_of(x, m) : 0.0f;
      const u64 q = q_of(e);
      z += double(e);
      zq += q;
      n_minp += valid && min_p > 0.0f && e >= min_p;
      if (hist) hist_add(hc, hm, valid, bin_of(key_of(x)), q);
    });
    if (hist) {
      __syncthreads();
      for (int32_t b = tid; b < kBins; b += kThreads)
        if (hc[b]) {
          atomicAdd(&s.hcnt[size_t(r) * kBins + b], hc[b]);
          atomicAdd(&s.hmass[size_t(r) * kBins + b], hm[b]);
        }
    }
  }
  z = block_reduce(z, AddD{}, red);
  zq = block_reduce(zq, AddU{}, red);
  n_minp = block_reduce(n_minp, AddI{}, red);
  if (tid == 0) {
    const size_t k = size_t(r) * nc + c;
    s.cz[k] = z, s.czq[k] = zq, s.cminp[k] = n_minp;
  }
}

// ---- 3. selection ---------------------------------------------------------------------------------------------

enum : uint8_t { kAbsent = 0, kWanted = 1, kFilling = 2, kPresent = 3 };  // a level-1 bin's segment

// The bin pick_bin found: bin -1 when the total does not exceed the target.
struct Pick {
  int32_t bin;
  uint32_t above_cnt, cnt;  // the count of the bins before it in scan order; its own
  u64 above_mass, mass;
};

struct SelShared {
  uint32_t cnt1[kBins];  // the row's level-1 histogram
  u64 mass1[kBins];
  uint32_t seg[kBins];   // where a gathered bin's segment starts in the row's entries
  uint8_t state[kBins];  // kAbsent .. kPresent
  union {
    uint32_t fill[kBins];  // gather: entries written per bin
    struct {
      uint32_t cnt[kSubBins];
      u64 mass[kSubBins];
    } sub;                 // the levels after the first (keys, then ids)
  } u;
  u64 scan_a[kWarps], scan_b[kWarps];
  u64 wq[kWarps];        // the id walk: per warp Σ q
  u64 red[kWarps];
  float rx[kWarps];
  int32_t ri[kWarps];
  Pick pick;
  uint32_t used;         // entries of the row in segments so far
  int32_t tok;
  int32_t n_top;
  uint32_t top_key[kSampleMaxTopN];
  int32_t top_id[kSampleMaxTopN];
};

struct Row {
  const float* l;
  int32_t V;
  float inv_t, m;
  Entry* entries;
};

// Inclusive block scan of two u64 per thread (thread order): each thread gets its exclusive prefixes and the
// totals.
__device__ void block_scan2(u64 a, u64 b, u64& a_ex, u64& b_ex, u64& a_tot, u64& b_tot, SelShared& sh) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  u64 ia = a, ib = b;
  for (int off = 1; off < 32; off <<= 1) {
    const u64 oa = __shfl_up_sync(kFull, ia, off), ob = __shfl_up_sync(kFull, ib, off);
    if (lane >= off) ia += oa, ib += ob;
  }
  __syncthreads();  // the previous scan's readers are done
  if (lane == 31) sh.scan_a[warp] = ia, sh.scan_b[warp] = ib;
  __syncthreads();
  u64 ba = 0, bb = 0, ta = 0, tb = 0;
  for (int w = 0; w < kWarps; ++w) {
    const u64 xa = sh.scan_a[w], xb = sh.scan_b[w];
    if (w < warp) ba += xa, bb += xb;
    ta += xa, tb += xb;
  }
  a_ex = ba + ia - a, b_ex = bb + ib - b, a_tot = ta, b_tot = tb;
}

// Block-wide: scanning bins nb-1 down to 0 (descending) or 0 up (ascending), the first bin where the running
// count (by_mass: mass) including it exceeds target. cnt or mass may be null (zeros).
__device__ __noinline__ Pick pick_bin(const uint32_t* cnt, const u64* mass, int32_t nb, bool descending, bool by_mass,
                         u64 target, SelShared& sh) {
  const int32_t per = (nb + kThreads - 1) / kThreads, d0 = int32_t(threadIdx.x) * per;
  u64 c = 0, w = 0;
  for (int32_t d = d0; d < d0 + per && d < nb; ++d) {
    const int32_t b = descending ? nb - 1 - d : d;
    if (cnt) c += cnt[b];
    if (mass) w += mass[b];
  }
  u64 c_ex, w_ex, c_tot, w_tot;
  block_scan2(c, w, c_ex, w_ex, c_tot, w_tot, sh);
  Pick pk{-1, 0, 0, 0, 0};
  if (!((by_mass ? w_tot : c_tot) > target)) return pk;
  const u64 ex = by_mass ? w_ex : c_ex, own = by_mass ? w : c;
  if (ex <= target && target < ex + own) {  // exactly one thread: the bin is in its range
    u64 ac = c_ex, aw = w_ex;
    for (int32_t d = d0; d < d0 + per && d < nb; ++d) {
      const int32_t b = descending ? nb - 1 - d : d;
      const u64 bc = cnt ? cnt[b] : 0, bw = mass ? mass[b] : 0;
      if ((by_mass ? aw + bw : ac + bc) > target) {
        sh.pick = Pick{b, uint32_t(ac), uint32_t(bc), aw, bw};
        break;
      }
      ac += bc, aw += bw;
    }
  }
  __syncthreads();
  pk = sh.pick;
  return pk;
}

// Each lane with `take` gets a distinct slot of fill[bin] (warp-aggregated: one atomic per bin and warp).
__device__ __forceinline__ uint32_t warp_slot(bool take, uint32_t bin, uint32_t* fill) {
  const int lane = threadIdx.x % 32;
  uint32_t slot = 0;
  unsigned pending = __ballot_sync(kFull, take);
  while (pending) {
    const int leader = __ffs(pending) - 1;
    const uint32_t b = __shfl_sync(kFull, bin, leader);
    const bool mine = ((pending >> lane) & 1u) && bin == b;
    const unsigned grp = __ballot_sync(kFull, mine);
    uint32_t base = 0;
    if (lane == leader) base = atomicAdd(&fill[b], uint32_t(__popc(grp)));
    base = __shfl_sync(kFull, base, leader);
    if (mine) slot = base + uint32_t(__popc(grp & ((1u << lane) - 1u)));
    pending &= ~grp;
  }
  return slot;
}

// Marks the non-empty bins of [lo, hi] that are not gathered yet as wanted.
__device__ void want_bins(int32_t lo, int32_t hi, SelShared& sh) {
  __syncthreads();  // the previous marks are done
  for (int32_t b = max(lo, 0) + int32_t(threadIdx.x); b <= hi && b < kBins; b += kThreads)
    if (sh.cnt1[b] && sh.state[b] == kAbsent) sh.state[b] = kWanted;
}

// Gathers the wanted bins' elements into their segments (placed after the segments already there, in bin
// order) in one pass over the row.
__device__ __noinline__ void gather(const Row& row, SelShared& sh) {
  constexpr int per = kBins / kThreads;
  const int32_t b0 = int32_t(threadIdx.x) * per;
  __syncthreads();  // the wanted marks
  u64 n = 0;
  for (int32_t b = b0; b < b0 + per; ++b)
    if (sh.state[b] == kWanted) n += sh.cnt1[b];
  u64 ex, ex2, tot, tot2;
  block_scan2(n, 0, ex, ex2, tot, tot2, sh);
  uint32_t at = sh.used + uint32_t(ex);
  for (int32_t b = b0; b < b0 + per; ++b)
    if (sh.state[b] == kWanted) {
      sh.seg[b] = at;
      sh.u.fill[b] = 0;
      sh.state[b] = kFilling;
      at += sh.cnt1[b];
    }
  __syncthreads();
  if (tot > 0)
    for_ids(row.l, 0, row.V, row.inv_t, [&](int32_t i, float x, bool valid) {
      const uint32_t key = key_of(x), b = bin_of(key);
      const bool take = valid && sh.state[b] == kFilling;
      const uint32_t slot = warp_slot(take, b, sh.u.fill);
      if (take) row.entries[sh.seg[b] + slot] = Entry{key, i};
    });
  __syncthreads();
  for (int32_t b = b0; b < b0 + per; ++b)
    if (sh.state[b] == kFilling) sh.state[b] = kPresent;
  if (threadIdx.x == 0) sh.used += uint32_t(tot);
  __syncthreads();
}

// Gathers bin b if it is not yet.
__device__ void ensure_bin(const Row& row, int32_t b, SelShared& sh) {
  if (!__syncthreads_or(sh.state[b] != kPresent)) return;
  if (threadIdx.x == 0) sh.state[b] = kWanted;
  gather(row, sh);
}

// The selected element's key and where it sits: `above` elements (mass `mass_above`) have a larger key,
// `tie_count` share its key (each of mass q), and it is the tie_index-th of those by id. bin: its level-1 bin
// (gathered).
struct Sel {
  bool found;
  int32_t bin;
  uint32_t key, above, tie_count, tie_index;
  u64 mass_above, q;
  __device__ uint32_t rank() const { return above + tie_index; }
  __device__ u64 mass_through() const { return mass_above + u64(tie_index + 1) * q; }  // inclusive running mass
};

// by_mass false: the element of rank `target` (< V). by_mass true: the first rank whose inclusive running
// mass exceeds `target` (found false when the whole row's mass does not). with_mass false skips the masses
// (q, mass_above then 0; not allowed with by_mass).
__device__ __noinline__ Sel select(const Row& row, bool by_mass, bool with_mass, u64 target, SelShared& sh) {
  Sel s{};
  const Pick p1 = pick_bin(sh.cnt1, with_mass ? sh.mass1 : nullptr, kBins, true, by_mass, target, sh);
  if (p1.bin < 0) return s;
  ensure_bin(row, p1.bin, sh);
  const Entry* seg = row.entries + sh.seg[p1.bin];
  uint32_t prefix = uint32_t(p1.bin) << kBinShift, mask = ~0u << kBinShift;
  uint32_t above = p1.above_cnt, tie_count = p1.cnt;
  u64 mass_above = p1.above_mass, tie_mass = p1.mass;
  u64 rem = target - (by_mass ? p1.above_mass : u64(p1.above_cnt));
  for (int hi = kBinShift; hi > 0;) {  // the remaining bits: 8, 8, 5
    const int width = min(8, hi), shift = hi - width;
    const uint32_t bm = (1u << width) - 1u;
    for (int32_t b = threadIdx.x; b < kSubBins; b += kThreads) sh.u.sub.cnt[b] = 0, sh.u.sub.mass[b] = 0;
    __syncthreads();
    for_entries(seg, p1.cnt, [&](const Entry& en, bool valid) {
      const bool take = valid && (en.key & mask) == prefix;
      const u64 q = with_mass && take ? q_of(e_of(x_of_key(en.key), row.m)) : 0;
      hist_add(sh.u.sub.cnt, with_mass ? sh.u.sub.mass : nullptr, take, (en.key >> shift) & bm, q);
    });
    __syncthreads();
    const Pick pk = pick_bin(sh.u.sub.cnt, with_mass ? sh.u.sub.mass : nullptr, int32_t(bm + 1), true, by_mass,
                             rem, sh);
    if (pk.bin < 0) return s;  // cannot happen: the bin's totals exceed rem
    prefix |= uint32_t(pk.bin) << shift;
    mask |= bm << shift;
    above += pk.above_cnt;
    mass_above += pk.above_mass;
    rem -= by_mass ? pk.above_mass : u64(pk.above_cnt);
    tie_count = pk.cnt;
    tie_mass = pk.mass;
    hi = shift;
  }
  s.found = true;
  s.bin = p1.bin;
  s.key = prefix;
  s.above = above;
  s.mass_above = mass_above;
  s.tie_count = tie_count;
  s.q = tie_count ? tie_mass / tie_count : 0;  // one key: equal masses (exact)
  // by count: rem is the rank among the ties; by mass: ties add q each, rem < tie_count * q
  s.tie_index = by_mass ? uint32_t(rem / s.q) : uint32_t(rem);
  if (s.tie_index >= s.tie_count) s.tie_index = s.tie_count - 1;  // cannot happen; keeps it in range
  return s;
}

// The id of the tie_index-th (by id) element whose key is s.key.
__device__ __noinline__ int32_t select_tie_id(const Row& row, const Sel& s, SelShared& sh) {
  const Entry* seg = row.entries + sh.seg[s.bin];
  const uint32_t n = sh.cnt1[s.bin];
  if (s.tie_count == 1) {
    int32_t best = INT32_MAX;
    for_entries(seg, n, [&](const Entry& en, bool valid) {
      if (valid && en.key == s.key) best = min(best, en.id);
    });
    return block_reduce(best, MinI{}, sh.red);
  }
  uint32_t prefix = 0, mask = 0;
  u64 rem = s.tie_index;
  for (int shift = 16; shift >= 0; shift -= 8) {  // ids < 2^23 < 2^24
    for (int32_t b = threadIdx.x; b < kSubBins; b += kThreads) sh.u.sub.cnt[b] = 0;
    __syncthreads();
    for_entries(seg, n, [&](const Entry& en, bool valid) {
      const bool take = valid && en.key == s.key && (uint32_t(en.id) & mask) == prefix;
      hist_add(sh.u.sub.cnt, nullptr, take, (uint32_t(en.id) >> shift) & 0xffu, 0);
    });
    __syncthreads();
    const Pick pk = pick_bin(sh.u.sub.cnt, nullptr, kSubBins, false, false, rem, sh);  // ids ascending
    if (pk.bin < 0) break;  // cannot happen
    prefix |= uint32_t(pk.bin) << shift;
    mask |= 0xffu << shift;
    rem -= pk.above_cnt;
  }
  return int32_t(prefix);
}

// The first id, in id order, whose inclusive running sum of q exceeds tgt: the chunk from the chunks' sums,
// then the warp's 512 ids within it, then the lane; else (tgt at or past the total: rounding) the last id
// with a positive e.
__device__ __noinline__ int32_t walk_ids(const Row& row, const u64* czq, int32_t nc, u64 tgt, SelShared& sh) {
  constexpr int32_t span = kChunk / kWarps, steps = span / 32;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const Pick pc = pick_bin(nullptr, czq, nc, false, true, tgt, sh);
  int32_t token = -1;
  if (pc.bin >= 0) {
    const int32_t w0 = pc.bin * kChunk + warp * span;
    float v[steps];
#pragma unroll
    for (int k = 0; k < steps; ++k) {
      const int32_t i = w0 + k * 32 + lane;
      v[k] = i < row.V ? row.l[i] : -INFINITY;
    }
    u64 sum = 0;
#pragma unroll
    for (int k = 0; k < steps; ++k) sum += q_of(e_of(x_of(v[k], row.inv_t), row.m));
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(kFull, sum, off);
    if (lane == 0) sh.wq[warp] = sum;
    if (threadIdx.x == 0) sh.tok = -1;
    __syncthreads();
    const Pick pw = pick_bin(nullptr, sh.wq, kWarps, false, true, tgt - pc.above_mass, sh);
    if (pw.bin == warp) {  // this warp walks its ids, 32 at a time
      u64 acc = pc.above_mass + pw.above_mass;
#pragma unroll
      for (int k = 0; k < steps; ++k) {
        const u64 q = q_of(e_of(x_of(v[k], row.inv_t), row.m));
        u64 inc = q;
        for (int off = 1; off < 32; off <<= 1) {
          const u64 o = __shfl_up_sync(kFull, inc, off);
          if (lane >= off) inc += o;
        }
        const unsigned hit = __ballot_sync(kFull, acc + inc > tgt);
        if (hit) {
          if (lane == __ffs(hit) - 1) sh.tok = w0 + k * 32 + lane;
          break;
        }
        acc += __shfl_sync(kFull, inc, 31);
      }
    }
    __syncthreads();
    token = sh.tok;
  }
  if (token < 0) {
    int32_t last = -1;
    for_ids(row.l, 0, row.V, row.inv_t, [&](int32_t i, float x, bool valid) {
      if (valid && e_of(x, row.m) > 0.0f) last = max(last, i);
    });
    token = block_reduce(last, MaxI{}, sh.red);
  }
  return token;
}

__global__ void __launch_bounds__(kThreads, 2) select_kernel(SampleRowsParams p, Scratch s) {
  __shared__ SelShared sh;
  const int32_t r = blockIdx.x, V = p.V, tid = threadIdx.x, nc = s.nc;
  const float* l = p.logits + size_t(p.rows[r]) * size_t(V);

  // the row's totals from its chunks
  float mx = -INFINITY;
  int32_t first = INT32_MAX;
  double z = 0.0;
  u64 zq = 0;
  uint32_t n_minp = 0;
  for (int32_t j = tid; j < nc; j += kThreads) {
    const size_t k = size_t(r) * nc + j;
    argmax_merge(mx, first, s.cmax[k], s.carg[k]);
    z += s.cz[k];
    zq += s.czq[k];
    n_minp += s.cminp[k];
  }
  block_argmax(mx, first, sh.rx, sh.ri);
  const float m = mx;
  if (m == -INFINITY) {  // everything masked: sample_row's answer
    // (its greedy no-logprob fast path takes the first logit equal to -inf, NaN excluded; the other paths 0)
    int32_t first_inf = INT32_MAX;
    if (p.top_k[r] == 1 && !(p.flags[r] & kSampleReturnLogprob))
      for (int32_t i = tid; i < V; i += kThreads)
        if (l[i] == -INFINITY) first_inf = min(first_inf, i);
    first_inf = block_reduce(first_inf, MinI{}, sh.red);
    if (tid == 0) p.token[r] = first_inf == INT32_MAX ? 0 : first_inf, p.logprob[r] = -FLT_MAX, p.status[r] = 1;
    return;
  }
  const double Z = block_reduce(z, AddD{}, sh.red);
  const u64 ZQ = block_reduce(zq, AddU{}, sh.red);
  const uint32_t C = block_reduce(n_minp, AddI{}, sh.red);

  const Row row{l, V, p.inv_temp[r], m, s.entries + size_t(r) * size_t(V)};
  const bool greedy = p.top_k[r] == 1;
  const bool want_lp = (p.flags[r] & kSampleReturnLogprob) != 0;
  const float top_p = p.top_p[r], min_p = p.min_p[r];
  const bool use_top_p = !greedy && double(top_p) < 1.0;
  const double u = p.u[r];
  uint32_t L = min(uint32_t(p.top_k[r]), uint32_t(V));
  if (min_p > 0.0f) L = min(L, max(C, 1u));
  const bool walk = !greedy && !use_top_p && L == uint32_t(V);
  const int32_t N = want_lp ? min(min(p.top_n[r], kSampleMaxTopN), V) : 0;
  const u64 Tp = use_top_p ? floor_u64(double(top_p) * double(ZQ)) : 0;

  if (needs_hist(p, r)) {
    for (int32_t b = tid; b < kBins; b += kThreads) {
      sh.cnt1[b] = s.hcnt[size_t(r) * kBins + b];
      sh.mass1[b] = s.hmass[size_t(r) * kBins + b];
      sh.state[b] = kAbsent;
    }
    if (tid == 0) sh.used = 0;
    __syncthreads();
    // The bins the queries below will hit, from the level-1 histogram alone, gathered in one pass.
    Pick pp{-1, 0, 0, 0, 0};
    if (use_top_p) {  // the nucleus's last element
      pp = pick_bin(sh.cnt1, sh.mass1, kBins, true, true, Tp, sh);
      want_bins(pp.bin, pp.bin, sh);
    }
    if (!greedy && !walk) {
      // rank K - 1: rank L - 1, unless L reaches into the nucleus's last bin (then K - 1 lies in it, K being
      // min(L, Kp) with Kp past that bin's first rank)
      const Pick pk = pp.bin >= 0 && L > pp.above_cnt ? pp : pick_bin(sh.cnt1, sh.mass1, kBins, true, false, L - 1, sh);
      want_bins(pk.bin, pk.bin, sh);
      // the drawn rank: its target floor(u · tot) with tot in [mass above pk's bin, that + the bin's mass]
      const Pick a = pick_bin(sh.cnt1, sh.mass1, kBins, true, true, floor_u64(u * double(pk.above_mass)), sh);
      const Pick b = pick_bin(sh.cnt1, sh.mass1, kBins, true, true, floor_u64(u * double(pk.above_mass + pk.mass)), sh);
      if (a.bin >= 0) want_bins(b.bin >= 0 ? max(b.bin, pk.bin) : pk.bin, a.bin, sh);
    }
    if (N > 0) {  // the top N: every bin down to rank N - 1's
      const Pick pn = pick_bin(sh.cnt1, nullptr, kBins, true, false, uint32_t(N - 1), sh);
      want_bins(pn.bin, kBins - 1, sh);
    }
    gather(row, sh);
  }

  // The top-p nucleus of the whole row: ranks < Kp; its last element (cut_key, cut_id) when Kp < V.
  uint32_t Kp = uint32_t(V), cut_key = 0;
  int32_t cut_id = -1;
  u64 mass_Kp = ZQ;
  if (use_top_p) {
    const Sel sp = select(row, true, true, Tp, sh);
    if (sp.found && sp.rank() + 1 < uint32_t(V)) {
      Kp = sp.rank() + 1;
      mass_Kp = sp.mass_through();
      cut_key = sp.key;
      cut_id = select_tie_id(row, sp, sh);
    }
  }

  // the token
  int32_t token;
  if (greedy) {
    token = first;
  } else if (walk) {
    token = walk_ids(row, s.czq + size_t(r) * nc, nc, floor_u64(u * double(ZQ)), sh);
  } else {
    const uint32_t K = min(L, Kp);
    const u64 tot = K == Kp ? mass_Kp : select(row, false, true, K - 1, sh).mass_through();  // Kp = V gives ZQ
    const Sel sd = select(row, true, true, floor_u64(u * double(tot)), sh);
    if (sd.found && sd.rank() < K) {
      token = select_tie_id(row, sd, sh);
    } else {  // rounding put the target past the kept set: its last rank
      const Sel last = select(row, false, false, K - 1, sh);
      token = select_tie_id(row, last, sh);
    }
  }

  // logprobs
  const bool cut = use_top_p && Kp < uint32_t(V);
  double S = Z;
  if (cut) {
    double part = 0.0;
    for_ids(l, 0, V, row.inv_t, [&](int32_t i, float x, bool valid) {
      const uint32_t k = key_of(x);
      if (valid && (k > cut_key || (k == cut_key && i <= cut_id))) part += double(e_of(x, m));
    });
    S = block_reduce(part, AddD{}, sh.red);
  }
  const double logS = log(S);
  auto lp_of = [&](int32_t t) -> float {
    if (t < 0 || t >= V) return -FLT_MAX;
    const float x = x_of(l[t], row.inv_t);
    if (cut) {
      const uint32_t k = key_of(x);
      if (!(k > cut_key || (k == cut_key && t <= cut_id))) return -FLT_MAX;
    }
    const float v = float(double(__fsub_rn(x, m)) - logS);
    return greedy ? v : fmaxf(v, -FLT_MAX);
  };
  if (tid == 0) p.token[r] = token, p.logprob[r] = lp_of(token), p.status[r] = 0;
  if (!want_lp) return;

  if (N > 0) {
    const Sel sn = select(row, false, false, uint32_t(N - 1), sh);
    const int32_t id_n = select_tie_id(row, sn, sh);
    // every bin from the top down to sn's is gathered (predicted above; this gathers any that is not)
    bool missing = false;
    for (int32_t b = sn.bin + tid; b < kBins; b += kThreads)
      if (sh.cnt1[b] && sh.state[b] != kPresent) sh.state[b] = kWanted, missing = true;
    if (__syncthreads_or(missing)) gather(row, sh);
    if (tid == 0) sh.n_top = 0;
    __syncthreads();
    for (int32_t b = int32_t(bin_of(key_of(m))); b >= sn.bin; --b) {
      const uint32_t n = sh.cnt1[b];
      const Entry* seg = row.entries + sh.seg[b];
      for (uint32_t j = tid; j < n; j += kThreads) {
        const Entry en = seg[j];
        if (en.key > sn.key || (en.key == sn.key && en.id <= id_n)) {
          const int32_t slot = atomicAdd(&sh.n_top, 1);
          if (slot < kSampleMaxTopN) sh.top_key[slot] = en.key, sh.top_id[slot] = en.id;
        }
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

// The parts of the scratch, 16-byte aligned each; null bytes_needed checks it against the caller's size.
Scratch layout_of(void* base, int32_t R, int32_t V, size_t* used) {
  Scratch s{};
  s.nc = (V + kChunk - 1) / kChunk;
  const size_t rows = size_t(R), nc = size_t(s.nc);
  char* at = static_cast<char*>(base);
  auto take = [&](size_t bytes) {
    char* q = at;
    at += (bytes + 15) / 16 * 16;
    return q;
  };
  s.entries = reinterpret_cast<Entry*>(take(rows * size_t(V) * sizeof(Entry)));
  s.hmass = reinterpret_cast<u64*>(take(rows * kBins * sizeof(u64)));
  s.cz = reinterpret_cast<double*>(take(rows * nc * sizeof(double)));
  s.czq = reinterpret_cast<u64*>(take(rows * nc * sizeof(u64)));
  s.hcnt = reinterpret_cast<uint32_t*>(take(rows * kBins * sizeof(uint32_t)));
  s.cmax = reinterpret_cast<float*>(take(rows * nc * sizeof(float)));
  s.carg = reinterpret_cast<int32_t*>(take(rows * nc * sizeof(int32_t)));
  s.cminp = reinterpret_cast<uint32_t*>(take(rows * nc * sizeof(uint32_t)));
  *used = size_t(at - static_cast<char*>(base));
  return s;
}

}  // namespace

void sample_rows_cuda(const SampleRowsParams& p) {
  if (p.R <= 0) return;
  if (!p.scratch || (reinterpret_cast<uintptr_t>(p.scratch) & 15u))
    throw std::runtime_error("sample_rows: SampleRowsParams::scratch must be 16-byte aligned device memory of "
                             "sample_rows_scratch_bytes(R, V) bytes");
  // Rows in groups of kSampleRowsPerGroup (256 rows fill the GPU), each group the same scratch: a group is
  // the call for its rows alone (the per-row arrays offset, the edit / id lists and logits indexed as they are).
  for (int32_t r0 = 0; r0 < p.R; r0 += kSampleRowsPerGroup) {
    SampleRowsParams g = p;
    g.R = min(p.R - r0, kSampleRowsPerGroup);
    g.rows += r0, g.inv_temp += r0, g.top_k += r0, g.top_p += r0, g.min_p += r0, g.u += r0, g.flags += r0;
    g.top_n += r0, g.edit_indptr += r0, g.ids_indptr += r0, g.token += r0, g.logprob += r0, g.status += r0;
    g.top_ids += size_t(r0) * kSampleMaxTopN, g.top_lps += size_t(r0) * kSampleMaxTopN;
    size_t used = 0;
    const Scratch s = layout_of(p.scratch, g.R, g.V, &used);
    if (used > sample_rows_scratch_bytes(p.R, p.V))
      throw std::logic_error("sample_rows: scratch layout of " + std::to_string(used) +
                             " bytes exceeds sample_rows_scratch_bytes");
    const dim3 chunks(unsigned(g.R), unsigned(s.nc));
    edits_max_kernel<<<chunks, kThreads, 0, sgl_stream()>>>(g, s);
    SGL_CUDA_LAUNCH_CHECK();
    exp_hist_kernel<<<chunks, kThreads, 0, sgl_stream()>>>(g, s);
    SGL_CUDA_LAUNCH_CHECK();
    select_kernel<<<unsigned(g.R), kThreads, 0, sgl_stream()>>>(g, s);
    SGL_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace sgl
