// Split-KV ("flash-decoding") paged decode on tensor cores, D = 64 or 128, every q_len <= 1.
//
// Grid (num_splits, Hkv * ngroups, B): a block owns one KV head of one sequence, a chunk of `chunk` keys of
// it, and up to 16 of the G = H / Hkv query heads that share that KV head (ngroups = ceil(G / 16)), so each
// K/V row is read from memory once for all of them. The G query rows form the M side of mma.m16n8k16 (rows
// past G are zero and discarded): decode is bandwidth-bound, the idle tensor-core rows cost nothing that
// shows. KV tiles of BN = 64 keys stream through a STAGES-deep cp.async ring (16-byte copies, a whole
// 128/256-byte row per 8/16 threads); each of the 4 warps takes 16 keys of every tile and keeps its own
// online-softmax state, merged across warps through shared memory at the end. With one split the block
// writes bf16 output; otherwise it writes (O / l in f32, lse in log2 units) to the workspace and
// merge_kernel combines the splits of each (sequence, head).
//
// Shared memory: Q [16 x D] + STAGES x (K, V) [BN x D]:
//   D = 128, STAGES = 3: 4 + 96 KiB (two blocks per SM); D = 64, STAGES = 4: 2 + 64 KiB.
//
// Splits: the host knows only max_kv_len. For each candidate count S (chunk = ceil(max_kv_len / S) rounded
// up to BN, at least kMinChunk keys, S <= kMaxSplits) it estimates the time as
// ceil(blocks / resident block slots) * (chunk + kBlockOverhead) and keeps the cheapest, so a grid that
// already fills the GPU stays unsplit and a small batch with long contexts splits until every SM slot has
// work. SGL_ATTN_SPLITS=<n> in the environment forces n (read once; for tuning).
#include <algorithm>
#include <cstdlib>

#include "attention_common.cuh"
#include "cuda_common.cuh"

