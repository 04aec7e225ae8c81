// The MoE ops of the Backend table (Qwen2-MoE; addon/backend/backend.h, CPU reference addon/cpu/moe.cc):
//   moe_route       one warp per token: softmax over E <= 256 in f32, top-K (K <= 8) best first, ties to
//                   the lower expert id, renormalised on request, counted into the expert counter;
//   moe_permute     a one-block counting sort of the T*K (token, choice) pairs by expert, stable in the pair
//                   index (dst, offsets), then a row-copy kernel (x_perm[dst[i]] = x[i / K]);
//   grouped_matmul  y[r] = x[r] · W_eᵀ over each expert's rows: a weight-streaming GEMV for few rows (decode),
//                   mma.sync m16n8k16 tiles of 128 x 128 for many (prefill), a CUDA-core tiled kernel for
//                   odd shapes and for the float32 table;
//   moe_unpermute   one block per token: the weighted sum of its expert rows in ascending expert order, plus
//                   the gated shared expert, f32 sums, one rounding.
// Everything is enqueued on sgl_stream() and sized from the host-side T / M / E only: offsets and counts are
// read on the device (never on the host), so a CUDA graph captured at one T replays whatever the routing.
// A grouped kernel's grid covers an upper bound of the (expert, row tile) pairs; each block finds its pair by
// a warp-level scan of offsets, and blocks past the last pair exit at once (experts without rows cost nothing).
#include <algorithm>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "attention_common.cuh"
#include "cuda_common.cuh"
#include "elementwise_common.cuh"
#include "gemv_common.cuh"
#include "ops.h"

namespace sgl {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kMaxE = 256;  // experts (a warp holds 8 per lane)
constexpr int kMaxK = 8;    // choices per token
constexpr int kPerLane = kMaxE / 32;

__device__ __forceinline__ int clamp_expert(int e, int E) { return e < 0 ? 0 : (e >= E ? E - 1 : e); }

// ---- moe_route ----------------------------------------------------------------------------------------------
// Warp w of the block owns token t; lane l holds experts l, l + 32, ... The arithmetic mirrors
// moe_route_cpu so that the probabilities come out (nearly always) bit-equal: exp of the f32 difference to
// the max in double, rounded to f32 (the correctly rounded expf; --use_fast_math would make expf approximate),
// the partition sum z accumulated serially in expert order by lane 0 (as the CPU loop), IEEE divisions.
// Top-K: K rounds of a warp argmax over (p, -id) (NaN ranks below every number, so a valid expert is always
// picked), the renormalising sum in choice order.

constexpr int kRouteWarps = 4;

__global__ void __launch_bounds__(kRouteWarps * 32)
    moe_route_kernel(const float* logits, int32_t* topk_ids, float* topk_w, int32_t* counts,
                     const int32_t* count_tokens, int T, int E, int K, bool renormalize) {
  __shared__ float s_ex[kRouteWarps][kMaxE];
  pdl_wait();
  pdl_trigger();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int t = blockIdx.x * kRouteWarps + warp;
  if (t >= T) return;  // no block barrier below
  const float* l = logits + size_t(t) * E;
  float v[kPerLane];
  float mx = -INFINITY;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int e = lane + 32 * j;
    v[j] = e < E ? l[e] : -INFINITY;
    mx = fmaxf(mx, v[j]);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int e = lane + 32 * j;
    if (e < E) {
      v[j] = float(exp(double(__fsub_rn(v[j], mx))));
      s_ex[warp][e] = v[j];
    }
  }
  __syncwarp();
  float z = 0.0f;
  if (lane == 0)
    for (int e = 0; e < E; ++e) z = __fadd_rn(z, s_ex[warp][e]);
  z = __shfl_sync(0xffffffffu, z, 0);
  float key[kPerLane];
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    v[j] = __fdiv_rn(v[j], z);
    key[j] = (lane + 32 * j < E) ? (v[j] == v[j] ? v[j] : -1.0f) : -INFINITY;  // NaN below any probability
  }
  int ids[kMaxK];
  float ps[kMaxK];
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < kMaxK; ++k) {
    if (k >= K) break;
    // this lane's best: slots ascend in expert id, so a strict > keeps the lower id on ties
    float bk = -INFINITY, bp = 0.0f;
    int be = INT_MAX;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j)
      if (key[j] > bk) bk = key[j], bp = v[j], be = lane + 32 * j;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ok = __shfl_xor_sync(0xffffffffu, bk, o);
      const float op = __shfl_xor_sync(0xffffffffu, bp, o);
      const int oe = __shfl_xor_sync(0xffffffffu, be, o);
      if (ok > bk || (ok == bk && oe < be)) bk = ok, bp = op, be = oe;
    }
    // every lane holds the same winner (a total order on distinct ids); its owner retires it
    if ((be & 31) == lane) {
#pragma unroll
      for (int j = 0; j < kPerLane; ++j)
        if (be >> 5 == j) key[j] = -INFINITY;
    }
    ids[k] = be;
    ps[k] = bp;
    sum = __fadd_rn(sum, bp);
  }
  const int counted = count_tokens ? *count_tokens : T;
