// Paged attention on the GPU (AttentionParams in addon/backend/backend.h; all its arrays are device memory,
// max_q_len / max_kv_len are host-side bounds). Decode steps (max_q_len == 1) take the split-KV kernel,
// the rest the FlashAttention-2-style prefill kernel. bf16 q/k/v/out, f32 softmax and accumulation.
#pragma once
#include "backend/backend.h"

namespace sgl {
void attention_cuda(const AttentionParams& p);
// The float32 table's attention: f32 q/k/v/out, every shape through the CUDA-core kernel (attention.cu).
void attention_cuda_f32(const AttentionParams& p);
}  // namespace sgl
