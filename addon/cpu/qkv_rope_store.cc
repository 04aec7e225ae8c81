// Backend::qkv_rope_store on the CPU: the reference for the fused GPU kernel, written as what it replaces
// (split the q|k|v rows, rope_cpu, kv_store_cpu). The CPU model path does not fuse (its weights stay
// memory-mapped in place); the GPU parity harness compares against this.
#include <cstring>
#include <vector>

#include "cpu/ops.h"

namespace sgl {

void qkv_rope_store_cpu(const QkvRopeStoreParams& p) {
  const size_t QD = size_t(p.H) * p.D, KD = size_t(p.Hkv) * p.D, row = QD + 2 * KD;
  const float* qkv = static_cast<const float*>(p.qkv);
  float* q = static_cast<float*>(p.q);
  std::vector<float> k(size_t(p.T) * KD), v(size_t(p.T) * KD);
  for (int32_t t = 0; t < p.T; ++t) {
    std::memcpy(q + t * QD, qkv + t * row, QD * sizeof(float));
    std::memcpy(k.data() + t * KD, qkv + t * row + QD, KD * sizeof(float));
    std::memcpy(v.data() + t * KD, qkv + t * row + QD + KD, KD * sizeof(float));
  }
  rope_cpu({q, k.data(), p.positions, p.inv_freq, p.T, p.H, p.Hkv, p.D});
  kv_store_cpu({k.data(), v.data(), p.k_cache, p.v_cache, p.slots, p.T, p.Hkv, p.D});
}

}  // namespace sgl
