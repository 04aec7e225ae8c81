#include "cpu/cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace sgl {

namespace {

CpuIsa detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the AVX / AVX-512 register state (XCR0).
  bool fma_f16c = __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (fma_f16c && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return CpuIsa::Avx512;
  if (fma_f16c && __builtin_cpu_supports("avx2")) return CpuIsa::Avx2;
#endif
  return CpuIsa::Scalar;
}

CpuIsa from_env(CpuIsa max_isa) {
  const char* s = std::getenv("SGL_CPU_ISA");
  if (!s) return max_isa;
  CpuIsa want = max_isa;
  if (!std::strcmp(s, "scalar")) want = CpuIsa::Scalar;
  else if (!std::strcmp(s, "avx2")) want = CpuIsa::Avx2;
  else if (!std::strcmp(s, "avx512")) want = CpuIsa::Avx512;
  return int(want) < int(max_isa) ? want : max_isa;
}

std::atomic<int>& active_isa() {
  static std::atomic<int> isa{int(from_env(cpu_max_isa()))};
  return isa;
}

}  // namespace

CpuIsa cpu_max_isa() {
  static const CpuIsa isa = detect();
  return isa;
}

CpuIsa cpu_isa() { return CpuIsa(active_isa().load(std::memory_order_relaxed)); }

CpuIsa set_cpu_isa(CpuIsa isa) {
  CpuIsa max_isa = cpu_max_isa();
  CpuIsa use = int(isa) < int(max_isa) ? isa : max_isa;
  active_isa().store(int(use), std::memory_order_relaxed);
  return use;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Avx512: return "avx512";
    case CpuIsa::Avx2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace sgl
