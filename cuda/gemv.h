// Skinny matmul for decode batches of at most kGemvMaxT tokens (cuda/gemv.cu); matmul_cuda tries it first.
#pragma once
#include "backend/backend.h"

namespace sgl {
constexpr int kGemvMaxT = 8;
// Enqueues y = x·Wᵀ (+bias) and returns true, or returns false when the shape or alignment does not fit.
bool gemv_cuda(const MatmulParams& p);
}  // namespace sgl
