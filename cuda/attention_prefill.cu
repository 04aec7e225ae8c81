// FlashAttention-2-style paged prefill on tensor cores (mma.sync m16n8k16 bf16 -> f32), D = 64 or 128.
//
// Grid (ceil(max_q_len / BM), H, B): a block owns BM query rows of one sequence and one query head and walks
// the KV tiles of that head's KV head (h / (H / Hkv)) in order, BN keys at a time, gathered through the page
// table with 16-byte cp.async into a double buffer (tile j+1 loads while tile j is computed). Each of the
// NWARPS warps owns BM / NWARPS query rows (MT = 1 or 2 m16 tiles): S = Q Kᵀ and O += P V on tensor cores,
// fragments loaded by ldmatrix from swizzled shared memory (conflict-free), online softmax in f32 in the
// log2 domain (scale * log2 e folded into one FMA before exp2). Causal: the key loop stops at the tile's
// last query position and only tiles that cross the diagonal (or kv_len) are masked. Blocks are issued
// longest-first (the last query tile of a causal sequence has the most keys).
//
// Shared memory: Q [BM x D] + K, V [2][BN x D] + key offsets [2][BN] (int64).
//   D = 128, BM = 128, BN = 64: 32 + 64 + 1 KiB = 97 KiB (two blocks per SM)
//   D = 64,  BM = 128, BN = 64: 16 + 32 + 1 KiB = 49 KiB
#include <algorithm>
#include <cstdlib>

#include "attention_common.cuh"
#include "cuda_common.cuh"

