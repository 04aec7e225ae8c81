// Skinny matmul for decode steps of 1-2 tokens (kGemvMaxT): y[t, n] = x[t, :] · W[n, :] (+ bias[n]).
// Memory-bound: every weight byte is read once, so the floor is |W| / bandwidth (Qwen2.5-0.5B's layer
// matmuls are 2-9 MB: 1-3 µs at ~3 TB/s, where cuBLASLt's kernels for M = 1 took ~10 µs each).
// One warp per output row: each lane streams 16-byte chunks of W's row and dots them with the T rows of x
// (read through L1; x is at most 2 x K bf16), f32 accumulation, a warp reduction, lane 0 writes.
// Needs K % 8 == 0 and 16-byte aligned x and W (matmul_cuda checks and otherwise uses cuBLASLt).
#include <cstdint>

#include "cuda_common.cuh"
#include "gemv.h"

namespace sgl {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kWarps = 8;

__device__ __forceinline__ void unpack8(const uint4& u, float f[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __bfloat1622float2(h[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}

template <int T, bool kF32Out>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const bf16* __restrict__ x, const bf16* __restrict__ w,
                                                          const bf16* __restrict__ bias, void* __restrict__ y,
                                                          int K, int N) {
  const int n = blockIdx.x * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (n >= N) return;
  const uint4* wr = reinterpret_cast<const uint4*>(w + size_t(n) * K);
  const int chunks = K / 8;
  float acc[T];
#pragma unroll
  for (int t = 0; t < T; ++t) acc[t] = 0.0f;
  int c = lane;
  // Two weight chunks in flight per lane before their first use.
  for (; c + 32 < chunks; c += 64) {
    const uint4 u0 = __ldg(wr + c), u1 = __ldg(wr + c + 32);
    float w0[8], w1[8];
    unpack8(u0, w0);
    unpack8(u1, w1);
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const uint4* xr = reinterpret_cast<const uint4*>(x + size_t(t) * K);
      float a[8], b[8];
      unpack8(__ldg(xr + c), a);
      unpack8(__ldg(xr + c + 32), b);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[t] += w0[i] * a[i] + w1[i] * b[i];
    }
  }
  for (; c < chunks; c += 32) {
    float w0[8];
    unpack8(__ldg(wr + c), w0);
#pragma unroll
    for (int t = 0; t < T; ++t) {
      float a[8];
      unpack8(__ldg(reinterpret_cast<const uint4*>(x + size_t(t) * K) + c), a);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[t] += w0[i] * a[i];
    }
  }
#pragma unroll
  for (int t = 0; t < T; ++t)
    for (int off = 16; off > 0; off >>= 1) acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], off);
  if (lane == 0) {
    const float b = bias ? __bfloat162float(bias[n]) : 0.0f;
#pragma unroll
    for (int t = 0; t < T; ++t) {
      if (kF32Out)
        static_cast<float*>(y)[size_t(t) * N + n] = acc[t] + b;
      else
        static_cast<bf16*>(y)[size_t(t) * N + n] = __float2bfloat16(acc[t] + b);
    }
  }
}

template <int T>
void launch(const MatmulParams& p) {
  const dim3 grid(unsigned((p.N + kWarps - 1) / kWarps));
  const bf16* x = static_cast<const bf16*>(p.x);
  const bf16* w = static_cast<const bf16*>(p.w.data);
  const bf16* b = static_cast<const bf16*>(p.bias.data);
  if (p.y_f32)
    gemv_kernel<T, true><<<grid, kWarps * 32, 0, sgl_stream()>>>(x, w, b, p.y, p.K, p.N);
  else
    gemv_kernel<T, false><<<grid, kWarps * 32, 0, sgl_stream()>>>(x, w, b, p.y, p.K, p.N);
  SGL_CUDA_LAUNCH_CHECK();
}

}  // namespace

bool gemv_cuda(const MatmulParams& p) {
  const bool aligned = (reinterpret_cast<uintptr_t>(p.x) % 16 == 0) && (reinterpret_cast<uintptr_t>(p.w.data) % 16 == 0);
  if (p.T < 1 || p.T > kGemvMaxT || p.K % 8 != 0 || p.K <= 0 || !aligned) return false;
  if (p.T == 1)
    launch<1>(p);
  else
    launch<2>(p);
  return true;
}

}  // namespace sgl
