// Skinny matmul for decode batches of at most kGemvMaxT tokens (cuda/gemv.cu); matmul_cuda tries it first.
#pragma once
#include "backend/backend.h"

namespace sgl {
// Measured on the H100 (bench/gpu/ops_bench): faster than cuBLASLt at T = 1, slower from T = 8 (lm_head 276 vs
// 105 µs), so only 1-2 token steps take it.
constexpr int kGemvMaxT = 2;
// Enqueues y = x·Wᵀ (+bias) and returns true, or returns false when the shape or alignment does not fit.
bool gemv_cuda(const MatmulParams& p);
}  // namespace sgl
