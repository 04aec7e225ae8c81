// The weight-streaming dot product of the skinny matmuls (T <= kGemvMaxT tokens), shared by the plain GEMV
// (gemv.cu) and the fused ones (gemv_fused.cu: rms_norm + GEMV, silu_mul + GEMV), so that an output row
// comes out bit-identical whichever kernel computed it.
//
// One warp owns R output rows. A row of W is K / 8 16-byte chunks; lane l takes chunks l, l + 32, l + 64, ...
// (nk of them), consumed in pairs (l + 64 j, l + 64 j + 32) and a last single one when nk is odd; each chunk
// is 8 bf16 weights dotted with the same 8 elements of each of the T activation rows, f32 accumulation
// (explicit fma, in element order), then a butterfly over the warp. kDepth chunks per row and lane are in
// flight: the first kDepth are issued by wrows_prefetch before the kernel reads any activation (weights are
// never written by a kernel, so this may run ahead of the grid-dependency wait), and each consumed pair is
// replaced by the chunks kDepth further on.
#pragma once
#include <cstdint>

#include "cuda_common.cuh"
#include "elementwise_common.cuh"

namespace sgl {
namespace gemv {

constexpr int kWarps = 8;  // warps per block
constexpr int kDepth = 4;  // 16-byte weight chunks in flight per lane and row

__device__ __forceinline__ void unpack8(const uint4& u, float f[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __bfloat1622float2(h[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}

// Chunks of a `chunks`-chunk row that lane `lane` owns (lane, lane + 32, ...).
__device__ __forceinline__ int lane_chunks(int chunks, int lane) { return lane < chunks ? (chunks - 1 - lane) / 32 + 1 : 0; }

// R weight rows of one warp and their chunks in flight (slot s holds the lane's chunk k with k % kDepth == s).
template <int R>
struct WRows {
  const uint4* row[R];
  uint4 buf[R][kDepth];
};

template <int R>
__device__ __forceinline__ uint4 wload(const WRows<R>& w, int r, int lane, int k, int nk) {
  return k < nk ? __ldg(w.row[r] + lane + 32 * k) : make_uint4(0u, 0u, 0u, 0u);
}

template <int R>
__device__ __forceinline__ void wrows_prefetch(WRows<R>& w, int lane, int nk) {
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int s = 0; s < kDepth; ++s) w.buf[r][s] = wload(w, r, lane, s, nk);
}

// Slots S, S + 1 <- chunks k, k + 1.
template <int S, int R>
__device__ __forceinline__ void wrows_refill(WRows<R>& w, int lane, int k, int nk) {
#pragma unroll
  for (int r = 0; r < R; ++r) {
    w.buf[r][S] = wload(w, r, lane, k, nk);
    w.buf[r][S + 1] = wload(w, r, lane, k + 1, nk);
  }
}

// acc[r][t] += W[r] chunks (slots S, S + 1) · x[t] chunks (c, c + 32).
template <int S, int T, int R, class X>
__device__ __forceinline__ void mac_pair(float (&acc)[R][T], const WRows<R>& w, int c, const X& xat) {
  float wf[R][16];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    unpack8(w.buf[r][S], wf[r]);
    unpack8(w.buf[r][S + 1], wf[r] + 8);
  }
#pragma unroll
  for (int t = 0; t < T; ++t) {
    float a[8], b[8];
    unpack8(xat(t, c), a);
    unpack8(xat(t, c + 32), b);
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[r][t] = __fmaf_rn(wf[r][8 + i], b[i], __fmaf_rn(wf[r][i], a[i], acc[r][t]));
  }
}

// acc[r][t] += W[r] chunk (slot S) · x[t] chunk c.
template <int S, int T, int R, class X>
__device__ __forceinline__ void mac_one(float (&acc)[R][T], const WRows<R>& w, int c, const X& xat) {
  float wf[R][8];
#pragma unroll
  for (int r = 0; r < R; ++r) unpack8(w.buf[r][S], wf[r]);
#pragma unroll
  for (int t = 0; t < T; ++t) {
    float a[8];
    unpack8(xat(t, c), a);
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[r][t] = __fmaf_rn(wf[r][i], a[i], acc[r][t]);
  }
}

// The dot products of the warp's R rows with the T activation rows; xat(t, c) returns chunk c (uint4, 8
// elements) of activation row t. w must have been prefetched (wrows_prefetch). Every lane ends with the full
// sums. Control flow depends only on nk (the same for every row), so the R rows advance together.
template <int T, int R, class X>
__device__ __forceinline__ void wrows_dot(WRows<R>& w, float (&acc)[R][T], int lane, int nk, const X& xat) {
  static_assert(kDepth == 4, "the loop below consumes two pairs of slots per iteration");
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < T; ++t) acc[r][t] = 0.0f;
  for (int k = 0; k < nk; k += 4) {
    const int c = lane + 32 * k;
    if (k + 1 >= nk) {
      mac_one<0>(acc, w, c, xat);
      break;
    }
    mac_pair<0>(acc, w, c, xat);
    wrows_refill<0>(w, lane, k + 4, nk);
    if (k + 2 >= nk) break;
    if (k + 3 >= nk) {
      mac_one<2>(acc, w, c + 64, xat);
      break;
    }
    mac_pair<2>(acc, w, c + 64, xat);
    wrows_refill<2>(w, lane, k + 6, nk);
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < T; ++t) acc[r][t] = warp_sum(acc[r][t]);
}

}  // namespace gemv
}  // namespace sgl
