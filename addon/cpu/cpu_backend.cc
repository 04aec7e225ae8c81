// The CPU Backend table: f32 activations and KV cache in host memory, weights read in place.
#include <cstdlib>
#include <cstring>

#include "backend/backend.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"

namespace sgl {

namespace {

void* cpu_alloc(size_t bytes) {
  // 64-byte aligned (one cache line / one zmm); aligned_alloc wants a multiple of the alignment.
  size_t n = (bytes + 63) & ~size_t(63);
  return std::aligned_alloc(64, n ? n : 64);
}

void cpu_free(void* p) { std::free(p); }
void cpu_copy(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void cpu_memset_zero(void* dst, size_t bytes) {
  if (bytes) std::memset(dst, 0, bytes);
}
void cpu_sync() {}
void* cpu_host_alloc(size_t bytes) { return cpu_alloc(bytes); }
void cpu_host_free(void* p) { cpu_free(p); }
WeightRef cpu_place_weight(const WeightRef& host, size_t) { return host; }  // used in place (memory map)
void cpu_release_weight(const WeightRef&) {}

}  // namespace

const Backend& cpu_backend() {
  static const Backend b = {
      "cpu",
      DType::F32,
      cpu_alloc,
      cpu_free,
      cpu_copy,  // upload
      cpu_copy,  // download
      cpu_memset_zero,
      cpu_sync,
      cpu_host_alloc,
      cpu_host_free,
      cpu_copy,
      cpu_place_weight,
      cpu_release_weight,
      embed_cpu,
      matmul_cpu,
      rms_norm_cpu,
      rope_cpu,
      kv_store_cpu,
      attention_cpu,
      silu_mul_cpu,
      gather_rows_cpu,
      to_f32_cpu,
      logits_argmax_cpu,
      nullptr,  // graph_begin: no graphs on the CPU
      nullptr,
      nullptr,
      nullptr,
      qkv_rope_store_cpu,
      layer_norm_cpu,
      gelu_cpu,
      nullptr,  // sample_rows: the CPU samples over the logits in place (sample_row); sample_rows_cpu is the
                // reference the CUDA kernel is checked against
      nullptr,  // rms_norm_matmul: the CPU runs rms_norm, then matmul
      nullptr,  // silu_mul_matmul
      moe_route_cpu,
      moe_permute_cpu,
      grouped_matmul_cpu,
      moe_unpermute_cpu,
  };
  return b;
}

}  // namespace sgl