#pragma unroll
  for (int k = 0; k < kMaxK; ++k) {
    if (k < K && lane == k) {
      topk_ids[size_t(t) * K + k] = ids[k];
      topk_w[size_t(t) * K + k] = renormalize ? __fdiv_rn(ps[k], sum) : ps[k];
      if (counts && t < counted) atomicAdd(counts + ids[k], 1);
    }
  }
}

// ---- moe_permute -------------------------------------------------------------------------------------------
// Index kernel, one block of 1024 threads: a shared-memory histogram of the experts, its exclusive scan
// (offsets), then the pairs in tiles of 8192: warp w takes 256 consecutive pairs in 8 rounds of 32; within a
// round the lanes choosing the same expert find each other (__match_any_sync) and rank by lane, on top of the
// warp's running count for that expert; a column scan over the 32 warps (one thread per expert) turns the
// per-warp counts into each warp's first row. So expert e's rows ascend in the pair index, as the CPU's
// counting sort gives them. Out-of-range ids are clamped (the CPU would write out of bounds).

constexpr int kPermThreads = 1024;
constexpr int kPermWarps = kPermThreads / 32;
constexpr int kPermRounds = 8;
constexpr int kPermTile = kPermThreads * kPermRounds;

__global__ void __launch_bounds__(kPermThreads)
    moe_permute_index_kernel(const int32_t* topk_ids, int32_t* dst, int32_t* offsets, int n, int E) {
  __shared__ int s_next[kMaxE];                // histogram, then the next row of each expert
  __shared__ int s_warp[kPermWarps * kMaxE];   // [warp][expert] counts of the tile, then first rows
  pdl_wait();
  pdl_trigger();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (int e = tid; e < E; e += kPermThreads) s_next[e] = 0;
  __syncthreads();
  for (int i = tid; i < n; i += kPermThreads) atomicAdd(&s_next[clamp_expert(topk_ids[i], E)], 1);
  __syncthreads();
  if (warp == 0) {  // exclusive scan: lane owns experts [8 lane, 8 lane + 8)
    int c[kPerLane], local = 0;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int e = lane * kPerLane + j;
      c[j] = e < E ? s_next[e] : 0;
      local += c[j];
    }
    int incl = local;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int u = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += u;
    }
    int run = incl - local;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int e = lane * kPerLane + j;
      if (e < E) s_next[e] = run, offsets[e] = run;
      run += c[j];
    }
    if (lane == 31) offsets[E] = incl;
  }
  __syncthreads();
  int* mine = s_warp + warp * E;
  const unsigned lt = (1u << lane) - 1u;
  for (int base = 0; base < n; base += kPermTile) {
    for (int j = tid; j < kPermWarps * E; j += kPermThreads) s_warp[j] = 0;
    __syncthreads();
    const int wbase = base + warp * 32 * kPermRounds;
    int ex[kPermRounds], rk[kPermRounds];
#pragma unroll
    for (int q = 0; q < kPermRounds; ++q) {
      const int i = wbase + q * 32 + lane;
      const int e = i < n ? clamp_expert(topk_ids[i], E) : -1;
      const unsigned peers = __match_any_sync(0xffffffffu, e);
      const int before = __popc(peers & lt);
      const int prev = e >= 0 ? mine[e] : 0;
      __syncwarp();
      if (e >= 0 && before == 0) mine[e] = prev + __popc(peers);
      __syncwarp();
      ex[q] = e;
      rk[q] = prev + before;
    }
    __syncthreads();
    for (int e = tid; e < E; e += kPermThreads) {
      int run = s_next[e];
      for (int w = 0; w < kPermWarps; ++w) {
        const int c = s_warp[w * E + e];
        s_warp[w * E + e] = run;
        run += c;
      }
      s_next[e] = run;
    }
    __syncthreads();
#pragma unroll
    for (int q = 0; q < kPermRounds; ++q)
      if (ex[q] >= 0) dst[wbase + q * 32 + lane] = mine[ex[q]] + rk[q];
    __syncthreads();
  }
}

