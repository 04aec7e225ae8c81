// The CPU implementations of the Backend ops (wired into the table by cpu_backend.cc). Activations and
// the KV cache are f32; weights are read in their stored dtype.
#pragma once
#include <cstddef>
#include <cstdint>

#include "backend/backend.h"

namespace sgl {

void embed_cpu(const EmbedParams& p);
void rms_norm_cpu(const RmsNormParams& p);
void rope_cpu(const RopeParams& p);
void kv_store_cpu(const KvStoreParams& p);
void attention_cpu(const AttentionParams& p);  // dispatches on cpu_isa()
void silu_mul_cpu(const SiluMulParams& p);     // dispatches on cpu_isa()
void gather_rows_cpu(const GatherRowsParams& p);
void to_f32_cpu(const void* src, float* dst, size_t n);

// Per-ISA kernels behind the dispatching ops; the threading stays in the baseline files. Call the
// SIMD ones only when cpu_max_isa() allows them.

// One (query token, head): softmax(q·Kᵀ·scale)·V over keys 0..n_keys-1 of the sequence whose pages are
// `pages`, KV head kvh. scratch: D + 64 floats.
using AttendFn = void (*)(const AttentionParams& p, const float* q, float* out, const int32_t* pages,
                          int64_t n_keys, int kvh, float* scratch);
void attend_one_scalar(const AttentionParams&, const float*, float*, const int32_t*, int64_t, int, float*);
void attend_one_avx2(const AttentionParams&, const float*, float*, const int32_t*, int64_t, int, float*);
void attend_one_avx512(const AttentionParams&, const float*, float*, const int32_t*, int64_t, int, float*);
void attention_with(AttendFn attend, const AttentionParams& p);

// out[i] = silu(gate[i]) * up[i] for n contiguous elements.
void silu_mul_row_scalar(const float* gate, const float* up, float* out, int64_t n);
void silu_mul_row_avx2(const float* gate, const float* up, float* out, int64_t n);
void silu_mul_row_avx512(const float* gate, const float* up, float* out, int64_t n);

}  // namespace sgl