namespace sgl {
namespace attn {

namespace {

constexpr int kDecodeWarps = 4;
constexpr int kDecodeThreads = kDecodeWarps * 32;
constexpr int kDecodeBN = 64;          // keys per pipeline stage (16 per warp)
constexpr int kMaxSplits = 64;
constexpr int kMinChunk = 256;         // keys: a split is at least this long
constexpr int kBlockOverhead = 96;     // a block's fixed cost (prologue, merge), in key-equivalents

template <int D>
struct DecodeCfg {
  static constexpr int kStages = D == 128 ? 3 : 4;
  static constexpr int kChunks = D / 8;
  static constexpr int kQBytes = 16 * D * 2;
  static constexpr int kTileBytes = kDecodeBN * D * 2;  // one K or V tile
  static constexpr int kStageBytes = 2 * kTileBytes;
  static constexpr int kPipeBytes = kStages * kStageBytes;
  // cross-warp merge, reusing the pipeline: O [4][16][D] f32, m and l [4][16]
  static constexpr int kMergeBytes = kDecodeWarps * 16 * D * 4 + 2 * kDecodeWarps * 16 * 4;
  static constexpr int kSmem = kQBytes + (kPipeBytes > kMergeBytes ? kPipeBytes : kMergeBytes);
  static_assert(D == 64 || D == 128, "tensor-core path is for D = 64 / 128");
  static_assert(kDecodeBN == 16 * kDecodeWarps, "each warp takes 16 keys of a tile");
};

template <int D>
__global__ void __launch_bounds__(kDecodeThreads)
    decode_tc_kernel(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k_cache,
                     const __nv_bfloat16* __restrict__ v_cache, __nv_bfloat16* __restrict__ out,
                     float* __restrict__ part_o, float* __restrict__ part_lse, const int32_t* __restrict__ qo_indptr,
                     const int32_t* __restrict__ kv_indptr, const int32_t* __restrict__ page_ids,
                     const int32_t* __restrict__ kv_lens, int H, int Hkv, int P, float scale_log2, int num_splits,
                     int chunk, int ngroups) {
  pdl_wait();  // PDL (cuda_common.cuh): q and this step's K/V come from the kernel before
  pdl_trigger();
  using Cfg = DecodeCfg<D>;
  constexpr int STAGES = Cfg::kStages, CH = Cfg::kChunks, BN = kDecodeBN, NT = kDecodeThreads;
  constexpr int DB = D / 8, KQ = D / 16;

  const int split = blockIdx.x, kvh = blockIdx.y / ngroups, grp = blockIdx.y % ngroups, b = blockIdx.z;
  const int t0 = qo_indptr[b];
  if (qo_indptr[b + 1] - t0 <= 0) return;  // no query this step
  const int kv_len = max(kv_lens[b], 0);
  const int splits_b = max(1, (kv_len + chunk - 1) / chunk);  // splits this sequence actually has
  if (split >= splits_b) return;
  const int G = H / Hkv;
  const int h0 = kvh * G + grp * 16;
  const int rows = min(16, G - grp * 16);
  const int k_begin = split * chunk, k_end = min(kv_len, k_begin + chunk);
  const int n_tiles = k_end > k_begin ? (k_end - k_begin + BN - 1) / BN : 0;

  extern __shared__ __align__(128) uint8_t smem[];
  const uint32_t sQ = smem_u32(smem);
  const uint32_t sPipe = sQ + Cfg::kQBytes;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t row_stride = int64_t(Hkv) * D;
  const int64_t head_off = int64_t(kvh) * D;
  const int32_t* seq_pages = page_ids + kv_indptr[b];

  // Loader layout: a row's CH chunks on CH consecutive threads (one contiguous 16 * CH-byte read), NT / CH
  // rows per pass (a multiple of 8: the swizzle term (row & 7) is the same on every pass). The page ids of
  // a tile are fetched into registers one iteration before its copies are issued, so the page-table read
  // never stalls the issue.
  constexpr int kRowsPerPass = NT / CH, kPasses = BN / kRowsPerPass;
  static_assert(kRowsPerPass % 8 == 0 && BN % kRowsPerPass == 0, "loader layout");
  const int ld_row = tid / CH, ld_chunk = tid % CH;
  const uint32_t ld_dst = swz<CH>(ld_row, ld_chunk);
  int pg[kPasses];
  auto fetch_pages = [&](int tile) {
#pragma unroll
    for (int it = 0; it < kPasses; it++) {
      const int key = k_begin + tile * BN + ld_row + it * kRowsPerPass;
      pg[it] = key < k_end ? seq_pages[key / P] : -1;
    }
  };
  auto issue_tile = [&](int tile, int st) {  // tile `tile` (keys k_begin + tile * BN ...) into stage `st`
    const uint32_t dK = sPipe + st * Cfg::kStageBytes + ld_dst;
    const uint32_t dV = dK + Cfg::kTileBytes;
#pragma unroll
    for (int it = 0; it < kPasses; it++) {
      const int key = k_begin + tile * BN + ld_row + it * kRowsPerPass;
      const uint32_t step = it * kRowsPerPass * CH * 16;
      if (pg[it] >= 0) {
        const int64_t off = (int64_t(pg[it]) * P + key % P) * row_stride + head_off + ld_chunk * 8;
        cp_async16(dK + step, k_cache + off, 16);
        cp_async16(dV + step, v_cache + off, 16);
      } else {
        cp_async16(dK + step, k_cache, 0);
        cp_async16(dV + step, v_cache, 0);
      }
    }
  };

  // Q rows of this group (zero past G), its own group; then STAGES - 1 tiles, one group each.
  for (int i = tid; i < 16 * CH; i += NT) {
    const int r = i / CH, c = i % CH;
    const bool ok = r < rows;
    cp_async16(sQ + swz<CH>(r, c), ok ? q + (int64_t(t0) * H + h0 + r) * D + c * 8 : q, ok ? 16 : 0);
  }
  cp_async_commit();
#pragma unroll
  for (int st = 0; st < STAGES - 1; st++) {
    fetch_pages(st);
    if (st < n_tiles) issue_tile(st, st);
    cp_async_commit();
  }
  fetch_pages(STAGES - 1);

  const int g = lane >> 2, t4 = lane & 3;
  uint32_t qa[KQ][4];
  cp_async_wait<STAGES - 1>();  // the Q group
  __syncthreads();
#pragma unroll
  for (int kk = 0; kk < KQ; kk++)
    ldmatrix_x4(sQ + swz<CH>(lane & 15, kk * 2 + (lane >> 4)), qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3]);