// Row copy, one block per token: its row is read once and written to its K permuted rows, in units U
// (16-byte vectors where the row and the pointers allow it).
template <typename U>
__global__ void moe_permute_copy_kernel(const U* x, const int32_t* dst, U* x_perm, int T, int units, int K) {
  pdl_wait();
  pdl_trigger();
  for (int t = blockIdx.x; t < T; t += gridDim.x) {
    const U* src = x + size_t(t) * units;
    int rows[kMaxK];
#pragma unroll
    for (int k = 0; k < kMaxK; ++k) rows[k] = k < K ? dst[size_t(t) * K + k] : 0;
    for (int u = threadIdx.x; u < units; u += blockDim.x) {
      const U val = src[u];
#pragma unroll
      for (int k = 0; k < kMaxK; ++k)
        if (k < K) x_perm[size_t(rows[k]) * units + u] = val;
    }
  }
}

// ---- grouped_matmul: the (expert, row tile) of a block -----------------------------------------------------
// Tiles of bm rows (bm >= 1) over the experts in order (expert e has ceil(rows_e / bm) of them). The whole
// warp calls it (lane: the caller's lane); lane l scans experts [8 l, 8 l + 8). Returns false past the last tile.
__device__ __forceinline__ bool find_tile(const int32_t* offsets, int E, int tile, int bm, int lane, int& e_out,
                                          int& r0, int& r1) {
  int o[kPerLane + 1];
#pragma unroll
  for (int j = 0; j <= kPerLane; ++j) {
    const int e = lane * kPerLane + j;
    o[j] = e <= E ? offsets[e] : 0;
  }
  int local = 0;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int m = lane * kPerLane + j < E ? o[j + 1] - o[j] : 0;
    local += m > 0 ? (m - 1) / bm + 1 : 0;
  }
  int incl = local;
#pragma unroll
  for (int s = 1; s < 32; s <<= 1) {
    const int u = __shfl_up_sync(0xffffffffu, incl, s);
    if (lane >= s) incl += u;
  }
  const int excl = incl - local;
  const unsigned hit = __ballot_sync(0xffffffffu, tile >= excl && tile < incl);
  if (hit == 0) return false;
  const int src = __ffs(hit) - 1;
  int fe = 0, f0 = 0, f1 = 0;
  if (lane == src) {
    int before = excl;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int m = lane * kPerLane + j < E ? o[j + 1] - o[j] : 0;
      const int tiles = m > 0 ? (m - 1) / bm + 1 : 0;
      if (tile >= before && tile < before + tiles) {
        fe = lane * kPerLane + j;
        f0 = o[j] + (tile - before) * bm;
        f1 = o[j + 1] - f0 > bm ? f0 + bm : o[j + 1];
      }
      before += tiles;
    }
  }
  e_out = __shfl_sync(0xffffffffu, fe, src);
  r0 = __shfl_sync(0xffffffffu, f0, src);
  r1 = __shfl_sync(0xffffffffu, f1, src);
  return true;
}

// ---- grouped_matmul: GEMV for few rows per expert (bf16) ---------------------------------------------------
// Grid (ceil(N / 8), min(E, M)): block y takes the y-th expert that has rows, each of its 8 warps one output
// row n, streaming W_e's row n in 16-byte chunks (gemv_common.cuh, kDepth chunks in flight per lane) against
// up to 8 of the expert's activation rows at a time (more rows: further passes over the same weight row, from
// L1 / L2). The floor is the bytes of the experts touched / HBM bandwidth.

constexpr int kGemvRowsPerPass = 8;

template <int R>
__device__ __forceinline__ void gemv_rows(const uint4* wrow, const uint4* xr, bf16* yr, int chunks, int nk, int lane,
                                          int n, int N) {
  gemv::WRows<1> wr;
  wr.row[0] = wrow;
  gemv::wrows_prefetch(wr, lane, nk);
  float acc[1][R];
  gemv::wrows_dot(wr, acc, lane, nk, [&](int t, int c) { return xr[size_t(t) * chunks + c]; });
  if (lane == 0) {
#pragma unroll
    for (int t = 0; t < R; ++t) yr[size_t(t) * N + n] = __float2bfloat16_rn(acc[0][t]);
  }
}

