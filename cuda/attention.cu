// attention_cuda: the dispatcher, and the CUDA-core fallback for head dims without a tensor-core path.
//
//   D = 64 / 128, max_q_len == 1  -> split-KV decode (attention_decode.cu)
//   D = 64 / 128, otherwise       -> FlashAttention-2-style prefill, any mix of q_len (attention_prefill.cu)
//   any other D (multiple of 8, <= 256) -> generic_kernel below
//   the float32 table (attention_cuda_f32): every shape -> generic_kernel<float> (f32 q/k/v/out)
//
// Nothing here allocates, synchronizes or reads device memory on the host (CUDA-graph capturable once the
// one-time per-kernel attribute setup and the workspace growth have happened).
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "attention.h"
#include "attention_common.cuh"
#include "cuda_common.cuh"

namespace sgl {
namespace attn {

namespace {

constexpr int kGenericWarps = 4;
constexpr int kGenericMaxD = 256;

// One warp per (query row, head); a block takes kGenericWarps consecutive rows of one sequence and head.
// Keys in steps of 32, one per lane: the lane computes its score over the whole row (16-byte loads), the
// warp updates the online softmax, then accumulates P V with each lane owning dims lane, lane + 32, ...
// E: bf16 (the default table) or float (the float32 table); the math is f32 either way.
template <typename E>
__global__ void __launch_bounds__(kGenericWarps * 32)
    generic_kernel(const E* __restrict__ q, const E* __restrict__ k_cache, const E* __restrict__ v_cache,
                   E* __restrict__ out,
                   const int32_t* __restrict__ qo_indptr, const int32_t* __restrict__ kv_indptr,
                   const int32_t* __restrict__ page_ids, const int32_t* __restrict__ kv_lens, int H, int Hkv, int D,
                   int P, float scale_log2, int causal) {
  constexpr int kDPL = kGenericMaxD / 32;  // dims per lane, at most
  __shared__ float sq[kGenericWarps][kGenericMaxD];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int b = blockIdx.z, h = blockIdx.y;
  const int q_begin = qo_indptr[b], q_len = qo_indptr[b + 1] - q_begin;
  const int i = blockIdx.x * kGenericWarps + warp;
  if (i >= q_len) return;  // warp-uniform; only warp-level synchronization below
  const int kv_len = kv_lens[b];
  const int qpos = kv_len - q_len + i;
  int n_keys = causal ? min(kv_len, qpos + 1) : kv_len;
  n_keys = max(n_keys, 0);
  const int kvh = h / (H / Hkv);
  const int64_t row_stride = int64_t(Hkv) * D, head_off = int64_t(kvh) * D;
  const int32_t* seq_pages = page_ids + kv_indptr[b];
  const int64_t tok = int64_t(q_begin + i) * H + h;

  for (int d = lane; d < D; d += 32) sq[warp][d] = to_f(q[tok * D + d]);
  __syncwarp();

  float m_run = -INFINITY, l_part = 0.0f;
  float o[kDPL];
#pragma unroll
  for (int x = 0; x < kDPL; x++) o[x] = 0.0f;

  for (int k0 = 0; k0 < n_keys; k0 += 32) {
    const int key = k0 + lane;
    float s = -INFINITY;
    int64_t off = 0;
    if (key < n_keys) {
      off = (int64_t(seq_pages[key / P]) * P + key % P) * row_stride + head_off;
      float dot = 0.0f;
      if constexpr (sizeof(E) == 2) {
        const uint4* kr = reinterpret_cast<const uint4*>(k_cache + off);
        for (int c = 0; c < D / 8; c++) {
          const uint4 raw = kr[c];
          const __nv_bfloat162* kv2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const float2 f = __bfloat1622float2(kv2[e]);
            dot = fmaf(f.x, sq[warp][c * 8 + 2 * e], dot);
            dot = fmaf(f.y, sq[warp][c * 8 + 2 * e + 1], dot);
          }
        }
      } else {
        // f32 rows: D % 8 == 0 and the row offset is a multiple of D elements, so 16-byte loads are aligned.
        const float4* kr = reinterpret_cast<const float4*>(k_cache + off);
        for (int c = 0; c < D / 4; c++) {
          const float4 f = kr[c];
          dot = fmaf(f.x, sq[warp][c * 4], dot);
          dot = fmaf(f.y, sq[warp][c * 4 + 1], dot);
          dot = fmaf(f.z, sq[warp][c * 4 + 2], dot);
          dot = fmaf(f.w, sq[warp][c * 4 + 3], dot);
        }
      }
      s = dot * scale_log2;
    }
    float mx = s;
#pragma unroll
    for (int x = 16; x > 0; x >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, x));
    const float m_new = fmaxf(m_run, mx);
    const float m_use = safe_max(m_new);
    const float alpha = exp2f(m_run - m_use);
    m_run = m_new;
    const float pv = exp2f(s - m_use);  // -inf -> 0
    l_part = l_part * alpha + pv;
#pragma unroll
    for (int x = 0; x < kDPL; x++) o[x] *= alpha;
    const int n = min(32, n_keys - k0);
    for (int jj = 0; jj < n; jj++) {
      const float pj = __shfl_sync(0xffffffffu, pv, jj);
      const int64_t oj = __shfl_sync(0xffffffffu, off, jj);
      const E* vr = v_cache + oj;
#pragma unroll
      for (int x = 0; x < kDPL; x++) {
        const int d = lane + 32 * x;
        if (d < D) o[x] = fmaf(pj, to_f(vr[d]), o[x]);
      }
    }
  }
  float l = l_part;
#pragma unroll
  for (int x = 16; x > 0; x >>= 1) l += __shfl_xor_sync(0xffffffffu, l, x);
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
  for (int x = 0; x < kDPL; x++) {
    const int d = lane + 32 * x;
    if (d < D) out[tok * D + d] = from_f<E>(o[x] * inv);
  }
}

template <typename E>
void launch_generic_t(const AttentionParams& p) {
  const dim3 grid((p.max_q_len + kGenericWarps - 1) / kGenericWarps, p.H, p.B);
  generic_kernel<E><<<grid, kGenericWarps * 32, 0, sgl_stream()>>>(
      static_cast<const E*>(p.q), static_cast<const E*>(p.k_cache), static_cast<const E*>(p.v_cache),
      static_cast<E*>(p.out), p.qo_indptr, p.kv_indptr, p.kv_page_indices, p.kv_lens, p.H, p.Hkv, p.D, p.P,
      p.scale * kLog2e, p.causal ? 1 : 0);
  SGL_CUDA_LAUNCH_CHECK();
}

void check_shape(const AttentionParams& p, const char* op) {
  if (p.Hkv <= 0 || p.H % p.Hkv != 0 || p.D <= 0 || p.D % 8 != 0 || p.D > kGenericMaxD || p.P <= 0)
    throw std::invalid_argument(std::string(op) + ": unsupported shape H=" + std::to_string(p.H) +
                                " Hkv=" + std::to_string(p.Hkv) + " D=" + std::to_string(p.D) +
                                " P=" + std::to_string(p.P));
}

}  // namespace

