// Paged prefill attention on Hopper's warpgroup MMA (wgmma, sm_90a), D = 64 or 128. Compiled only for
// sm_90a (CMake target sgl_cuda_sm90a); launch_prefill_wgmma() declines (returns false) on other devices,
// and the mma.sync kernel of attention_prefill.cu runs instead.
//
// Grid (ceil(max_q_len / 128), H, B), heaviest causal tiles first. A block of two warpgroups owns 128 query
// rows of one sequence and head (64 per warpgroup) and walks the KV tiles of that head's KV head, BN = 128
// keys at a time, gathered through the page table with 16-byte cp.async into a double buffer (tile j+1 loads
// while tile j is computed), as the mma.sync kernel does. Per tile and warpgroup:
//   S[64 x 128] = Q Kᵀ: D/16 wgmma.m64n128k16, Q and K from shared memory (K-major descriptors);
//   mask (only tiles that cross the diagonal or kv_len), online softmax in the log2 domain, O *= alpha;
//   O[64 x D] += P V: 8 wgmma.m64nDk16, P from registers (the S accumulator rounded to bf16: the C layout
//   of S is the A fragment layout), V from shared memory as an MN-major operand (imm-trans-b).
// Shared memory (128-byte swizzle, see wgmma.cuh): Q [128 x D], K and V [2][128 x D], key offsets [2][128].
//   D = 128: 32 + 128 + 2 KiB = 162 KiB (one block per SM); D = 64: 16 + 64 + 2 = 82 KiB.
// The epilogue stages O through the warpgroup's own Q rows and writes 16-byte rows.
//
// Split-KV (the plain schedule, grids smaller than the GPU): a short prefill has few blocks (500 tokens of
// 12 heads: 48 blocks on 132 SMs) and its critical path is the last query tile's walk over every KV tile
// (4 tiles, one after the other). Then grid.x holds `splits` blocks per query tile, each walking `chunk` KV
// tiles of it; every block of a query tile that has more than one chunk stores its unnormalised O, running
// max and sum (f32, in the threads' own fragment order: coalesced) to the workspace and counts itself in on
// the tile's counter; the last one in merges the others' partials into its registers and writes the output
// as an unsplit block does. The counters reset themselves (the last block zeroes its own).
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdlib>

#include "attention_common.cuh"
#include "cuda_common.cuh"
#include "wgmma.cuh"