  float o_acc[DB][4];
#pragma unroll
  for (int d = 0; d < DB; d++) o_acc[d][0] = o_acc[d][1] = o_acc[d][2] = o_acc[d][3] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};

  const int wk = warp * 16;  // this warp's keys within a tile
  const int kb_row = wk + (lane & 7) + ((lane >> 4) << 3), kb_chunk = (lane >> 3) & 1;
  const int vb_row = wk + (lane & 7) + (((lane >> 3) & 1) << 3), vb_chunk = lane >> 4;

  for (int j = 0; j < n_tiles; j++) {
    cp_async_wait<STAGES - 2>();  // tile j has landed
    __syncthreads();              // for every thread, and tile j - 1's stage is free
    if (j + STAGES - 1 < n_tiles) issue_tile(j + STAGES - 1, (j + STAGES - 1) % STAGES);
    cp_async_commit();
    fetch_pages(j + STAGES);

    const uint32_t kbase = sPipe + (j % STAGES) * Cfg::kStageBytes;
    const uint32_t vbase = kbase + Cfg::kTileBytes;
    const int key0 = k_begin + j * BN + wk;  // first key of this warp
    if (key0 >= k_end) continue;             // warp-uniform: nothing of this tile for this warp

    float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
    for (int kk = 0; kk < KQ; kk++) {
      uint32_t b0, b1, b2, b3;
      ldmatrix_x4(kbase + swz<CH>(kb_row, kk * 2 + kb_chunk), b0, b1, b2, b3);
      mma_bf16(s[0], qa[kk], b0, b1);
      mma_bf16(s[1], qa[kk], b2, b3);
    }
    if (key0 + 16 > k_end) {
#pragma unroll
      for (int n = 0; n < 2; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
          if (key0 + n * 8 + 2 * t4 + (e & 1) >= k_end) s[n][e] = -INFINITY;
    }
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
      float mx = fmaxf(fmaxf(s[0][2 * hr], s[0][2 * hr + 1]), fmaxf(s[1][2 * hr], s[1][2 * hr + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_run[hr], mx * scale_log2);
      const float m_use = safe_max(m_new);
      const float alpha = exp2f(m_run[hr] - m_use);
      m_run[hr] = m_new;
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < 2; n++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
          const float pv = exp2f(fmaf(s[n][2 * hr + e], scale_log2, -m_use));
          s[n][2 * hr + e] = pv;
          sum += pv;
        }
      l_run[hr] = l_run[hr] * alpha + sum;
#pragma unroll
      for (int d = 0; d < DB; d++) {
        o_acc[d][2 * hr] *= alpha;
        o_acc[d][2 * hr + 1] *= alpha;
      }
    }
    const uint32_t a[4] = {pack_bf16(s[0][0], s[0][1]), pack_bf16(s[0][2], s[0][3]), pack_bf16(s[1][0], s[1][1]),
                           pack_bf16(s[1][2], s[1][3])};
#pragma unroll
    for (int dp = 0; dp < DB / 2; dp++) {
      uint32_t b0, b1, b2, b3;
      ldmatrix_x4_trans(vbase + swz<CH>(vb_row, dp * 2 + vb_chunk), b0, b1, b2, b3);
      mma_bf16(o_acc[2 * dp], a, b0, b1);
      mma_bf16(o_acc[2 * dp + 1], a, b2, b3);
    }
  }

  // ---- merge the 4 warps' states through shared memory (the pipeline area is free now) ----
  cp_async_wait<0>();
  __syncthreads();
  float* sO = reinterpret_cast<float*>(smem + Cfg::kQBytes);  // [warp][16][D]
  float* sM = sO + kDecodeWarps * 16 * D;                      // [warp][16]
  float* sL = sM + kDecodeWarps * 16;                          // [warp][16]
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    float l = l_run[hr];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int row = g + hr * 8;
    if (t4 == 0) {
      sM[warp * 16 + row] = m_run[hr];
      sL[warp * 16 + row] = l;
    }
    float* orow = sO + (warp * 16 + row) * D;
#pragma unroll
    for (int d = 0; d < DB; d++)
      *reinterpret_cast<float2*>(orow + d * 8 + 2 * t4) = make_float2(o_acc[d][2 * hr], o_acc[d][2 * hr + 1]);
  }
  __syncthreads();
  for (int i = tid; i < rows * D; i += NT) {
    const int r = i / D, d = i % D;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; w++) M = fmaxf(M, sM[w * 16 + r]);
    float L = 0.0f, O = 0.0f;
    if (M != -INFINITY) {
#pragma unroll
      for (int w = 0; w < kDecodeWarps; w++) {
        const float wt = exp2f(sM[w * 16 + r] - M);  // a warp that saw no key: -inf -> 0
        L += wt * sL[w * 16 + r];
        O += wt * sO[(w * 16 + r) * D + d];
      }
    }
    const float o = L > 0.0f ? O / L : 0.0f;
    const int h = h0 + r;
    if (num_splits == 1) {
      out[(int64_t(t0) * H + h) * D + d] = __float2bfloat16_rn(o);
    } else {
      const int64_t slot = (int64_t(b) * H + h) * num_splits + split;
      part_o[slot * D + d] = o;
      if (d == 0) part_lse[slot] = L > 0.0f ? M + __log2f(L) : -INFINITY;
    }
  }
}

