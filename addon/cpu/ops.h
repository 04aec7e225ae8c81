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
void logits_argmax_cpu(const ArgmaxParams& p);
void qkv_rope_store_cpu(const QkvRopeStoreParams& p);
void layer_norm_cpu(const LayerNormParams& p);
void gelu_cpu(const GeluParams& p);
void moe_route_cpu(const MoeRouteParams& p);  // addon/cpu/moe.cc
void moe_permute_cpu(const MoePermuteParams& p);
void grouped_matmul_cpu(const GroupedMatmulParams& p);
void moe_unpermute_cpu(const MoeUnpermuteParams& p);
// Backend::sample_rows as the CPU sampler computes it (addon/cpu/sample_rows.cc): the reference of the CUDA
// kernel. Not in the CPU table: there the scheduler runs sample_row over the logits directly.
void sample_rows_cpu(const SampleRowsParams& p);

// Per-ISA kernels behind the dispatching ops; the threading stays in the baseline files. Call the
// SIMD ones only when cpu_max_isa() allows them.

// One query token x the G query heads of KV head kvh, over keys [k_begin, k_end) of the sequence whose
// pages are `pages` (see attention_impl.h): unnormalised per-head max m, sum l and output acc[G, D].
// scratch: 64 floats.
using AttendFn = void (*)(const AttentionParams& p, const float* q, int G, const int32_t* pages,
                          int64_t k_begin, int64_t k_end, int kvh, float* m, float* l, float* acc,
                          float* scratch);
void attend_group_scalar(const AttentionParams&, const float*, int, const int32_t*, int64_t, int64_t, int, float*,
                         float*, float*, float*);
void attend_group_avx2(const AttentionParams&, const float*, int, const int32_t*, int64_t, int64_t, int, float*,
                       float*, float*, float*);
void attend_group_avx512(const AttentionParams&, const float*, int, const int32_t*, int64_t, int64_t, int, float*,
                         float*, float*, float*);
void attention_with(AttendFn attend, const AttentionParams& p);

// out[i] = silu(gate[i]) * up[i] for n contiguous elements.
void silu_mul_row_scalar(const float* gate, const float* up, float* out, int64_t n);
void silu_mul_row_avx2(const float* gate, const float* up, float* out, int64_t n);
void silu_mul_row_avx512(const float* gate, const float* up, float* out, int64_t n);

}  // namespace sgl
