// y[T, N] = x[T, K] · W[N, K]ᵀ (+ bias), x and y f32, W and bias f32/bf16/f16 read in place.
//
// Two regimes: few tokens (decode) is a GEMV bound by streaming W once from memory; many tokens
// (prefill) is a compute-bound GEMM that converts W panels to f32 once and reuses them across tokens.
// The threading lives in matmul.cc (baseline ISA); the per-ISA files only provide the kernels below,
// so no std:: template is ever instantiated with AVX flags (its weak copy could win at link time).
#pragma once
#include <cstdint>

#include "backend/backend.h"

namespace sgl {

struct MatmulKernels {
  const char* name;
  // y[t0:t1, n0:n1], streaming each weight row once per group of 4-8 tokens (ISA-dependent).
  void (*gemv)(const MatmulParams& p, int64_t t0, int64_t t1, int64_t n0, int64_t n1);
  int gemv_tokens;  // T up to this takes the GEMV; above, the GEMM if there is one
  // y[t0:t1, n0:n0+nr] for one panel of nr <= panel_rows weight rows; null = no GEMM path.
  void (*gemm_panel)(const MatmulParams& p, int64_t n0, int nr, int64_t t0, int64_t t1);
  int panel_rows;   // rows of W per GEMM panel
  int token_block;  // tokens per micro-kernel tile
  int gemm_min_n;   // below this N, even many tokens go through the GEMV (panels would be mostly padding)
};

const MatmulKernels& matmul_kernels_scalar();
const MatmulKernels& matmul_kernels_avx2();    // only when cpu_max_isa() >= Avx2
const MatmulKernels& matmul_kernels_avx512();  // only when cpu_max_isa() == Avx512

void matmul_with(const MatmulKernels& k, const MatmulParams& p);
void matmul_cpu(const MatmulParams& p);  // matmul_with the kernels of cpu_isa()

}  // namespace sgl
