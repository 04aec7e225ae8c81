// The CUDA launchers of the Backend table (addon/backend/backend.h) other than attention (attention.h).
// Each takes the same params struct as the CPU op, with device pointers, and enqueues on sgl_stream().
// Activations are bf16; weights are what place_weight made of them (bf16).
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
}  // namespace sgl
