// The arithmetic of rms_norm and silu_mul, shared by their kernels (elementwise.cu) and by the fused GEMVs
// that recompute them inside the matmul (gemv_fused.cu), so that both paths round identically: one inline
// function per formula, explicit _rn intrinsics where --use_fast_math or FMA contraction could otherwise
// compile the same source text differently in two places.
#pragma once
#include <cstdint>

#include "cuda_common.cuh"

namespace sgl {

// A multiple of 32 (whole warps), between 32 and cap, covering `work` items if possible. rms_norm's block
// size is block_for(C / V, 1024); the fused norm mirrors a block of that size.
inline int block_for(int64_t work, int cap) {
  int64_t t = (work + 31) / 32 * 32;
  if (t < 32) t = 32;
  if (t > cap) t = cap;
  return int(t);
}

// Sum over the 32 lanes by a butterfly: every lane ends with the same value (a + b == b + a in IEEE, so the
// two lanes of each exchange compute equal sums).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// rms_norm: ss accumulates the squares of the (rounded) row, element by element; inv = 1 / sqrt(ss / C + eps);
// out = (h * inv) * g, then rounded to the storage type.
__device__ __forceinline__ float rms_sq_acc(float ss, float h) { return __fmaf_rn(h, h, ss); }
__device__ __forceinline__ float rms_inv(float ss, int C, float eps) {
  return rsqrtf(__fadd_rn(__fdiv_rn(ss, float(C)), eps));
}
__device__ __forceinline__ float rms_scale(float h, float inv, float g) { return __fmul_rn(__fmul_rn(h, inv), g); }

// silu(g) * u
__device__ __forceinline__ float silu_mul1(float g, float u) { return g / (1.0f + __expf(-g)) * u; }

}  // namespace sgl
