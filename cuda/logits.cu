// Backend::logits_argmax on the GPU: one block per logits row. Pass 1: max and its first index (NaN never
// chosen); pass 2: Z = sum exp(x - m) (NaN as -inf), each thread in f32 over its strided slice, the block in
// double; logprob = -log(Z). Same results as addon/cpu/logits_argmax.cc up to the summation order.
#include <cfloat>
#include <cmath>

#include "cuda_common.cuh"
#include "ops.h"

namespace sgl {
namespace {

constexpr int kThreads = 512;

__global__ void argmax_rows_kernel(const float* __restrict__ logits, int32_t V, int32_t* __restrict__ token,
                                   float* __restrict__ logprob) {
  const float* x = logits + size_t(blockIdx.x) * size_t(V);
  float best = -INFINITY;
  int32_t best_i = INT32_MAX;
  for (int32_t i = threadIdx.x; i < V; i += kThreads) {
    const float v = x[i];
    if (v > best) best = v, best_i = i;  // strided: a thread sees its indices in increasing order
  }
  __shared__ float s_val[kThreads / 32];
  __shared__ int32_t s_idx[kThreads / 32];
  __shared__ double s_sum[kThreads / 32];
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_down_sync(0xffffffffu, best, off);
    const int32_t oi = __shfl_down_sync(0xffffffffu, best_i, off);
    if (ov > best || (ov == best && oi < best_i)) best = ov, best_i = oi;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) s_val[warp] = best, s_idx[warp] = best_i;
  __syncthreads();
  if (warp == 0) {
    best = lane < kThreads / 32 ? s_val[lane] : -INFINITY;
    best_i = lane < kThreads / 32 ? s_idx[lane] : INT32_MAX;
    for (int off = 16; off > 0; off >>= 1) {
      const float ov = __shfl_down_sync(0xffffffffu, best, off);
      const int32_t oi = __shfl_down_sync(0xffffffffu, best_i, off);
      if (ov > best || (ov == best && oi < best_i)) best = ov, best_i = oi;
    }
    if (lane == 0) s_val[0] = best, s_idx[0] = best_i;
  }
  __syncthreads();
  const float m = s_val[0];
  if (m == -INFINITY) {  // nothing finite: the sampler's answer
    if (threadIdx.x == 0) token[blockIdx.x] = 0, logprob[blockIdx.x] = -FLT_MAX;
    return;
  }
  float part = 0.0f;
  for (int32_t i = threadIdx.x; i < V; i += kThreads) {
    const float v = x[i];
    part += isnan(v) ? 0.0f : expf(v - m);
  }
  double d = part;
  for (int off = 16; off > 0; off >>= 1) d += __shfl_down_sync(0xffffffffu, d, off);
  if (lane == 0) s_sum[warp] = d;
  __syncthreads();
  if (threadIdx.x == 0) {
    double z = 0.0;
    for (int w = 0; w < kThreads / 32; ++w) z += s_sum[w];
    token[blockIdx.x] = s_idx[0];
    logprob[blockIdx.x] = float(-log(z));
  }
}

}  // namespace

void logits_argmax_cuda(const ArgmaxParams& p) {
  if (p.R <= 0) return;
  argmax_rows_kernel<<<p.R, kThreads, 0, sgl_stream()>>>(p.logits, p.V, p.token, p.logprob);
  SGL_CUDA_LAUNCH_CHECK();
}

}  // namespace sgl