__global__ void __launch_bounds__(gemv::kWarps * 32)
    grouped_gemv_kernel(const bf16* x, const bf16* const* w, const int32_t* offsets, bf16* y, int K, int N, int E) {
  pdl_wait();
  pdl_trigger();
  const int lane = threadIdx.x & 31;
  int e, r0, r1;
  if (!find_tile(offsets, E, blockIdx.y, INT_MAX, lane, e, r0, r1)) return;
  const int n = blockIdx.x * gemv::kWarps + (threadIdx.x >> 5);
  if (n >= N) return;
  const int chunks = K / 8;
  const int nk = gemv::lane_chunks(chunks, lane);
  const uint4* wrow = reinterpret_cast<const uint4*>(w[e] + size_t(n) * K);
  for (int r = r0; r < r1; r += kGemvRowsPerPass) {
    const uint4* xr = reinterpret_cast<const uint4*>(x + size_t(r) * K);
    bf16* yr = y + size_t(r) * N;
    switch (min(r1 - r, kGemvRowsPerPass)) {
      case 1: gemv_rows<1>(wrow, xr, yr, chunks, nk, lane, n, N); break;
      case 2: gemv_rows<2>(wrow, xr, yr, chunks, nk, lane, n, N); break;
      case 3: gemv_rows<3>(wrow, xr, yr, chunks, nk, lane, n, N); break;
      case 4: gemv_rows<4>(wrow, xr, yr, chunks, nk, lane, n, N); break;
      case 5: gemv_rows<5>(wrow, xr, yr, chunks, nk, lane, n, N); break;
      case 6: gemv_rows<6>(wrow, xr, yr, chunks, nk, lane, n, N); break;
      case 7: gemv_rows<7>(wrow, xr, yr, chunks, nk, lane, n, N); break;
      default: gemv_rows<8>(wrow, xr, yr, chunks, nk, lane, n, N); break;
    }
  }
}

// ---- grouped_matmul: tensor-core tiles (bf16) ---------------------------------------------------------------
// Block tile 128 rows x 128 outputs, K in steps of 64 through a 3-stage cp.async pipeline (16-byte copies into
// swizzled shared memory: chunk c of row r at c ^ (r & 7), conflict-free for the ldmatrix reads), 8 warps of
// 64 x 32 (2 along the rows, 4 along the outputs), mma.sync m16n8k16 bf16 -> f32. Grid (ceil(N / 128),
// ceil(M / 128) + min(E, M)): that bounds the tiles sum_e ceil(rows_e / 128). Rows past the expert's last
// and outputs past N load a clamped (valid) row and are not stored; K past the end is zero-filled. Needs
// K % 8 == 0, N % 8 == 0 and 16-byte aligned x, y and expert weights (cudaMalloc'd: 256-byte aligned).
// The floor: FLOPs / the mma rate at prefill sizes; the experts' weight bytes / HBM bandwidth when each expert
// has few row tiles (the tiles of one expert run next to each other, so W_e is re-read from L2).

namespace mm {
constexpr int BM = 128, BN = 128, BK = 64, CH = BK / 8, STAGES = 3, THREADS = 256;
constexpr int kTileBytes = BM * BK * 2;          // A (and B: BN == BM) tile of one stage
constexpr int kStageBytes = 2 * kTileBytes;      // 32 KB
constexpr int kSmem = STAGES * kStageBytes;      // 96 KB: two blocks per SM
static_assert(BM == BN, "one swizzle / load pattern for both tiles");
static_assert(THREADS * 4 == BM * CH, "four 16-byte chunks of each tile per thread and stage");
}  // namespace mm

