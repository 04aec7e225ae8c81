// attention_cuda: the dispatcher, and the CUDA-core fallback for head dims without a tensor-core path.
//
//   D = 64 / 128, max_q_len == 1  -> split-KV decode (attention_decode.cu)
//   D = 64 / 128, otherwise       -> FlashAttention-2-style prefill, any mix of q_len (attention_prefill.cu)
//   any other D (multiple of 8, <= 256) -> generic_kernel below
//
// Nothing here allocates, synchronizes or reads device memory on the host (CUDA-graph capturable once the
// one-time per-kernel attribute setup and the workspace growth have happened).
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
__global__ void __launch_bounds__(kGenericWarps * 32)
    generic_kernel(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k_cache,
                   const __nv_bfloat16* __restrict__ v_cache, __nv_bfloat16* __restrict__ out,
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

  for (int d = lane; d < D; d += 32) sq[warp][d] = __bfloat162float(q[tok * D + d]);
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
      const uint4* kr = reinterpret_cast<const uint4*>(k_cache + off);
      float dot = 0.0f;
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
      const __nv_bfloat16* vr = v_cache + oj;
#pragma unroll
      for (int x = 0; x < kDPL; x++) {
        const int d = lane + 32 * x;
        if (d < D) o[x] = fmaf(pj, __bfloat162float(vr[d]), o[x]);
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
    if (d < D) out[tok * D + d] = __float2bfloat16_rn(o[x] * inv);
  }
}

}  // namespace

void launch_generic(const AttentionParams& p) {
  const dim3 grid((p.max_q_len + kGenericWarps - 1) / kGenericWarps, p.H, p.B);
  generic_kernel<<<grid, kGenericWarps * 32, 0, sgl_stream()>>>(
      static_cast<const __nv_bfloat16*>(p.q), static_cast<const __nv_bfloat16*>(p.k_cache),
      static_cast<const __nv_bfloat16*>(p.v_cache), static_cast<__nv_bfloat16*>(p.out), p.qo_indptr, p.kv_indptr,
      p.kv_page_indices, p.kv_lens, p.H, p.Hkv, p.D, p.P, p.scale * kLog2e, p.causal ? 1 : 0);
  SGL_CUDA_LAUNCH_CHECK();
}

}  // namespace attn

void attention_cuda(const AttentionParams& p) {
  if (p.B <= 0 || p.T <= 0 || p.H <= 0 || p.max_q_len <= 0) return;
  if (p.Hkv <= 0 || p.H % p.Hkv != 0 || p.D <= 0 || p.D % 8 != 0 || p.D > attn::kGenericMaxD || p.P <= 0)
    throw std::invalid_argument("attention_cuda: unsupported shape H=" + std::to_string(p.H) +
                                " Hkv=" + std::to_string(p.Hkv) + " D=" + std::to_string(p.D) +
                                " P=" + std::to_string(p.P));
  if (p.D == 64 || p.D == 128) {
    if (p.max_q_len == 1) attn::launch_decode_tc(p);
    else attn::launch_prefill_tc(p);
  } else {
    attn::launch_generic(p);
  }
}

}  // namespace sgl