// One warp per (sequence, head): out = sum_s 2^(lse_s - M) O_s / sum_s 2^(lse_s - M).
__global__ void __launch_bounds__(128)
    merge_kernel(const float* __restrict__ part_o, const float* __restrict__ part_lse,
                 __nv_bfloat16* __restrict__ out, const int32_t* __restrict__ qo_indptr,
                 const int32_t* __restrict__ kv_lens, int B, int H, int D, int num_splits, int chunk) {
  pdl_wait();  // the partials come from decode_tc_kernel
  pdl_trigger();
  const int lane = threadIdx.x & 31;
  const int bh = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (bh >= B * H) return;
  const int b = bh / H, h = bh % H;
  const int t0 = qo_indptr[b];
  if (qo_indptr[b + 1] - t0 <= 0) return;
  const int kv_len = max(kv_lens[b], 0);
  const int n = min(num_splits, max(1, (kv_len + chunk - 1) / chunk));
  const float* lse = part_lse + int64_t(bh) * num_splits;
  const float* po = part_o + int64_t(bh) * num_splits * D;
  float M = -INFINITY;
  for (int s = lane; s < n; s += 32) M = fmaxf(M, lse[s]);
#pragma unroll
  for (int x = 16; x > 0; x >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, x));
  __nv_bfloat16* o = out + (int64_t(t0) * H + h) * D;
  if (M == -INFINITY) {  // no key at all
    for (int d = lane; d < D; d += 32) o[d] = __float2bfloat16_rn(0.0f);
    return;
  }
  float W = 0.0f;
  for (int s = lane; s < n; s += 32) W += exp2f(lse[s] - M);
#pragma unroll
  for (int x = 16; x > 0; x >>= 1) W += __shfl_xor_sync(0xffffffffu, W, x);
  const float inv = 1.0f / W;
  for (int d = lane; d < D; d += 32) {
    float acc = 0.0f;
    for (int s = 0; s < n; s++) acc += exp2f(lse[s] - M) * po[int64_t(s) * D + d];
    o[d] = __float2bfloat16_rn(acc * inv);
  }
}