__global__ void __launch_bounds__(mm::THREADS, 2)
    grouped_mma_kernel(const bf16* x, const bf16* const* w, const int32_t* offsets, bf16* y, int K, int N, int E) {
  using namespace mm;
  using attn::cp_async16;
  extern __shared__ __align__(128) uint8_t smem[];
  int e, r0, r1;
  if (!find_tile(offsets, E, blockIdx.y, BM, threadIdx.x & 31, e, r0, r1)) return;
  const bf16* W = w[e];
  const int n0 = blockIdx.x * BN;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 2, wn = warp & 3;
  const uint32_t sbase = attn::smem_u32(smem);

  // This thread's copies: chunk lc of rows (tid / 8) + 32 it, it = 0..3, of both tiles.
  const int lc = tid & 7;
  const bf16* a_src[4];
  const bf16* b_src[4];
  uint32_t dst_off[4];
#pragma unroll
  for (int it = 0; it < 4; ++it) {
    const int row = (tid >> 3) + 32 * it;
    a_src[it] = x + size_t(min(r0 + row, r1 - 1)) * K + lc * 8;
    b_src[it] = W + size_t(min(n0 + row, N - 1)) * K + lc * 8;
    dst_off[it] = attn::swz<CH>(row, lc);
  }
  auto load = [&](int stage, int kt) {
    const int k0 = kt * BK;
    const bool ok = k0 + lc * 8 < K;
    const uint32_t sa = sbase + stage * kStageBytes, sb = sa + kTileBytes;
#pragma unroll
    for (int it = 0; it < 4; ++it) {
      cp_async16(sa + dst_off[it], ok ? static_cast<const void*>(a_src[it] + k0) : x, ok ? 16 : 0);
      cp_async16(sb + dst_off[it], ok ? static_cast<const void*>(b_src[it] + k0) : W, ok ? 16 : 0);
    }
  };

  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

  const int ktiles = (K + BK - 1) / BK;
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ktiles) load(s, s);
    attn::cp_async_commit();
  }
  // ldmatrix rows of this lane: A (m16 x k16) rows lane % 16 at chunk 2 kk + lane / 16; B (two n8 x k16)
  // rows lane % 8 + 8 (lane / 16) at chunk 2 kk + (lane / 8) % 2.
  const int a_row = wm * 64 + (lane & 15), a_ch = lane >> 4;
  const int b_row = wn * 32 + (lane & 7) + ((lane >> 4) << 3), b_ch = (lane >> 3) & 1;
  for (int kt = 0; kt < ktiles; ++kt) {
    attn::cp_async_wait<STAGES - 2>();
    __syncthreads();  // stage kt landed for every thread; stage kt - 1 is no longer read
    if (kt + STAGES - 1 < ktiles) load((kt + STAGES - 1) % STAGES, kt + STAGES - 1);
    attn::cp_async_commit();
    const uint32_t sa = sbase + (kt % STAGES) * kStageBytes, sb = sa + kTileBytes;
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      uint32_t a[4][4];
#pragma unroll
      for (int mt = 0; mt < 4; ++mt)
        attn::ldmatrix_x4(sa + attn::swz<CH>(a_row + mt * 16, 2 * kk + a_ch), a[mt][0], a[mt][1], a[mt][2], a[mt][3]);
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        uint32_t b0, b1, b2, b3;
        attn::ldmatrix_x4(sb + attn::swz<CH>(b_row + np * 16, 2 * kk + b_ch), b0, b1, b2, b3);
#pragma unroll
        for (int mt = 0; mt < 4; ++mt) {
          attn::mma_bf16(acc[mt][2 * np], a[mt], b0, b1);
          attn::mma_bf16(acc[mt][2 * np + 1], a[mt], b2, b3);
        }
      }
    }
  }
  attn::cp_async_wait<0>();
  const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt) {
    const int r = r0 + wm * 64 + mt * 16 + g;
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const int c = n0 + wn * 32 + nt * 8 + 2 * t4;
      if (c >= N) continue;  // N % 8 == 0: c + 1 < N too
      if (r < r1)
        *reinterpret_cast<uint32_t*>(y + size_t(r) * N + c) = attn::pack_bf16(acc[mt][nt][0], acc[mt][nt][1]);
      if (r + 8 < r1)
        *reinterpret_cast<uint32_t*>(y + size_t(r + 8) * N + c) = attn::pack_bf16(acc[mt][nt][2], acc[mt][nt][3]);
    }
  }
}

// ---- grouped_matmul: CUDA-core tiles (any K / N; bf16, and f32 for the float32 table) -----------------------
// 16 x 16 output tiles through shared memory, f32 accumulation (fma in k order). Grid (ceil(N / 16),
// ceil(M / 16) + min(E, M)).

constexpr int kTile = 16;

