// The rotary angles both rope kernels use (rope_cuda in elementwise.cu, qkv_rope_store_cuda): cos/sin of
// pos * inv_freq[i] (the f32 product, as HF rounds it) in double precision (--use_fast_math would turn sincosf
// into the low-accuracy __sincosf, which is off by far more than bf16 at positions ~1e5), into shared memory
// cs = [half] cos, then [half] sin. The block's threads share the work; the caller syncs before reading.
#pragma once

namespace sgl {

__device__ __forceinline__ void rope_cos_sin(float* cs, float pos, const float* __restrict__ inv_freq, int half) {
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    double s, c;
    sincos(double(pos * inv_freq[i]), &s, &c);
    cs[i] = float(c);
    cs[half + i] = float(s);
  }
}

}  // namespace sgl