namespace sgl {
namespace attn {

namespace {

template <int D, int BM, int BN, int NWARPS>
struct PrefillCfg {
  static constexpr int kThreads = NWARPS * 32;
  static constexpr int kMT = BM / (16 * NWARPS);  // m16 tiles per warp
  static constexpr int kChunks = D / 8;           // 16-byte chunks per row
  static constexpr int kQBytes = BM * D * 2;
  static constexpr int kTileBytes = BN * D * 2;   // one K or V tile
  static constexpr int kSmem = kQBytes + 4 * kTileBytes + 2 * BN * 8 + 256;  // + alignment slack
  static_assert(D == 64 || D == 128, "tensor-core path is for D = 64 / 128");
  static_assert(kMT >= 1 && kMT * 16 * NWARPS == BM, "BM must be a multiple of 16 * NWARPS");
  static_assert(BN % 16 == 0 && kThreads >= BN, "BN: multiple of 16, at most one key per thread");
};

template <int D, int BM, int BN, int NWARPS>
__global__ void __launch_bounds__(NWARPS * 32)
    prefill_tc_kernel(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k_cache,
                      const __nv_bfloat16* __restrict__ v_cache, __nv_bfloat16* __restrict__ out,
                      const int32_t* __restrict__ qo_indptr, const int32_t* __restrict__ kv_indptr,
                      const int32_t* __restrict__ page_ids, const int32_t* __restrict__ kv_lens, int H, int Hkv,
                      int P, float scale_log2, int causal) {
  using Cfg = PrefillCfg<D, BM, BN, NWARPS>;
  constexpr int NT = Cfg::kThreads, MT = Cfg::kMT, CH = Cfg::kChunks;
  constexpr int NB = BN / 8;   // n8 blocks of S per m-tile
  constexpr int DB = D / 8;    // n8 blocks of O per m-tile
  constexpr int KQ = D / 16;   // k16 steps of Q Kᵀ
  constexpr int KP = BN / 16;  // k16 steps of P V

  // heaviest (causal) tiles first
  const PrefillBlock blk = prefill_block<BM, D>(blockIdx.z, blockIdx.y, gridDim.x - 1 - blockIdx.x, qo_indptr,
                                                kv_indptr, page_ids, kv_lens, H, Hkv, P, causal);
  if (!blk.rows()) return;
  const int h = blockIdx.y, q_begin = blk.q_begin, q_len = blk.q_len, m0 = blk.m0, kv_len = blk.kv_len;
  const int pos0 = blk.pos0, n_end = blk.n_end;
  const int n_tiles = (n_end + BN - 1) / BN;

  extern __shared__ __align__(128) uint8_t smem[];
  // Tiles start on 256-byte boundaries of the shared window, so a fragment address can step its swizzled
  // chunk with one XOR (below).
  uint8_t* base = smem + ((256u - (smem_u32(smem) & 255u)) & 255u);
  const uint32_t sQ = smem_u32(base);
  const uint32_t sK = sQ + Cfg::kQBytes;
  const uint32_t sV = sK + 2 * Cfg::kTileBytes;
  int64_t* sOff = reinterpret_cast<int64_t*>(base + Cfg::kQBytes + 4 * Cfg::kTileBytes);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  // Loader layout: a row's CH chunks on CH consecutive threads, NT / CH rows per pass (a multiple of 8, so
  // the swizzle pattern (row & 7) is the same on every pass).
  constexpr int kRowsPerPass = NT / CH;
  static_assert(kRowsPerPass % 8 == 0 && BN % kRowsPerPass == 0 && BM % kRowsPerPass == 0, "loader layout");
  const int ld_row = tid / CH, ld_chunk = tid % CH;
  const uint32_t ld_dst = swz<CH>(ld_row, ld_chunk);
  auto load_kv = [&](int buf) {
    const int64_t* offs = sOff + buf * BN + ld_row;
    const uint32_t dk = sK + buf * Cfg::kTileBytes + ld_dst, dv = sV + buf * Cfg::kTileBytes + ld_dst;
#pragma unroll
    for (int it = 0; it < BN / kRowsPerPass; it++) {
      const int64_t o = offs[it * kRowsPerPass];
      const uint32_t step = it * kRowsPerPass * CH * 16;
      const bool ok = o >= 0;
      cp_async16(dk + step, ok ? k_cache + o + ld_chunk * 8 : k_cache, ok ? 16 : 0);
      cp_async16(dv + step, ok ? v_cache + o + ld_chunk * 8 : v_cache, ok ? 16 : 0);
    }
  };

  // Prologue: key offsets of tiles 0 and 1, then Q and tile 0 in one cp.async group.
  for (int i = tid; i < 2 * BN; i += NT) sOff[i] = blk.key_offset(i);
  blk.load_q<BM, D, kRowsPerPass>(q, H, h, ld_row, ld_chunk, sQ + ld_dst, kRowsPerPass * CH * 16);
  __syncthreads();
  if (n_tiles > 0) load_kv(0);
  cp_async_commit();

  float o_acc[MT][DB][4];
  float m_run[MT][2], l_run[MT][2];  // per row half (g, g + 8): running max (log2 units), partial sum
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int d = 0; d < DB; d++) o_acc[mt][d][0] = o_acc[mt][d][1] = o_acc[mt][d][2] = o_acc[mt][d][3] = 0.0f;
    m_run[mt][0] = m_run[mt][1] = -INFINITY;
    l_run[mt][0] = l_run[mt][1] = 0.0f;
  }

  const int g = lane >> 2, t4 = lane & 3;
  const int warp_row0 = warp * MT * 16;  // first tile row of this warp
  // ldmatrix lane addressing (see attention_common.cuh). Every fragment row block starts at a multiple of 8
  // rows, so a lane's swizzle term is (its chunk) ^ (lane & 7) and stepping k16 / d16 chunks by s flips
  // byte-offset bits with ^ (32 * s): addr(block, s) = ((tile + off0) ^ 32 s) + block * 16 rows.
  constexpr uint32_t kRow16 = 16 * CH * 16;  // bytes of 16 rows
  const uint32_t q_off0 = (warp_row0 + (lane & 15)) * CH * 16 + (((lane >> 4) ^ (lane & 7)) << 4);
  const uint32_t k_off0 = ((lane & 7) + ((lane >> 4) << 3)) * CH * 16 + ((((lane >> 3) & 1) ^ (lane & 7)) << 4);
  const uint32_t v_off0 = ((lane & 7) + (((lane >> 3) & 1) << 3)) * CH * 16 + (((lane >> 4) ^ (lane & 7)) << 4);