template <typename T>
__global__ void grouped_tiled_kernel(const T* x, const T* const* w, const int32_t* offsets, T* y, int K, int N, int E) {
  __shared__ float xs[kTile][kTile + 1];  // [row][k]
  __shared__ float ws[kTile][kTile + 1];  // [output][k]
  pdl_wait();
  pdl_trigger();
  int e, r0, r1;
  if (!find_tile(offsets, E, blockIdx.y, kTile, (threadIdx.y * kTile + threadIdx.x) & 31, e, r0, r1))
    return;  // the same answer for every warp
  const T* W = w[e];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int n0 = blockIdx.x * kTile;
  float acc = 0.0f;
  for (int k0 = 0; k0 < K; k0 += kTile) {
    const int kk = k0 + tx;
    xs[ty][tx] = (r0 + ty < r1 && kk < K) ? to_f(x[size_t(r0 + ty) * K + kk]) : 0.0f;
    ws[ty][tx] = (n0 + ty < N && kk < K) ? to_f(W[size_t(n0 + ty) * K + kk]) : 0.0f;
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kTile; ++j) acc = __fmaf_rn(xs[ty][j], ws[tx][j], acc);
    __syncthreads();
  }
  const int r = r0 + ty, n = n0 + tx;
  if (r < r1 && n < N) y[size_t(r) * N + n] = from_f<T>(acc);
}

// ---- moe_unpermute -----------------------------------------------------------------------------------------
// One block per token: thread 0 orders the token's K choices by expert id (HF's loop order) and computes the
// shared gate; every thread then sums its VEC-element slices of the K expert rows (f32, mul then add in that
// order, as the CPU), adds gate * shared, and rounds once.

template <typename T, int VEC>
struct Vec;
template <>
struct Vec<bf16, 8> {
  static __device__ __forceinline__ void load(const bf16* p, float (&f)[8]) {
    gemv::unpack8(*reinterpret_cast<const uint4*>(p), f);
  }
  static __device__ __forceinline__ void store(bf16* p, const float (&f)[8]) {
    uint4 u;
    u.x = attn::pack_bf16(f[0], f[1]);
    u.y = attn::pack_bf16(f[2], f[3]);
    u.z = attn::pack_bf16(f[4], f[5]);
    u.w = attn::pack_bf16(f[6], f[7]);
    *reinterpret_cast<uint4*>(p) = u;
  }
};
template <>
struct Vec<float, 4> {
  static __device__ __forceinline__ void load(const float* p, float (&f)[4]) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    f[0] = v.x, f[1] = v.y, f[2] = v.z, f[3] = v.w;
  }
  static __device__ __forceinline__ void store(float* p, const float (&f)[4]) {
    *reinterpret_cast<float4*>(p) = make_float4(f[0], f[1], f[2], f[3]);
  }
};
template <typename T>
struct Vec<T, 1> {
  static __device__ __forceinline__ void load(const T* p, float (&f)[1]) { f[0] = to_f(*p); }
  static __device__ __forceinline__ void store(T* p, const float (&f)[1]) { *p = from_f<T>(f[0]); }
};

template <typename T, int VEC>
__global__ void moe_unpermute_kernel(const T* y, const int32_t* dst, const int32_t* topk_ids, const float* topk_w,
                                     const T* shared, const float* shared_gate, T* out, int T_, int C, int K) {
  __shared__ int s_row[kMaxK];
  __shared__ float s_w[kMaxK];
  __shared__ float s_g;
  pdl_wait();
  pdl_trigger();
  for (int t = blockIdx.x; t < T_; t += gridDim.x) {
    if (threadIdx.x == 0) {
      int id[kMaxK], kk[kMaxK];
      for (int k = 0; k < K; ++k) {  // insertion sort of the choices by expert id
        const int v = topk_ids[size_t(t) * K + k];
        int j = k;
        while (j > 0 && id[j - 1] > v) id[j] = id[j - 1], kk[j] = kk[j - 1], --j;
        id[j] = v, kk[j] = k;
      }
      for (int j = 0; j < K; ++j) {
        s_row[j] = dst[size_t(t) * K + kk[j]];
        s_w[j] = topk_w[size_t(t) * K + kk[j]];
      }
      float g = 0.0f;
      if (shared) g = shared_gate ? __fdiv_rn(1.0f, __fadd_rn(1.0f, float(exp(-double(shared_gate[t]))))) : 1.0f;
      s_g = g;
    }
    __syncthreads();
    const int nv = C / VEC;
    for (int v = threadIdx.x; v < nv; v += blockDim.x) {
      float acc[VEC], f[VEC];
#pragma unroll
      for (int i = 0; i < VEC; ++i) acc[i] = 0.0f;
      for (int j = 0; j < K; ++j) {
        Vec<T, VEC>::load(y + size_t(s_row[j]) * C + size_t(v) * VEC, f);
        const float wj = s_w[j];
#pragma unroll
        for (int i = 0; i < VEC; ++i) acc[i] = __fadd_rn(acc[i], __fmul_rn(wj, f[i]));
      }
      if (shared) {
        Vec<T, VEC>::load(shared + size_t(t) * C + size_t(v) * VEC, f);
#pragma unroll
        for (int i = 0; i < VEC; ++i) acc[i] = __fadd_rn(acc[i], __fmul_rn(s_g, f[i]));
      }
      Vec<T, VEC>::store(out + size_t(t) * C + size_t(v) * VEC, acc);
    }
    __syncthreads();  // s_row / s_w are rewritten for the next token
  }
}