namespace sgl {
namespace attn {

namespace {

template <int D>
struct WgCfg {
  static constexpr int BM = 128, BN = 128, kThreads = 256;
  static constexpr int CH = D / 8;                    // 16-byte chunks per row
  static constexpr int kQBytes = BM * D * 2;          // D / 64 column blocks of BM x 128 B
  static constexpr int kTileBytes = BN * D * 2;       // one K or V tile
  static constexpr int kSmem = kQBytes + 4 * kTileBytes + 2 * BN * 8 + 1024;  // + 1024-byte alignment slack
  static_assert(D == 64 || D == 128, "wgmma prefill: D = 64 or 128");
};

// Byte offset of (row, 16-byte chunk) in a swizzled tile of `rows` rows (column blocks of 64 elements).
__device__ __forceinline__ uint32_t sw128(int rows, int row, int chunk) {
  return uint32_t((chunk >> 3) * rows * 128 + row * 128 + (((chunk & 7) ^ (row & 7)) << 4));
}

// ---- per-warpgroup tile math, shared by the two schedules ----------------------------------------------
#if SGL_WGMMA_ARCH

// S[64 x 128] = Q Kᵀ over D / 16 k-steps: the warpgroup's Q rows and the K tile, both K-major.
template <int D>
__device__ __forceinline__ void issue_qk(float (&s)[64], uint32_t q_wg, uint32_t kb) {
  constexpr int BM = WgCfg<D>::BM, BN = WgCfg<D>::BN;
#pragma unroll
  for (int kk = 0; kk < D / 16; kk++) {
    const uint32_t col = (kk & 3) * 32u;  // the k16 step within the 128-byte row
    const uint64_t da = wgmma::desc_sw128(q_wg + (kk >> 2) * BM * 128 + col, 16, 1024);
    const uint64_t db = wgmma::desc_sw128(kb + (kk >> 2) * BN * 128 + col, 16, 1024);
    wgmma::wgmma_m64n128k16_ss(s, da, db, kk > 0 ? 1 : 0);
  }
}

// O[64 x D] += P V over BN / 16 k-steps: P from registers, V MN-major.
template <int D>
__device__ __forceinline__ void issue_pv(float (&o)[D / 2], const uint32_t (&pf)[8][4], uint32_t vb) {
  constexpr int BN = WgCfg<D>::BN;
#pragma unroll
  for (int kk = 0; kk < BN / 16; kk++) {
    const uint64_t dv = wgmma::desc_sw128(vb + kk * 2048, BN * 128, 1024);
    if constexpr (D == 128) wgmma::wgmma_m64n128k16_rs_tb(o, pf[kk], dv, 1);
    else wgmma::wgmma_m64n64k16_rs_tb(o, pf[kk], dv, 1);
  }
}

// Masks keys past kv_len and (causal) keys after each row's position; q_pos0 is the position of this
// thread's first row (the second is 8 rows further).
__device__ __forceinline__ void mask_tile(float (&s)[64], int k0, int kv_len, int causal, int q_pos0, int t4) {
#pragma unroll
  for (int n = 0; n < 16; n++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int qpos = q_pos0 + (e >> 1) * 8;
      const int key = k0 + n * 8 + 2 * t4 + (e & 1);
      if (key >= kv_len || (causal && key > qpos)) s[4 * n + e] = -INFINITY;
    }
}

// Online softmax of one tile (log2 domain): s becomes exp2(s * scale - m), m / l move on, and alpha[hr] is
// the factor the accumulated O rows must take.
__device__ __forceinline__ void softmax_tile(float (&s)[64], float (&m_run)[2], float (&l_run)[2], float (&alpha)[2],
                                             float scale_log2) {
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    float mx = -INFINITY;
#pragma unroll
    for (int n = 0; n < 16; n++) mx = fmaxf(mx, fmaxf(s[4 * n + 2 * hr], s[4 * n + 2 * hr + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m_run[hr], mx * scale_log2);
    const float m_use = safe_max(m_new);
    alpha[hr] = exp2f(m_run[hr] - m_use);
    m_run[hr] = m_new;
    float sum = 0.0f;
#pragma unroll
    for (int n = 0; n < 16; n++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const float pv = exp2f(fmaf(s[4 * n + 2 * hr + e], scale_log2, -m_use));
        s[4 * n + 2 * hr + e] = pv;
        sum += pv;
      }
    l_run[hr] = l_run[hr] * alpha[hr] + sum;
  }
}

template <int D>
__device__ __forceinline__ void rescale(float (&o)[D / 2], const float (&alpha)[2]) {
#pragma unroll
  for (int d = 0; d < D / 8; d++) {
    o[4 * d + 0] *= alpha[0];
    o[4 * d + 1] *= alpha[0];
    o[4 * d + 2] *= alpha[1];
    o[4 * d + 3] *= alpha[1];
  }
}

// P (bf16) as the A fragments of the 8 k16 steps of P V.
__device__ __forceinline__ void to_pfrag(const float (&s)[64], uint32_t (&pf)[8][4]) {
#pragma unroll
  for (int kk = 0; kk < 8; kk++) {
    pf[kk][0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
    pf[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
    pf[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
    pf[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
  }
}

#endif  // SGL_WGMMA_ARCH

// PIPE false (the default): per tile, S = Q Kᵀ, wait, softmax, O += P V, wait (this warpgroup's tensor-core
// work idles during its softmax, but the block's other warpgroup keeps the tensor cores busy meanwhile).
// PIPE true (FlashAttention-3's intra-warpgroup overlap): per tile j, S_j = Q K_jᵀ and O += P_{j-1} V_{j-1} are
// issued together and the softmax of S_j runs while the P V product is on the tensor cores; O is rescaled
// once that product is done. K and V then have different lifetimes: K_{j+1} loads at the top of iteration j
// (S_{j-1} is done), V_{j+1} at its end (P_{j-1} V_{j-1} is done), each a cp.async group of its own.
template <int D, bool PIPE>
__global__ void __launch_bounds__(256, 1)
    prefill_wgmma_kernel(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k_cache,
                         const __nv_bfloat16* __restrict__ v_cache, __nv_bfloat16* __restrict__ out,
                         const int32_t* __restrict__ qo_indptr, const int32_t* __restrict__ kv_indptr,
                         const int32_t* __restrict__ page_ids, const int32_t* __restrict__ kv_lens, int H, int Hkv,
                         int P, float scale_log2, int causal, int splits, int chunk, float* __restrict__ part,
                         int* __restrict__ counters) {
#if SGL_WGMMA_ARCH
  using Cfg = WgCfg<D>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, NT = Cfg::kThreads, CH = Cfg::CH;
  static_assert(BN == 128, "the tile helpers assume 128 keys a tile");

  // heaviest (causal) tiles first; `splits` consecutive blocks per query tile (1 unsplit)
  const int q_tiles = int(gridDim.x) / splits;
  const int m_tile = q_tiles - 1 - int(blockIdx.x) / splits, split = int(blockIdx.x) % splits;
  const PrefillBlock blk = prefill_block<BM, D>(blockIdx.z, blockIdx.y, m_tile, qo_indptr, kv_indptr, page_ids,
                                                kv_lens, H, Hkv, P, causal);
  if (!blk.rows()) return;
  const int h = blockIdx.y, q_begin = blk.q_begin, q_len = blk.q_len, m0 = blk.m0, kv_len = blk.kv_len;
  const int pos0 = blk.pos0;
  const int all_tiles = (blk.n_end + BN - 1) / BN;
  // This block's KV tiles [j_begin, n_tiles) of the query tile's all_tiles, and how many blocks share them.
  const int n_parts = max(1, (all_tiles + chunk - 1) / chunk);
  if (split >= n_parts) return;
  const int j_begin = split * chunk;
  const int n_tiles = min(all_tiles, j_begin + chunk);

  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* base = smem + ((1024u - (smem_u32(smem) & 1023u)) & 1023u);  // swizzle patterns need 1024 B
  const uint32_t sQ = smem_u32(base);
  const uint32_t sK = sQ + Cfg::kQBytes;
  const uint32_t sV = sK + 2 * Cfg::kTileBytes;
  int64_t* sOff = reinterpret_cast<int64_t*>(base + Cfg::kQBytes + 4 * Cfg::kTileBytes);

  const int tid = threadIdx.x, lane = tid & 31;
  const int wg = tid >> 7;                 // warpgroup: query rows 64 wg .. 64 wg + 63 of the tile
  const int wrow = ((tid >> 5) & 3) * 16;  // this warp's first row within the warpgroup's 64
  const int g = lane >> 2, t4 = lane & 3;
  // Loader: a row's CH chunks on CH consecutive threads, NT / CH rows per pass (a multiple of 8, so every
  // pass has the same swizzle term).
  constexpr int kRowsPerPass = NT / CH;
  static_assert(kRowsPerPass % 8 == 0 && BN % kRowsPerPass == 0 && BM % kRowsPerPass == 0, "loader layout");
  const int ld_row = tid / CH, ld_chunk = tid % CH;
  const uint32_t ld_kv = sw128(BN, ld_row, ld_chunk), ld_q = sw128(BM, ld_row, ld_chunk);
  // Copies one tile (tile % 2's offsets) of the K or V cache into buffer `buf`.
  auto load_tile = [&](const __nv_bfloat16* cache, uint32_t tile_base, int buf) {
    const int64_t* offs = sOff + buf * BN + ld_row;
    const uint32_t dst = tile_base + buf * Cfg::kTileBytes + ld_kv;
#pragma unroll
    for (int it = 0; it < BN / kRowsPerPass; it++) {
      const int64_t o = offs[it * kRowsPerPass];
      const bool ok = o >= 0;
      cp_async16(dst + it * kRowsPerPass * 128, ok ? cache + o + ld_chunk * 8 : cache, ok ? 16 : 0);
    }
  };
  // Offsets of tile `tile` into sOff[tile % 2] (one key per thread of the first BN).
  auto store_offsets = [&](int tile) {
    if (tid < BN && tile < n_tiles) sOff[(tile & 1) * BN + tid] = blk.key_offset(tile * BN + tid);
  };

  // Prologue: key offsets of the first two tiles (tile t's in sOff[t % 2]); Q and the first K, V tiles in the
  // first cp.async group.
  for (int i = tid; i < 2 * BN; i += NT) {
    const int t = j_begin + i / BN;
    sOff[(t & 1) * BN + i % BN] = blk.key_offset(t * BN + i % BN);
  }
  blk.load_q<BM, D, kRowsPerPass>(q, H, h, ld_row, ld_chunk, sQ + ld_q, kRowsPerPass * 128);
  __syncthreads();
  if (j_begin < n_tiles) {
    load_tile(k_cache, sK, j_begin & 1);
    load_tile(v_cache, sV, j_begin & 1);
  }
  cp_async_commit();

  float o_acc[D / 2];
#pragma unroll
  for (int i = 0; i < D / 2; i++) o_acc[i] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};  // rows g and g + 8 of the warp
  float alpha[2];

  const int wg_row0 = m0 + wg * 64;        // the warpgroup's first query row (of the sequence)
  const int my_pos0 = pos0 + wg_row0 + wrow + g;  // position of this thread's first row
  const uint32_t q_wg = sQ + wg * 64 * 128;       // the warpgroup's rows in each Q column block
  // Whether tile k0 needs masking for this warpgroup (it crosses kv_len or the diagonal).
  auto needs_mask = [&](int k0) { return k0 + BN > kv_len || (causal && k0 + BN - 1 > pos0 + wg_row0); };

  if constexpr (!PIPE) {
    for (int j = j_begin; j < n_tiles; j++) {
      const int buf = j & 1;
      if (j + 1 < n_tiles) {
        load_tile(k_cache, sK, buf ^ 1);
        load_tile(v_cache, sV, buf ^ 1);
      }
      cp_async_commit();
      cp_async_wait<1>();                // Q and tile j have landed (this thread's copies) ...
      wgmma::fence_proxy_async_smem();   // ... are visible to the tensor cores' async proxy ...
      __syncthreads();                   // ... and so are everyone else's

      // The next offsets of sOff[buf] (tile j + 2's), looked up now and stored after the math (sOff[buf]
      // was last read by tile j's loads, before the barrier above).
      const int64_t next_off = tid < BN && j + 2 < n_tiles ? blk.key_offset((j + 2) * BN + tid) : -1;
      const int k0 = j * BN;
      // Warpgroup rows that see no key of this tile (causal, past the diagonal): skip the tile's math.
      if (!(causal && k0 > pos0 + wg_row0 + 63)) {
        float s[64];
        wgmma::fence();
        issue_qk<D>(s, q_wg, sK + buf * Cfg::kTileBytes);
        wgmma::commit();
        wgmma::wait<0>();
        wgmma::fence_operands(s);
        if (needs_mask(k0)) mask_tile(s, k0, kv_len, causal, my_pos0, t4);
        softmax_tile(s, m_run, l_run, alpha, scale_log2);
        rescale<D>(o_acc, alpha);
        uint32_t pf[8][4];
        to_pfrag(s, pf);
        wgmma::fence();
        issue_pv<D>(o_acc, pf, sV + buf * Cfg::kTileBytes);
        wgmma::commit();
        wgmma::wait<0>();
        wgmma::fence_operands(o_acc);
      }
      if (tid < BN && j + 2 < n_tiles) sOff[buf * BN + tid] = next_off;
      __syncthreads();  // tile j's buffers are free for tile j + 2, loaded at the top of iteration j + 1
    }
  } else {
    // Outstanding cp.async groups at the top of iteration j >= 1: ..., V_{j-1}, K_j, V_j.
    if (n_tiles > 1) load_tile(k_cache, sK, 1);
    cp_async_commit();
    if (n_tiles > 1) load_tile(v_cache, sV, 1);
    cp_async_commit();
    cp_async_wait<2>();  // Q, K_0, V_0
    wgmma::fence_proxy_async_smem();
    __syncthreads();
    uint32_t pf[8][4];  // P of the previous tile, waiting for its P V product
    if (n_tiles > 0) {
      float s[64];
      wgmma::fence();
      issue_qk<D>(s, q_wg, sK);
      wgmma::commit();
      store_offsets(2);  // into sOff[0]: tile 0's were read by K_0 / V_0's loads, before the barrier above
      wgmma::wait<0>();
      wgmma::fence_operands(s);
      if (needs_mask(0)) mask_tile(s, 0, kv_len, causal, my_pos0, t4);
      softmax_tile(s, m_run, l_run, alpha, scale_log2);  // O is 0: no rescale
      to_pfrag(s, pf);
    }
    for (int j = 1; j < n_tiles; j++) {
      const int buf = j & 1;
      cp_async_wait<1>();                // K_j and V_{j-1} (this thread's copies) ...
      wgmma::fence_proxy_async_smem();
      __syncthreads();                   // ... everyone's; and every S_{j-1} is done: K buffer buf ^ 1 is free
      if (j + 1 < n_tiles) load_tile(k_cache, sK, buf ^ 1);
      cp_async_commit();

      const int k0 = j * BN;
      float s[64];
      wgmma::fence();
      issue_qk<D>(s, q_wg, sK + buf * Cfg::kTileBytes);
      wgmma::commit();
      issue_pv<D>(o_acc, pf, sV + (buf ^ 1) * Cfg::kTileBytes);
      wgmma::commit();
      // Tile j + 2's offsets into sOff[buf] while the products run (tile j's were last read by V_j's loads,
      // before the barrier above; K_{j+2} reads them after the next one).
      store_offsets(j + 2);
      wgmma::wait<1>();  // S_j (the P V product may still run)
      wgmma::fence_operands(s);
      if (needs_mask(k0)) mask_tile(s, k0, kv_len, causal, my_pos0, t4);
      softmax_tile(s, m_run, l_run, alpha, scale_log2);
      wgmma::wait<0>();  // P_{j-1} V_{j-1}: O and pf are free
      wgmma::fence_operands(o_acc);
      rescale<D>(o_acc, alpha);
      to_pfrag(s, pf);
      __syncthreads();   // every P_{j-1} V_{j-1} is done: V buffer buf ^ 1 is free
      if (j + 1 < n_tiles) load_tile(v_cache, sV, buf ^ 1);
      cp_async_commit();
    }
    if (n_tiles > 0) {
      cp_async_wait<0>();  // V_{n-1}
      wgmma::fence_proxy_async_smem();
      __syncthreads();
      wgmma::fence();
      issue_pv<D>(o_acc, pf, sV + ((n_tiles - 1) & 1) * Cfg::kTileBytes);
      wgmma::commit();
      wgmma::wait<0>();
      wgmma::fence_operands(o_acc);
    }
  }

  // ---- split-KV: all but the last block of the query tile leave their partials; the last merges them ----
  if (n_parts > 1) {
    constexpr int kVec = D / 8 + 1;  // float4s a thread stores: O (D / 2 floats), then m_run and l_run
    const int unit = (int(blockIdx.z) * H + h) * q_tiles + m_tile;
    float4* mine = reinterpret_cast<float4*>(part) + (int64_t(unit) * splits + split) * kVec * NT;
#pragma unroll
    for (int i = 0; i < D / 8; i++) mine[i * NT + tid] = make_float4(o_acc[4 * i], o_acc[4 * i + 1], o_acc[4 * i + 2], o_acc[4 * i + 3]);
    mine[(D / 8) * NT + tid] = make_float4(m_run[0], m_run[1], l_run[0], l_run[1]);
    __threadfence();  // the partials are visible device-wide before this block counts itself in
    __syncthreads();
    __shared__ int s_last;
    if (tid == 0) s_last = atomicAdd(counters + unit, 1) == n_parts - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence();  // (acquire) the others' partials, read through L2 below
    if (tid == 0) counters[unit] = 0;  // ready for the next launch
    // Merge in f32: m = max of the parts' maxima (log2 domain), O and l scaled by exp2(m_part - m).
    float m_all[2] = {m_run[0], m_run[1]};
    for (int p = 0; p < n_parts; p++) {
      if (p == split) continue;
      const float4 ml = __ldcg(reinterpret_cast<const float4*>(part) + ((int64_t(unit) * splits + p) * kVec + D / 8) * NT + tid);
      m_all[0] = fmaxf(m_all[0], ml.x);
      m_all[1] = fmaxf(m_all[1], ml.y);
    }
    const float m_use[2] = {safe_max(m_all[0]), safe_max(m_all[1])};
    const float own[2] = {exp2f(m_run[0] - m_use[0]), exp2f(m_run[1] - m_use[1])};
    rescale<D>(o_acc, own);
    l_run[0] *= own[0];
    l_run[1] *= own[1];
    for (int p = 0; p < n_parts; p++) {
      if (p == split) continue;
      const float4* other = reinterpret_cast<const float4*>(part) + (int64_t(unit) * splits + p) * kVec * NT;
      const float4 ml = __ldcg(other + (D / 8) * NT + tid);
      const float a0 = exp2f(ml.x - m_use[0]), a1 = exp2f(ml.y - m_use[1]);  // 0 for a part that saw no key
      l_run[0] = fmaf(ml.z, a0, l_run[0]);
      l_run[1] = fmaf(ml.w, a1, l_run[1]);
#pragma unroll
      for (int i = 0; i < D / 8; i++) {
        const float4 v = __ldcg(other + i * NT + tid);
        o_acc[4 * i + 0] = fmaf(v.x, a0, o_acc[4 * i + 0]);
        o_acc[4 * i + 1] = fmaf(v.y, a0, o_acc[4 * i + 1]);
        o_acc[4 * i + 2] = fmaf(v.z, a1, o_acc[4 * i + 2]);
        o_acc[4 * i + 3] = fmaf(v.w, a1, o_acc[4 * i + 3]);
      }
    }
  }

  // ---- epilogue: O / l to bf16, staged through the warpgroup's own Q rows, 16-byte stores ----
  cp_async_wait<0>();
  __syncthreads();  // with no KV tile, Q copies issued by the other warpgroup may still be landing
#pragma unroll
  for (int hr = 0; hr < 2; hr++) {
    float l = l_run[hr];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;  // no visible key: zeros, like the CPU reference
    const int row = wg * 64 + wrow + g + hr * 8;
#pragma unroll
    for (int d = 0; d < D / 8; d++) {
      const uint32_t v = pack_bf16(o_acc[4 * d + 2 * hr] * inv, o_acc[4 * d + 2 * hr + 1] * inv);
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sQ + sw128(BM, row, d) + 4 * t4), "r"(v) : "memory");
    }
  }
  asm volatile("bar.sync %0, 128;\n" ::"r"(1 + wg) : "memory");  // the warpgroup's rows are staged
  for (int i = tid & 127; i < 64 * CH; i += 128) {
    const int r = wg * 64 + i / CH, c = i % CH;
    if (m0 + r < q_len) {
      uint4 v;
      asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                   : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                   : "r"(sQ + sw128(BM, r, c))
                   : "memory");
      *reinterpret_cast<uint4*>(out + (int64_t(q_begin + m0 + r) * H + h) * D + c * 8) = v;
    }
  }
#endif  // SGL_WGMMA_ARCH
}

// How a short prefill's KV walk splits: `splits` blocks per query tile, each over `chunk` KV tiles.
struct SplitPlan {
  int splits = 1, chunk = 1 << 30;
};

// SGL_PREFILL_SPLIT=0 turns the split off (the A/B switch of attention_bench and encode-bench).
bool split_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("SGL_PREFILL_SPLIT");
    return !(e != nullptr && e[0] == '0');
  }();
  return on;
}

// The smallest chunk whose blocks still fit one wave (one 128-row block per SM), counted for the longest
// sequence (causal: query tile i sees the keys up to its last row); no split when the unsplit grid already
// has a block per SM, or when the whole walk is one chunk.
SplitPlan plan_split(const AttentionParams& p) {
  SplitPlan plan;
  constexpr int BM = 128, BN = 128;
  const int q_tiles = (p.max_q_len + BM - 1) / BM, kv_tiles = (p.max_kv_len + BN - 1) / BN;
  const int64_t heads = int64_t(p.H) * p.B, sms = sgl_sm_count();
  if (!split_enabled() || kv_tiles <= 1 || q_tiles * heads >= sms) return plan;
  const int prefix = std::max(0, p.max_kv_len - p.max_q_len);
  auto tiles_of = [&](int qt) {  // KV tiles query tile qt walks
    if (!p.causal) return kv_tiles;
    const int last_key = std::min(p.max_kv_len, prefix + std::min((qt + 1) * BM, p.max_q_len));
    return (last_key + BN - 1) / BN;
  };
  for (int chunk = 1; chunk < kv_tiles; chunk++) {
    int64_t blocks = 0;
    for (int qt = 0; qt < q_tiles; qt++) blocks += (tiles_of(qt) + chunk - 1) / chunk;
    if (blocks * heads <= sms) {
      plan.chunk = chunk;
      plan.splits = (kv_tiles + chunk - 1) / chunk;
      return plan;
    }
  }
  return plan;
}

// The split blocks' arrival counters: zero at rest (each query tile's last block resets its own).
int* split_counters(size_t n) {
  static int* ptr = nullptr;
  static size_t cap = 0;
  if (n > cap) {
    if (ptr) {
      SGL_CUDA_CHECK(cudaStreamSynchronize(sgl_stream()));
      SGL_CUDA_CHECK(cudaFree(ptr));
    }
    cap = std::max(n, size_t(4096));
    SGL_CUDA_CHECK(cudaMalloc(&ptr, cap * sizeof(int)));
    SGL_CUDA_CHECK(cudaMemsetAsync(ptr, 0, cap * sizeof(int), sgl_stream()));
  }
  return ptr;
}

template <int D, bool PIPE>
void launch(const AttentionParams& p) {
  using Cfg = WgCfg<D>;
  auto kernel = prefill_wgmma_kernel<D, PIPE>;
  static const bool attr_set = [&] {
    SGL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmem));
    return true;
  }();
  (void)attr_set;
  const int q_tiles = (p.max_q_len + Cfg::BM - 1) / Cfg::BM;
  const SplitPlan plan = PIPE ? SplitPlan{} : plan_split(p);  // the overlapped schedule does not split
  float* part = nullptr;
  int* counters = nullptr;
  if (plan.splits > 1) {
    const size_t units = size_t(q_tiles) * p.H * p.B;
    part = static_cast<float*>(sgl_workspace(units * plan.splits * Cfg::kThreads * (D / 2 + 4) * sizeof(float)));
    counters = split_counters(units);
  }
  const dim3 grid(q_tiles * plan.splits, p.H, p.B);
  kernel<<<grid, Cfg::kThreads, Cfg::kSmem, sgl_stream()>>>(
      static_cast<const __nv_bfloat16*>(p.q), static_cast<const __nv_bfloat16*>(p.k_cache),
      static_cast<const __nv_bfloat16*>(p.v_cache), static_cast<__nv_bfloat16*>(p.out), p.qo_indptr, p.kv_indptr,
      p.kv_page_indices, p.kv_lens, p.H, p.Hkv, p.P, p.scale * kLog2e, p.causal ? 1 : 0, plan.splits, plan.chunk,
      part, counters);
  SGL_CUDA_LAUNCH_CHECK();
}

