// Skinny matmul for decode steps of 1-2 tokens (kGemvMaxT): y[t, n] = x[t, :] · W[n, :] (+ bias[n]).
// Memory-bound: every weight byte is read once, so the floor is |W| / bandwidth (Qwen2.5-0.5B's layer
// matmuls are 2-9 MB: 1-3 µs at ~3 TB/s, where cuBLASLt's kernels for M = 1 took ~10 µs each).
// One warp per output row (gemv_common.cuh: each lane streams 16-byte chunks of W's row, kDepth in flight,
// and dots them with the T rows of x, read through L1; x is at most 2 x K bf16), f32 accumulation, a warp
// reduction, lane 0 writes. The weight chunks are requested before x is read, and before the PDL wait
// (cuda_common.cuh) for the kernel that wrote x.
// Needs K % 8 == 0 and 16-byte aligned x and W (matmul_cuda checks and otherwise uses cuBLASLt).
#include <cstdint>

#include "cuda_common.cuh"
#include "gemv.h"
#include "gemv_common.cuh"

namespace sgl {
namespace {

using bf16 = __nv_bfloat16;
using gemv::kWarps;

template <int T, bool kF32Out>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const bf16* x, const bf16* __restrict__ w,
                                                          const bf16* __restrict__ bias, void* __restrict__ y,
                                                          int K, int N) {
  const int n = blockIdx.x * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int chunks = K / 8;
  const int nk = n < N ? gemv::lane_chunks(chunks, lane) : 0;
  gemv::WRows<1> wr;
  wr.row[0] = reinterpret_cast<const uint4*>(w + size_t(n < N ? n : 0) * K);
  gemv::wrows_prefetch(wr, lane, nk);  // weights only: before the wait for the kernel that wrote x
  pdl_wait();
  pdl_trigger();
  if (n >= N) return;
  const uint4* xr = reinterpret_cast<const uint4*>(x);
  float acc[1][T];
  // x is the previous kernel's output: plain (coherent) loads, not __ldg's read-only path, as the kernel may
  // have started before that kernel finished (PDL).
  gemv::wrows_dot(wr, acc, lane, nk, [&](int t, int c) { return xr[t * chunks + c]; });
  if (lane == 0) {
    const float b = bias ? __bfloat162float(bias[n]) : 0.0f;
#pragma unroll
    for (int t = 0; t < T; ++t) {
      if (kF32Out)
        static_cast<float*>(y)[size_t(t) * N + n] = acc[0][t] + b;
      else
        static_cast<bf16*>(y)[size_t(t) * N + n] = __float2bfloat16(acc[0][t] + b);
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
    sgl_launch(gemv_kernel<T, true>, grid, dim3(kWarps * 32), 0, x, w, b, p.y, p.K, p.N);
  else
    sgl_launch(gemv_kernel<T, false>, grid, dim3(kWarps * 32), 0, x, w, b, p.y, p.K, p.N);
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