struct SplitPlan {
  int splits, chunk;
};

SplitPlan plan_splits(int max_kv_len, int blocks_base, int slots) {
  const int L = std::max(max_kv_len, 1);
  auto chunk_for = [&](int s) {
    int c = (L + s - 1) / s;
    c = std::max(c, kMinChunk);
    return (c + kDecodeBN - 1) / kDecodeBN * kDecodeBN;
  };
  static const int forced = [] {
    const char* e = std::getenv("SGL_ATTN_SPLITS");
    return e ? std::atoi(e) : 0;
  }();
  if (forced > 0) {
    const int c = std::max(kDecodeBN, ((L + forced - 1) / forced + kDecodeBN - 1) / kDecodeBN * kDecodeBN);
    return {(L + c - 1) / c, c};
  }
  SplitPlan best{1, chunk_for(1)};
  double best_cost = 1e300;
  for (int s = 1; s <= kMaxSplits; s++) {
    const int c = chunk_for(s);
    const int s_eff = (L + c - 1) / c;  // below s where the minimum chunk (or rounding) caps the count
    const int64_t blocks = int64_t(blocks_base) * s_eff;
    const int64_t waves = (blocks + slots - 1) / slots;
    const double cost = double(waves) * double(c + kBlockOverhead);
    if (cost < best_cost * 0.999) {  // ties go to fewer splits
      best_cost = cost;
      best = {s_eff, c};
    }
  }
  return best;
}

template <int D>
void launch(const AttentionParams& p) {
  using Cfg = DecodeCfg<D>;
  auto kernel = decode_tc_kernel<D>;
  static const int blocks_per_sm = [&] {
    SGL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmem));
    int n = 0;
    SGL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kDecodeThreads, Cfg::kSmem));
    return std::max(n, 1);
  }();
  const int G = p.H / p.Hkv;
  const int ngroups = (G + 15) / 16;
  const int blocks_base = p.B * p.Hkv * ngroups;
  const SplitPlan plan = plan_splits(p.max_kv_len, blocks_base, sgl_sm_count() * blocks_per_sm);

  float* part_o = nullptr;
  float* part_lse = nullptr;
  if (plan.splits > 1) {
    const size_t n = size_t(p.B) * p.H * plan.splits;
    part_o = static_cast<float*>(sgl_workspace(n * (p.D + 1) * sizeof(float)));
    part_lse = part_o + n * p.D;
  }
  const dim3 grid(plan.splits, p.Hkv * ngroups, p.B);
  sgl_launch(kernel, grid, dim3(kDecodeThreads), size_t(Cfg::kSmem), static_cast<const __nv_bfloat16*>(p.q),
             static_cast<const __nv_bfloat16*>(p.k_cache), static_cast<const __nv_bfloat16*>(p.v_cache),
             static_cast<__nv_bfloat16*>(p.out), part_o, part_lse, p.qo_indptr, p.kv_indptr, p.kv_page_indices,
             p.kv_lens, p.H, p.Hkv, p.P, p.scale * kLog2e, plan.splits, plan.chunk, ngroups);
  if (plan.splits > 1) {
    const int warps = p.B * p.H;
    sgl_launch(merge_kernel, dim3(unsigned((warps + 3) / 4)), dim3(128), 0, static_cast<const float*>(part_o),
               static_cast<const float*>(part_lse), static_cast<__nv_bfloat16*>(p.out), p.qo_indptr, p.kv_lens, p.B,
               p.H, p.D, plan.splits, plan.chunk);
  }
}

}  // namespace

void launch_decode_tc(const AttentionParams& p) {
  if (p.D == 128) launch<128>(p);
  else launch<64>(p);
}

}  // namespace attn
}  // namespace sgl