void launch_generic(const AttentionParams& p) { launch_generic_t<__nv_bfloat16>(p); }

}  // namespace attn

#if defined(SGL_NO_SM90A)
// Built with an nvcc older than 12.0 (no sm_90a): attention_prefill_sm90.cu is not compiled.
bool attn::launch_prefill_wgmma(const AttentionParams&) { return false; }
#endif

namespace {

// Short prefills (an /encode of a few hundred tokens) give the 128-row query tiles of the wgmma kernel less
// than one wave: 500 tokens of gte-Qwen2-1.5B's 12 heads are 48 blocks on 132 SMs. SGL_SHORT_PREFILL=1 sends
// prefills whose 128-row grid is under one wave to the mma.sync kernel's 64-row tiles (twice the blocks, two
// or more resident per SM) instead. Off: on an H100 (2026-12-07) the wgmma kernel took 18.2 us for 500 tokens
// against 22.8 for the 64-row tiles (attention_bench short), and a 500-token /encode 4.60 against 4.80 ms.
constexpr bool kShortPrefillBm64 = false;

bool short_prefill_bm64(const AttentionParams& p) {
  static const bool on = [] {
    const char* e = std::getenv("SGL_SHORT_PREFILL");
    return e != nullptr && e[0] != 0 ? e[0] == '1' : kShortPrefillBm64;
  }();
  if (!on || p.max_q_len <= 64) return false;  // <= 64 rows take the 64-row tiles anyway
  const int64_t blocks_128 = int64_t((p.max_q_len + 127) / 128) * p.H * p.B;
  return blocks_128 < sgl_sm_count();
}

}  // namespace

void attention_cuda(const AttentionParams& p) {
  if (p.B <= 0 || p.T <= 0 || p.H <= 0 || p.max_q_len <= 0) return;
  attn::check_shape(p, "attention_cuda");
  if (p.D == 64 || p.D == 128) {
    if (p.max_q_len == 1) attn::launch_decode_tc(p);
    else if (short_prefill_bm64(p)) attn::launch_prefill_tc_bm64(p);
    else if (!attn::launch_prefill_wgmma(p)) attn::launch_prefill_tc(p);
  } else {
    attn::launch_generic(p);
  }
}

// The float32 table: decode and prefill alike through the CUDA-core kernel (one warp per query row and head;
// exact f32 storage, f32 online softmax). Slower than the tensor-core kernels, which are bf16-only: this is
// the correctness mode.
void attention_cuda_f32(const AttentionParams& p) {
  if (p.B <= 0 || p.T <= 0 || p.H <= 0 || p.max_q_len <= 0) return;
  attn::check_shape(p, "attention_cuda_f32");
  attn::launch_generic_t<float>(p);
}

}  // namespace sgl