  for (int j = 0; j < n_tiles; j++) {
    const int buf = j & 1;
    if (j + 1 < n_tiles) load_kv(buf ^ 1);
    cp_async_commit();
    // Page lookup of tile j + 2 (one key per thread), stored after the compute so its latency hides.
    const bool store_off = tid < BN && j + 2 < n_tiles;
    int next_page = -1;
    if (store_off && (j + 2) * BN + tid < n_end) next_page = blk.seq_pages[((j + 2) * BN + tid) / P];
    cp_async_wait<1>();  // Q and tile j have landed (this thread's copies) ...
    __syncthreads();     // ... and everyone else's

    // ---- S = Q Kᵀ ----
    float s[MT][NB][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int n = 0; n < NB; n++) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.0f;
    const uint32_t kbase = sK + buf * Cfg::kTileBytes;
#pragma unroll
    for (int kk = 0; kk < KQ; kk++) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
        ldmatrix_x4(((sQ + q_off0) ^ (32 * kk)) + mt * kRow16, a[mt][0], a[mt][1], a[mt][2], a[mt][3]);
#pragma unroll
      for (int np = 0; np < NB / 2; np++) {
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4(((kbase + k_off0) ^ (32 * kk)) + np * kRow16, b0, b1, b2, b3);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          mma_bf16(s[mt][2 * np], a[mt], b0, b1);
          mma_bf16(s[mt][2 * np + 1], a[mt], b2, b3);
        }
      }
    }

    // ---- mask: keys past kv_len, and (causal) keys after the row's position ----
    const int k0 = j * BN;
    if (k0 + BN > kv_len || (causal && k0 + BN - 1 > pos0 + m0)) {
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int n = 0; n < NB; n++)
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const int qpos = pos0 + m0 + warp_row0 + mt * 16 + g + (e >> 1) * 8;
            const int key = k0 + n * 8 + 2 * t4 + (e & 1);
            if (key >= kv_len || (causal && key > qpos)) s[mt][n][e] = -INFINITY;
          }
    }

    // ---- online softmax ----
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int hr = 0; hr < 2; hr++) {
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < NB; n++) mx = fmaxf(mx, fmaxf(s[mt][n][2 * hr], s[mt][n][2 * hr + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m_run[mt][hr], mx * scale_log2);
        const float m_use = safe_max(m_new);
        const float alpha = exp2f(m_run[mt][hr] - m_use);
        m_run[mt][hr] = m_new;
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < NB; n++)
#pragma unroll
          for (int e = 0; e < 2; e++) {
            const float pv = exp2f(fmaf(s[mt][n][2 * hr + e], scale_log2, -m_use));
            s[mt][n][2 * hr + e] = pv;
            sum += pv;
          }
        l_run[mt][hr] = l_run[mt][hr] * alpha + sum;
#pragma unroll
        for (int d = 0; d < DB; d++) {
          o_acc[mt][d][2 * hr] *= alpha;
          o_acc[mt][d][2 * hr + 1] *= alpha;
        }
      }

    // ---- O += P V ----
    const uint32_t vbase = sV + buf * Cfg::kTileBytes;
#pragma unroll
    for (int kk = 0; kk < KP; kk++) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        a[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        a[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        a[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        a[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < DB / 2; dp++) {
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4_trans(((vbase + v_off0) ^ (32 * dp)) + kk * kRow16, b0, b1, b2, b3);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          mma_bf16(o_acc[mt][2 * dp], a[mt], b0, b1);
          mma_bf16(o_acc[mt][2 * dp + 1], a[mt], b2, b3);
        }
      }
    }

    if (store_off) {  // tile j + 2 reuses this buffer
      const int key = (j + 2) * BN + tid;
      sOff[buf * BN + tid] =
          next_page >= 0 ? (int64_t(next_page) * P + key % P) * blk.row_stride + blk.head_off : -1;
    }
    __syncthreads();  // tile j's buffers and offsets are free for the next iteration's loads
  }

  // ---- epilogue: O / l to bf16, staged through this warp's own rows of the Q tile, 16-byte stores ----
  cp_async_wait<0>();
  __syncthreads();  // with no KV tile, Q copies issued by other warps' threads may still be landing
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
      float l = l_run[mt][hr];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;  // no visible key: zeros, like the CPU reference
      const int row = warp_row0 + mt * 16 + g + hr * 8;
