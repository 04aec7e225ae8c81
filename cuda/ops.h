// The CUDA launchers of the Backend table (addon/backend/backend.h) other than attention (attention.h).
// Each takes the same params struct as the CPU op, with device pointers, and enqueues on sgl_stream().
// Activations are bf16; weights are what place_weight made of them (bf16). The *_f32 launchers below are the
// float32 table's.
#pragma once
#include "backend/backend.h"

namespace sgl {
void embed_cuda(const EmbedParams& p);
void matmul_cuda(const MatmulParams& p);
void rms_norm_cuda(const RmsNormParams& p);
void rope_cuda(const RopeParams& p);
void kv_store_cuda(const KvStoreParams& p);
void silu_mul_cuda(const SiluMulParams& p);
void gather_rows_cuda(const GatherRowsParams& p);
void logits_argmax_cuda(const ArgmaxParams& p);  // cuda/logits.cu
void qkv_rope_store_cuda(const QkvRopeStoreParams& p);  // cuda/qkv_rope_store.cu
void layer_norm_cuda(const LayerNormParams& p);         // cuda/layer_norm_gelu.cu
void gelu_cuda(const GeluParams& p);
void sample_rows_cuda(const SampleRowsParams& p);  // cuda/sampling.cu
// cuda/gemv_fused.cu: decode steps (T <= kGemvMaxT), bf16 only; false (nothing enqueued) where they do not fit.
bool rms_norm_matmul_cuda(const RmsNormMatmulParams& p);
bool silu_mul_matmul_cuda(const SiluMulMatmulParams& p);
// cuda/matmul_silu_sm90.cu: prefill steps on an sm_90 device (wgmma), bf16 only; false where it does not fit.
bool matmul_silu_mul_cuda(const MatmulSiluMulParams& p);
bool matmul_add_cuda(const MatmulParams& p);  // y += x · Wᵀ (+ bias): cuBLASLt with beta = 1
// cuda/moe.cu: the MoE ops (E <= 256, K <= 8; offsets and counts stay on the device, graph-capturable).
// moe_route works on the f32 router logits and serves both tables. grouped_matmul takes bf16 expert weights
// (each 16-byte aligned, as place_weight allocates them) and picks a GEMV (few rows per expert), tensor-core
// tiles or CUDA-core tiles (odd K / N) from the host-side shape.
void moe_route_cuda(const MoeRouteParams& p);
void moe_permute_cuda(const MoePermuteParams& p);
void grouped_matmul_cuda(const GroupedMatmulParams& p);
void moe_unpermute_cuda(const MoeUnpermuteParams& p);
// Tests and benches only: forces grouped_matmul_cuda's path for the calls that follow (0: by shape, 1: GEMV,
// 2: tensor-core tiles, 3: CUDA-core tiles; a path the shape does not allow falls back to 3). Not thread-safe.
void grouped_matmul_cuda_force_path(int path);
// Tests and benches only: qkv_rope_store_cuda's kernel for the calls that follow (0: by shape, 1: the scalar
// kernel, 2: the 16-byte one where D % 16 == 0, bf16). Not thread-safe.
void qkv_rope_store_cuda_force_path(int path);

// The float32 table (cuda_backend_f32): the same ops on f32 activations and f32 weights, f32 math (matmul:
// cuBLASLt with f32 compute and f32 A/B/C/D, no TF32; the tiled CUDA-core kernel without cuBLAS).
void embed_cuda_f32(const EmbedParams& p);
void matmul_cuda_f32(const MatmulParams& p);
void rms_norm_cuda_f32(const RmsNormParams& p);
void rope_cuda_f32(const RopeParams& p);
void kv_store_cuda_f32(const KvStoreParams& p);
void silu_mul_cuda_f32(const SiluMulParams& p);
void gather_rows_cuda_f32(const GatherRowsParams& p);
void qkv_rope_store_cuda_f32(const QkvRopeStoreParams& p);
void layer_norm_cuda_f32(const LayerNormParams& p);
void gelu_cuda_f32(const GeluParams& p);
void moe_permute_cuda_f32(const MoePermuteParams& p);      // cuda/moe.cu
void grouped_matmul_cuda_f32(const GroupedMatmulParams& p);  // f32 expert weights, CUDA-core tiles
void moe_unpermute_cuda_f32(const MoeUnpermuteParams& p);
}  // namespace sgl
