// Run-time ISA selection for the CPU kernels. The baseline build runs on any x86-64; the *_avx2.cc and
// *_avx512.cc kernels are only entered when cpuid (and the OS) say the instructions are usable.
#pragma once

namespace sgl {

enum class CpuIsa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

// Best ISA this machine supports: Avx512 needs avx512f+bw+vl+dq (+fma, f16c), Avx2 needs avx2+fma+f16c.
CpuIsa cpu_max_isa();

// ISA the kernels dispatch to now: cpu_max_isa(), capped by env SGL_CPU_ISA=scalar|avx2|avx512 at start-up
// and by set_cpu_isa(). Cheap to call (one relaxed atomic load).
CpuIsa cpu_isa();

// Caps the dispatch ISA (clamped to cpu_max_isa()); returns the ISA now in use. For tests and benchmarks.
CpuIsa set_cpu_isa(CpuIsa isa);

const char* cpu_isa_name(CpuIsa isa);

}  // namespace sgl
