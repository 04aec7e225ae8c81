// LayerNorm (with the post-norm residual add) and GELU on the GPU, for the encoder models (XLM-RoBERTa).
// LayerNorm: one block per row; the row (x + residual, rounded to bf16 as the residual stream is) is read
// once into shared memory, mean then variance by block reductions in f32, then normalised with the bf16
// weight and bias. GELU: elementwise, erff (exact) or the tanh form. bf16 in and out (f32 on the float32
// table, where nothing is rounded), f32 math.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_common.cuh"
#include "ops.h"

namespace sgl {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 256;

__device__ float block_sum(float v, float* red) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // red may still be read from a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float s = 0.0f;
  for (int w = 0; w < kThreads / 32; ++w) s += red[w];
  return s;
}

template <typename E>
__global__ void layer_norm_kernel(const E* __restrict__ x, const E* __restrict__ res, E* out,
                                  const E* __restrict__ w, const E* __restrict__ b, int C, float eps) {
  extern __shared__ float row[];  // [C]
  __shared__ float red[kThreads / 32];
  const int64_t base = int64_t(blockIdx.x) * C;
  float sum = 0.0f;
  for (int c = threadIdx.x; c < C; c += kThreads) {
    float v = to_f(x[base + c]);
    if (res) v = to_f(from_f<E>(v + to_f(res[base + c])));  // the residual stream's rounding (none in f32)
    row[c] = v;
    sum += v;
  }
  const float mean = block_sum(sum, red) / float(C);
  float sq = 0.0f;
  for (int c = threadIdx.x; c < C; c += kThreads) {
    const float d = row[c] - mean;
    sq += d * d;
  }
  const float inv = rsqrtf(block_sum(sq, red) / float(C) + eps);
  for (int c = threadIdx.x; c < C; c += kThreads) {
    const float y = (row[c] - mean) * inv * to_f(w[c]) + (b ? to_f(b[c]) : 0.0f);
    out[base + c] = from_f<E>(y);
  }
}

template <typename E, bool kTanh>
__global__ void gelu_kernel(const E* __restrict__ x, E* out, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float v = to_f(x[i]);
    const float g = kTanh ? 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)))
                          : 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
    out[i] = from_f<E>(g);
  }
}

template <typename E>
void layer_norm_impl(const LayerNormParams& p) {
  if (p.T <= 0) return;
  const size_t smem = size_t(p.C) * sizeof(float);
  if (smem > 48 * 1024)
    SGL_CUDA_CHECK(cudaFuncSetAttribute(layer_norm_kernel<E>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  layer_norm_kernel<E><<<p.T, kThreads, smem, sgl_stream()>>>(
      static_cast<const E*>(p.x), static_cast<const E*>(p.residual), static_cast<E*>(p.out),
      static_cast<const E*>(p.w.data), static_cast<const E*>(p.b.data), p.C, p.eps);
  SGL_CUDA_LAUNCH_CHECK();
}

template <typename E>
void gelu_impl(const GeluParams& p) {
  if (p.n <= 0) return;
  int64_t blocks = (p.n + kThreads - 1) / kThreads;
  const int64_t cap = int64_t(sgl_sm_count()) * 16;
  if (blocks > cap) blocks = cap;
  const E* x = static_cast<const E*>(p.x);
  E* o = static_cast<E*>(p.out);
  if (p.tanh_approx)
    gelu_kernel<E, true><<<unsigned(blocks), kThreads, 0, sgl_stream()>>>(x, o, p.n);
  else
    gelu_kernel<E, false><<<unsigned(blocks), kThreads, 0, sgl_stream()>>>(x, o, p.n);
  SGL_CUDA_LAUNCH_CHECK();
}

}  // namespace

void layer_norm_cuda(const LayerNormParams& p) {
  if (p.T <= 0) return;
  require_bf16(p.w, "layer_norm weight");
  require_bf16(p.b, "layer_norm bias");
  layer_norm_impl<bf16>(p);
}

void gelu_cuda(const GeluParams& p) { gelu_impl<bf16>(p); }

void layer_norm_cuda_f32(const LayerNormParams& p) {
  if (p.T <= 0) return;
  require_f32(p.w, "layer_norm weight");
  require_f32(p.b, "layer_norm bias");
  layer_norm_impl<float>(p);
}

void gelu_cuda_f32(const GeluParams& p) { gelu_impl<float>(p); }

}  // namespace sgl