// ---- host side ---------------------------------------------------------------------------------------------

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

void check_ek(int E, int K, const char* op) {
  if (E < 1 || E > kMaxE || K < 1 || K > kMaxK || K > E)
    throw std::runtime_error(std::string(op) + ": CUDA takes 1 <= K <= 8, K <= E <= 256 (E " + std::to_string(E) +
                             ", K " + std::to_string(K) + ")");
}

unsigned token_grid(int T) {
  const int cap = sgl_sm_count() * 32;
  return unsigned(T < cap ? T : cap);
}

void moe_permute_impl(const MoePermuteParams& p, size_t es) {
  check_ek(p.E, p.K, "moe_permute");
  if (p.T <= 0) return;
  const int n = p.T * p.K;
  sgl_launch(moe_permute_index_kernel, dim3(1), dim3(kPermThreads), 0, p.topk_ids, p.dst, p.offsets, n, p.E);
  const size_t row = size_t(p.C) * es;
  const dim3 grid(token_grid(p.T));
  if (row % 16 == 0 && aligned16(p.x) && aligned16(p.x_perm)) {
    const int units = int(row / 16);
    sgl_launch(moe_permute_copy_kernel<uint4>, grid, dim3(block_for(units, 256)), 0, static_cast<const uint4*>(p.x),
               static_cast<const int32_t*>(p.dst), static_cast<uint4*>(p.x_perm), p.T, units, p.K);
  } else if (row % 4 == 0) {
    const int units = int(row / 4);
    sgl_launch(moe_permute_copy_kernel<uint32_t>, grid, dim3(block_for(units, 256)), 0,
               static_cast<const uint32_t*>(p.x), static_cast<const int32_t*>(p.dst), static_cast<uint32_t*>(p.x_perm),
               p.T, units, p.K);
  } else {
    const int units = int(row / 2);
    sgl_launch(moe_permute_copy_kernel<uint16_t>, grid, dim3(block_for(units, 256)), 0,
               static_cast<const uint16_t*>(p.x), static_cast<const int32_t*>(p.dst), static_cast<uint16_t*>(p.x_perm),
               p.T, units, p.K);
  }
}

// Grouped-matmul path: 0 = chosen by shape; 1 GEMV, 2 tensor-core tiles, 3 CUDA-core tiles (tests / benches).
int g_force_path = 0;

// GEMV while the rows are few per expert: up to 4 per expert on average (the tiles' 128 rows would mostly be
// clamped copies), and always for decode batches of up to 32 pairs.
bool use_gemv(const GroupedMatmulParams& p) { return p.M <= 32 || p.M <= 4 * p.E; }

template <typename T>
void launch_tiled(const GroupedMatmulParams& p) {
  const dim3 grid(unsigned((p.N + kTile - 1) / kTile), unsigned((p.M + kTile - 1) / kTile + std::min(p.E, p.M)));
  sgl_launch(grouped_tiled_kernel<T>, grid, dim3(kTile, kTile), 0, static_cast<const T*>(p.x),
             reinterpret_cast<const T* const*>(p.w), p.offsets, static_cast<T*>(p.y), p.K, p.N, p.E);
}

void check_grouped(const GroupedMatmulParams& p, DType want, const char* op) {
  if (p.w_dtype != want)
    throw std::runtime_error(std::string(op) + ": expert weights must be " + dtype_name(want) + " (from place_weight), got " +
                             dtype_name(p.w_dtype));
  if (p.E < 1 || p.E > kMaxE) throw std::runtime_error(std::string(op) + ": CUDA takes 1 <= E <= 256");
}

