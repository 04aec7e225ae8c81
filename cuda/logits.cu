// Backend::logits_argmax on the GPU: one block per logits row.
//  - Greedy rows. Pass 1: max and its first index (NaN never chosen); pass 2: Z = sum exp(x - m) (NaN as
//    -inf), each thread in f32 over its strided slice, the block in double; logprob = -log(Z).
//  - Sampled rows (inv_temp > 0): x = logits / T; each thread owns a contiguous slice of ids and sums its
//    exponentials in double, an exclusive scan over the slices gives each slice's running sum, and the one
//    slice where the running sum crosses u * Z walks its ids in order, exactly as the CPU sampler walks the
//    whole row. Same results as addon/cpu/logits_argmax.cc up to the summation order and expf's rounding.
#include <cfloat>
#include <cmath>

#include "cuda_common.cuh"
#include "ops.h"

namespace sgl {
namespace {

constexpr int kThreads = 512;

__global__ void argmax_rows_kernel(const float* __restrict__ logits, int32_t V, int32_t* __restrict__ token,
                                   float* __restrict__ logprob) {
  pdl_wait();  // PDL (cuda_common.cuh): the logits come from the lm_head before
  pdl_trigger();
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

__global__ void sample_rows_kernel(const float* __restrict__ logits, int32_t V, const float* __restrict__ inv_temp,
                                   const double* __restrict__ uniforms, int32_t* __restrict__ token,
                                   float* __restrict__ logprob) {
  pdl_wait();  // it overwrites argmax_rows_kernel's outputs
  pdl_trigger();
  const float inv = inv_temp[blockIdx.x];
  if (!(inv > 0.0f)) return;  // a greedy row: argmax_rows_kernel's
  const float* row = logits + size_t(blockIdx.x) * size_t(V);
  auto x_at = [&](int32_t i) {
    const float v = row[i];
    return isnan(v) ? -INFINITY : v * inv;
  };
  __shared__ float s_max[kThreads / 32];
  __shared__ double s_pref[kThreads];
  __shared__ int32_t s_tok;
  float m = -INFINITY;
  for (int32_t i = threadIdx.x; i < V; i += kThreads) m = fmaxf(m, x_at(i));
  for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  if (threadIdx.x % 32 == 0) s_max[threadIdx.x / 32] = m;
  __syncthreads();
  m = -INFINITY;
  for (int w = 0; w < kThreads / 32; ++w) m = fmaxf(m, s_max[w]);
  if (m == -INFINITY) {
    if (threadIdx.x == 0) token[blockIdx.x] = 0, logprob[blockIdx.x] = -FLT_MAX;
    return;
  }
  const int32_t chunk = (V + kThreads - 1) / kThreads;
  const int32_t b = min(V, int32_t(threadIdx.x) * chunk), e = min(V, b + chunk);
  double sum = 0.0;
  for (int32_t i = b; i < e; ++i) sum += double(expf(x_at(i) - m));
  s_pref[threadIdx.x] = sum;
  if (threadIdx.x == 0) s_tok = -1;
  __syncthreads();
  if (threadIdx.x == 0) {  // exclusive scan over the slices (id order)
    double run = 0.0;
    for (int j = 0; j < kThreads; ++j) {
      const double v = s_pref[j];
      s_pref[j] = run;
      run += v;
    }
  }
  __shared__ double s_z;
  __syncthreads();
  if (threadIdx.x == kThreads - 1) s_z = s_pref[kThreads - 1] + sum;
  __syncthreads();
  const double target = uniforms[blockIdx.x] * s_z;
  const double start = s_pref[threadIdx.x];
  if (sum > 0.0 && start <= target && start + sum > target) {
    double acc = start;
    for (int32_t i = b; i < e; ++i) {
      const float ei = expf(x_at(i) - m);
      if (ei <= 0.0f) continue;
      acc += double(ei);
      s_tok = i;
      if (acc > target) break;
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t t = s_tok;
    if (t < 0) {  // rounding put the target past the last sum: the last id with a positive term
      for (int32_t i = V - 1; i >= 0; --i)
        if (expf(x_at(i) - m) > 0.0f) {
          t = i;
          break;
        }
    }
    token[blockIdx.x] = t;
    logprob[blockIdx.x] = fmaxf(float(double(x_at(t) - m) - log(s_z)), -FLT_MAX);
  }
}

}  // namespace

void logits_argmax_cuda(const ArgmaxParams& p) {
  if (p.R <= 0) return;
  // Every row gets the argmax; rows with a temperature are then overwritten by the sampler kernel.
  sgl_launch(argmax_rows_kernel, dim3(unsigned(p.R)), dim3(kThreads), 0, p.logits, p.V, p.token, p.logprob);
  if (p.inv_temp)
    sgl_launch(sample_rows_kernel, dim3(unsigned(p.R)), dim3(kThreads), 0, p.logits, p.V, p.inv_temp, p.u, p.token,
               p.logprob);
}

}  // namespace sgl