// Without SGL_PREFILL_WGMMA: the plain schedule. On an H100 (2026-12-07) it passed attention_test and test:gpu
// and measured faster than the overlapped one at every benchmarked shape (cuda/NOTES.md, attention).
constexpr int kDefaultMode = 1;

// 0: not this kernel (another device, or SGL_PREFILL_WGMMA=0: the benchmark's switch to time the mma.sync
// kernel on the same inputs); 1: the plain schedule (SGL_PREFILL_WGMMA=1); 2: the overlapped one
// (SGL_PREFILL_WGMMA=2). The device must be an sm_90 part (H100 / H200): this file's sm_90a code runs there only.
int wgmma_mode() {
  static const int mode = [] {
    if (!sgl_is_sm90()) return 0;
    const char* e = std::getenv("SGL_PREFILL_WGMMA");
    if (e && e[0] == '0') return 0;
    if (e && e[0] == '1') return 1;
    if (e && e[0] == '2') return 2;
    return kDefaultMode;
  }();
  return mode;
}

}  // namespace

bool launch_prefill_wgmma(const AttentionParams& p) {
  // Short query tiles (chunked prefill of <= 64 rows, mixed batches) stay on the mma.sync kernel's BM = 64.
  if (p.max_q_len <= 64 || !(p.D == 64 || p.D == 128)) return false;
  const int mode = wgmma_mode();
  if (mode == 0) return false;
  if (p.D == 128) mode == 2 ? launch<128, true>(p) : launch<128, false>(p);
  else mode == 2 ? launch<64, true>(p) : launch<64, false>(p);
  return true;
}

}  // namespace attn
}  // namespace sgl