template <typename T>
void moe_unpermute_impl(const MoeUnpermuteParams& p) {
  if (p.K < 1 || p.K > kMaxK) throw std::runtime_error("moe_unpermute: CUDA takes 1 <= K <= 8");
  if (p.T <= 0) return;
  constexpr int kVec = 16 / sizeof(T);
  const bool vec = p.C % kVec == 0 && aligned16(p.y) && aligned16(p.out) && (!p.shared || aligned16(p.shared));
  const int nv = vec ? p.C / kVec : p.C;
  const dim3 grid(token_grid(p.T)), block(block_for(nv, 256));
  const T* y = static_cast<const T*>(p.y);
  const T* sh = static_cast<const T*>(p.shared);
  T* out = static_cast<T*>(p.out);
  if (vec)
    sgl_launch(moe_unpermute_kernel<T, kVec>, grid, block, 0, y, p.dst, p.topk_ids, p.topk_w, sh, p.shared_gate, out,
               p.T, p.C, p.K);
  else
    sgl_launch(moe_unpermute_kernel<T, 1>, grid, block, 0, y, p.dst, p.topk_ids, p.topk_w, sh, p.shared_gate, out, p.T,
               p.C, p.K);
}

}  // namespace

void moe_route_cuda(const MoeRouteParams& p) {
  check_ek(p.E, p.K, "moe_route");
  if (p.T <= 0) return;
  sgl_launch(moe_route_kernel, dim3(unsigned((p.T + kRouteWarps - 1) / kRouteWarps)), dim3(kRouteWarps * 32), 0,
             p.logits, p.topk_ids, p.topk_w, p.counts, p.count_tokens, p.T, p.E, p.K, p.renormalize);
}

void moe_permute_cuda(const MoePermuteParams& p) { moe_permute_impl(p, sizeof(bf16)); }
void moe_permute_cuda_f32(const MoePermuteParams& p) { moe_permute_impl(p, sizeof(float)); }

void grouped_matmul_cuda(const GroupedMatmulParams& p) {
  check_grouped(p, DType::BF16, "grouped_matmul");
  if (p.M <= 0 || p.N <= 0) return;
  const bool vec_ok = p.K % 8 == 0 && p.K > 0 && aligned16(p.x) && aligned16(p.y);
  int path = g_force_path;
  if (path == 1 && !vec_ok) path = 3;
  if (path == 2 && !(vec_ok && p.N % 8 == 0)) path = 3;
  if (path == 0) path = !vec_ok ? 3 : use_gemv(p) ? 1 : p.N % 8 == 0 ? 2 : 3;
  const bf16* x = static_cast<const bf16*>(p.x);
  const bf16* const* w = reinterpret_cast<const bf16* const*>(p.w);
  bf16* y = static_cast<bf16*>(p.y);
  if (path == 1) {
    const dim3 grid(unsigned((p.N + gemv::kWarps - 1) / gemv::kWarps), unsigned(std::min(p.E, p.M)));
    sgl_launch(grouped_gemv_kernel, grid, dim3(gemv::kWarps * 32), 0, x, w, p.offsets, y, p.K, p.N, p.E);
  } else if (path == 2) {
    static const bool attr_set = [] {
      SGL_CUDA_CHECK(cudaFuncSetAttribute(grouped_mma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, mm::kSmem));
      return true;
    }();
    (void)attr_set;
    const dim3 grid(unsigned((p.N + mm::BN - 1) / mm::BN), unsigned((p.M + mm::BM - 1) / mm::BM + std::min(p.E, p.M)));
    // A plain launch (no PDL): a multi-wave kernel that let its successor in early would lose SM slots to it.
    grouped_mma_kernel<<<grid, mm::THREADS, mm::kSmem, sgl_stream()>>>(x, w, p.offsets, y, p.K, p.N, p.E);
    SGL_CUDA_LAUNCH_CHECK();
  } else {
    launch_tiled<bf16>(p);
  }
}

void grouped_matmul_cuda_f32(const GroupedMatmulParams& p) {
  check_grouped(p, DType::F32, "grouped_matmul");
  if (p.M <= 0 || p.N <= 0) return;
  launch_tiled<float>(p);
}

void grouped_matmul_cuda_force_path(int path) { g_force_path = path; }

void moe_unpermute_cuda(const MoeUnpermuteParams& p) { moe_unpermute_impl<bf16>(p); }
void moe_unpermute_cuda_f32(const MoeUnpermuteParams& p) { moe_unpermute_impl<float>(p); }

}  // namespace sgl
