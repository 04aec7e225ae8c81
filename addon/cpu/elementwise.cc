// Data-movement and element-wise ops: embed, kv_store, gather_rows, to_f32, silu_mul (dispatch + scalar).
#include <cmath>
#include <cstring>

#include "cpu/convert.h"
#include "cpu/cpu_features.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"

namespace sgl {

namespace {

// Elements per thread below which splitting costs more than it saves.
constexpr int64_t kMinParallelElems = 1 << 15;

int64_t min_rows_for(int64_t row_elems) { return 1 + kMinParallelElems / (row_elems + 1); }

}  // namespace

void embed_cpu(const EmbedParams& p) {
  float* out = static_cast<float*>(p.out);
  const int64_t C = p.C;
  cpu_pool().parallel_for(p.T, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++)
      load_weight_row(p.table.data, p.table.dtype, int64_t(p.ids[t]) * C, C, out + t * C);
  }, min_rows_for(C));
}

void kv_store_cpu(const KvStoreParams& p) {
  const int64_t row = int64_t(p.Hkv) * p.D;  // one token's K (or V) for all KV heads
  const float* k = static_cast<const float*>(p.k);
  const float* v = static_cast<const float*>(p.v);
  float* kc = static_cast<float*>(p.k_cache);
  float* vc = static_cast<float*>(p.v_cache);
  for (int64_t t = 0; t < p.T; t++) {
    int64_t slot = p.slots[t];
    if (slot < 0) continue;  // padding token
    std::memcpy(kc + slot * row, k + t * row, size_t(row) * 4);
    std::memcpy(vc + slot * row, v + t * row, size_t(row) * 4);
  }
}

void gather_rows_cpu(const GatherRowsParams& p) {
  const float* src = static_cast<const float*>(p.src);
  float* dst = static_cast<float*>(p.dst);
  const int64_t C = p.C;
  for (int64_t r = 0; r < p.R; r++) std::memcpy(dst + r * C, src + int64_t(p.rows[r]) * C, size_t(C) * 4);
}

void to_f32_cpu(const void* src, float* dst, size_t n) {
  if (src != dst) std::memcpy(dst, src, n * 4);
}

void silu_mul_row_scalar(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void silu_mul_cpu(const SiluMulParams& p) {
  void (*row)(const float*, const float*, float*, int64_t) = silu_mul_row_scalar;
  if (cpu_isa() == CpuIsa::Avx512) row = silu_mul_row_avx512;
  else if (cpu_isa() == CpuIsa::Avx2) row = silu_mul_row_avx2;
  const float* g = static_cast<const float*>(p.gate);
  const float* u = static_cast<const float*>(p.up);
  float* o = static_cast<float*>(p.out);
  if (p.ld != 0 && p.ld != p.I) {  // strided gate / up (a fused gate|up output): row by row
    cpu_pool().parallel_for(p.T, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) row(g + t * p.ld, u + t * p.ld, o + t * p.I, p.I);
    }, 1);
    return;
  }
  // Contiguous tensors: split the flat range, in whole 64-element pieces.
  const int64_t n = int64_t(p.T) * p.I, pieces = (n + 63) / 64;
  cpu_pool().parallel_for(pieces, [&](int64_t b, int64_t e) {
    int64_t i0 = b * 64, i1 = e * 64 < n ? e * 64 : n;
    row(g + i0, u + i0, o + i0, i1 - i0);
  }, kMinParallelElems / 64);
}

}  // namespace sgl
