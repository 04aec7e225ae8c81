// Backend::qkv_rope_store on the GPU: one block per token reads its fused q|k|v projection row, rotates the
// q and k heads (HF rotate_half pairs (i, i + D/2), cos/sin from rope_common.cuh as rope_cuda) and writes q to [T, H, D] and k, v straight into the paged cache slot. One launch where the
// unfused path had three matmul outputs, rope and kv_store.
#include <cstdint>

#include "cuda_common.cuh"
#include "rope_common.cuh"
#include "ops.h"

namespace sgl {
namespace {

using bf16 = __nv_bfloat16;

template <typename E>
__global__ void qkv_rope_store_kernel(const E* __restrict__ qkv, E* __restrict__ q, E* __restrict__ kc,
                                      E* __restrict__ vc, const int32_t* __restrict__ positions,
                                      const float* __restrict__ inv_freq, const int32_t* __restrict__ slots, int H,
                                      int Hkv, int D) {
  pdl_wait();  // PDL (cuda_common.cuh): the qkv rows come from the kernel before
  pdl_trigger();
  extern __shared__ float cs[];  // [half] cos, then [half] sin
  const int half = D / 2;
  const int64_t t = blockIdx.x;
  rope_cos_sin(cs, float(positions[t]), inv_freq, half);
  __syncthreads();
  const int64_t row = int64_t(H + 2 * Hkv) * D;
  const E* src = qkv + t * row;
  const int64_t slot = slots[t];
  const int64_t kvrow = int64_t(Hkv) * D;
  // Rotations: (H + Hkv) heads x half pairs.
  const int pairs = (H + Hkv) * half;
  for (int idx = threadIdx.x; idx < pairs; idx += blockDim.x) {
    const int h = idx / half, i = idx - h * half;
    const E* in = src + int64_t(h) * D;  // q heads, then k heads: contiguous in the fused row
    const float x1 = to_f(in[i]), x2 = to_f(in[i + half]);
    const float c = cs[i], s = cs[half + i];
    const E y1 = from_f<E>(x1 * c - x2 * s), y2 = from_f<E>(x2 * c + x1 * s);
    if (h < H) {
      E* o = q + (t * H + h) * D;
      o[i] = y1;
      o[i + half] = y2;
    } else if (slot >= 0) {
      E* o = kc + slot * kvrow + int64_t(h - H) * D;
      o[i] = y1;
      o[i + half] = y2;
    }
  }
  if (slot < 0) return;
  const E* v = src + int64_t(H + Hkv) * D;
  for (int64_t j = threadIdx.x; j < kvrow; j += blockDim.x) vc[slot * kvrow + j] = v[j];
}

template <typename E>
void qkv_rope_store_impl(const QkvRopeStoreParams& p) {
  if (p.T <= 0) return;
  const int threads = 128;
  sgl_launch(qkv_rope_store_kernel<E>, dim3(unsigned(p.T)), dim3(threads), size_t(p.D) * sizeof(float),
             static_cast<const E*>(p.qkv), static_cast<E*>(p.q), static_cast<E*>(p.k_cache),
             static_cast<E*>(p.v_cache), p.positions, p.inv_freq, p.slots, p.H, p.Hkv, p.D);
}

}  // namespace

void qkv_rope_store_cuda(const QkvRopeStoreParams& p) { qkv_rope_store_impl<bf16>(p); }
// The float32 table: the same kernel on f32 rows (nothing is rounded between the projection and the cache).
void qkv_rope_store_cuda_f32(const QkvRopeStoreParams& p) { qkv_rope_store_impl<float>(p); }

}  // namespace sgl