#pragma unroll
      for (int d = 0; d < DB; d++) {
        const uint32_t v = pack_bf16(o_acc[mt][d][2 * hr] * inv, o_acc[mt][d][2 * hr + 1] * inv);
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sQ + swz<CH>(row, d) + 4 * t4), "r"(v) : "memory");
      }
    }
  __syncwarp();
#pragma unroll
  for (int i = lane; i < MT * 16 * CH; i += 32) {
    const int r = warp_row0 + i / CH, c = i % CH;
    if (m0 + r < q_len) {
      uint4 v;
      asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                   : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                   : "r"(sQ + swz<CH>(r, c))
                   : "memory");
      *reinterpret_cast<uint4*>(out + (int64_t(q_begin + m0 + r) * H + h) * D + c * 8) = v;
    }
  }
}

template <int D, int BM, int BN, int NWARPS>
void launch(const AttentionParams& p) {
  using Cfg = PrefillCfg<D, BM, BN, NWARPS>;
  auto kernel = prefill_tc_kernel<D, BM, BN, NWARPS>;
  static const bool attr_set = [&] {
    SGL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmem));
    return true;
  }();
  (void)attr_set;
  const dim3 grid((p.max_q_len + BM - 1) / BM, p.H, p.B);
  kernel<<<grid, Cfg::kThreads, Cfg::kSmem, sgl_stream()>>>(
      static_cast<const __nv_bfloat16*>(p.q), static_cast<const __nv_bfloat16*>(p.k_cache),
      static_cast<const __nv_bfloat16*>(p.v_cache), static_cast<__nv_bfloat16*>(p.out), p.qo_indptr, p.kv_indptr,
      p.kv_page_indices, p.kv_lens, p.H, p.Hkv, p.P, p.scale * kLog2e, p.causal ? 1 : 0);
  SGL_CUDA_LAUNCH_CHECK();
}

// SGL_PREFILL_VARIANT (read once; for the benchmark's tile sweep, bench-gpu.sh): the tiling of query tiles
// longer than 64 rows. 0 (default): BM 128, BN 64, 4 warps (32 rows each); 1: BM 128, BN 64, 8 warps (16 rows
// each); 2: BM 128, BN 32, 4 warps; 3: BM 64, BN 64, 4 warps (16 rows each).
int prefill_variant() {
  static const int v = [] {
    const char* e = std::getenv("SGL_PREFILL_VARIANT");
    const int x = e ? std::atoi(e) : 0;
    return x >= 0 && x <= 3 ? x : 0;
  }();
  return v;
}

template <int D>
void launch_long(const AttentionParams& p) {
  switch (prefill_variant()) {
    case 1: return launch<D, 128, 64, 8>(p);
    case 2: return launch<D, 128, 32, 4>(p);
    case 3: return launch<D, 64, 64, 4>(p);
    default: return launch<D, 128, 64, 4>(p);
  }
}

}  // namespace

void launch_prefill_tc_bm64(const AttentionParams& p) {
  if (p.D == 128) launch<128, 64, 64, 4>(p);
  else launch<64, 64, 64, 4>(p);
}

void launch_prefill_tc(const AttentionParams& p) {
  // Short query tiles (chunked prefill, mixed batches) take BM = 64 so fewer rows of each block idle.
  if (p.D == 128) {
    if (p.max_q_len <= 64) launch<128, 64, 64, 4>(p);
    else launch_long<128>(p);
  } else {
    if (p.max_q_len <= 64) launch<64, 64, 64, 4>(p);
    else launch_long<64>(p);
  }
}

}  // namespace attn
}  // namespace sgl
