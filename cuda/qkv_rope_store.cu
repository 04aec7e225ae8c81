// Backend::qkv_rope_store on the GPU: one block per token reads its fused q|k|v projection row, rotates the
// q and k heads (HF rotate_half pairs (i, i + D/2), cos/sin from rope_common.cuh as rope_cuda) and writes q to [T, H, D] and k, v straight into the paged cache slot. One launch where the
// unfused path had three matmul outputs, rope and kv_store.
#include <cstdlib>
#include <cstdint>

#include "cuda_common.cuh"
#include "rope_common.cuh"
#include "ops.h"

namespace sgl {
namespace {

using bf16 = __nv_bfloat16;

// One rotated pair (i, i + half): the one place both kernels below compute it, so they round alike.
__device__ __forceinline__ void rope_pair(float x1, float x2, float c, float s, float& y1, float& y2) {
  y1 = x1 * c - x2 * s;
  y2 = x2 * c + x1 * s;
}

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
    float f1, f2;
    rope_pair(x1, x2, cs[i], cs[half + i], f1, f2);
    const E y1 = from_f<E>(f1), y2 = from_f<E>(f2);
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

// bf16 rows with D % 16 == 0: the same work in 16-byte pieces. A thread rotates 8 consecutive pairs of a head
// (two 16-byte loads: elements i..i+7 and i+half..i+half+7, two 16-byte stores) or copies 8 v elements, where
// the scalar kernel moves 2 bytes per access. fused_test checks it against the CPU and bit for bit against the
// scalar kernel (qkv_rope_store_cuda_force_path).
__global__ void qkv_rope_store_vec_kernel(const bf16* __restrict__ qkv, bf16* __restrict__ q, bf16* __restrict__ kc,
                                          bf16* __restrict__ vc, const int32_t* __restrict__ positions,
                                          const float* __restrict__ inv_freq, const int32_t* __restrict__ slots,
                                          int H, int Hkv, int D) {
  pdl_wait();
  pdl_trigger();
  extern __shared__ float cs[];  // [half] cos, then [half] sin
  const int half = D / 2, vecs = half / 8;  // 8-pair pieces per head
  const int64_t t = blockIdx.x;
  rope_cos_sin(cs, float(positions[t]), inv_freq, half);
  __syncthreads();
  const bf16* src = qkv + t * int64_t(H + 2 * Hkv) * D;
  const int64_t slot = slots[t];
  const int64_t kvrow = int64_t(Hkv) * D;
  const int rot = (H + Hkv) * vecs, vcopy = slot >= 0 ? int(kvrow / 8) : 0;
  for (int idx = threadIdx.x; idx < rot + vcopy; idx += blockDim.x) {
    if (idx >= rot) {  // v: 8 elements straight into the cache slot
      const int j = (idx - rot) * 8;
      *reinterpret_cast<uint4*>(vc + slot * kvrow + j) =
          *reinterpret_cast<const uint4*>(src + int64_t(H + Hkv) * D + j);
      continue;
    }
    const int h = idx / vecs, i = (idx - h * vecs) * 8;
    if (h >= H && slot < 0) continue;  // a k head of a token with no cache slot
    const bf16* in = src + int64_t(h) * D;
    const uint4 a = *reinterpret_cast<const uint4*>(in + i), b = *reinterpret_cast<const uint4*>(in + i + half);
    const bf16* xa = reinterpret_cast<const bf16*>(&a);
    const bf16* xb = reinterpret_cast<const bf16*>(&b);
    uint4 ya, yb;
    bf16* oa = reinterpret_cast<bf16*>(&ya);
    bf16* ob = reinterpret_cast<bf16*>(&yb);
#pragma unroll
    for (int e = 0; e < 8; e++) {
      float f1, f2;
      rope_pair(__bfloat162float(xa[e]), __bfloat162float(xb[e]), cs[i + e], cs[half + i + e], f1, f2);
      oa[e] = __float2bfloat16_rn(f1);
      ob[e] = __float2bfloat16_rn(f2);
    }
    bf16* o = h < H ? q + (t * H + h) * D : kc + slot * kvrow + int64_t(h - H) * D;
    *reinterpret_cast<uint4*>(o + i) = ya;
    *reinterpret_cast<uint4*>(o + i + half) = yb;
  }
}

// 0: by shape (the vector kernel where D allows), 1: scalar, 2: vector where D allows. SGL_ROPE_VEC=0 / 1 sets
// it for a whole process (the end-to-end probes compare the two); the harness's
// qkv_rope_store_cuda_force_path overrides it. The vector kernel is the default since 2026-12-07: on an H100
// fused_test passed (bit for bit against the scalar kernel) and ops_bench timed 3.8 against 5.4 us at 500
// gte-Qwen2-1.5B tokens, 48 against 68 us at 16,000 (2.7 against 1.9 TB/s).
constexpr bool kVectorByDefault = true;
int initial_path() {
  const char* e = std::getenv("SGL_ROPE_VEC");
  return e == nullptr || e[0] == 0 ? 0 : e[0] == '1' ? 2 : 1;
}
int g_force_path = initial_path();

template <typename E>
void qkv_rope_store_impl(const QkvRopeStoreParams& p) {
  if (p.T <= 0) return;
  const int threads = 128;
  if constexpr (sizeof(E) == 2) {
    const bool vec = p.D % 16 == 0 && (g_force_path == 2 || (g_force_path == 0 && kVectorByDefault));
    if (vec) {
      sgl_launch(qkv_rope_store_vec_kernel, dim3(unsigned(p.T)), dim3(threads), size_t(p.D) * sizeof(float),
                 static_cast<const bf16*>(p.qkv), static_cast<bf16*>(p.q), static_cast<bf16*>(p.k_cache),
                 static_cast<bf16*>(p.v_cache), p.positions, p.inv_freq, p.slots, p.H, p.Hkv, p.D);
      return;
    }
  }
  sgl_launch(qkv_rope_store_kernel<E>, dim3(unsigned(p.T)), dim3(threads), size_t(p.D) * sizeof(float),
             static_cast<const E*>(p.qkv), static_cast<E*>(p.q), static_cast<E*>(p.k_cache),
             static_cast<E*>(p.v_cache), p.positions, p.inv_freq, p.slots, p.H, p.Hkv, p.D);
}

}  // namespace

void qkv_rope_store_cuda_force_path(int path) { g_force_path = path; }

void qkv_rope_store_cuda(const QkvRopeStoreParams& p) { qkv_rope_store_impl<bf16>(p); }
// The float32 table: the same kernel on f32 rows (nothing is rounded between the projection and the cache).
void qkv_rope_store_cuda_f32(const QkvRopeStoreParams& p) { qkv_rope_store_impl<float>(p); }

}  // namespace sgl
