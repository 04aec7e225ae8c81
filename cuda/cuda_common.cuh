// Shared by the CUDA backend's files: error checks, the one stream every kernel and copy runs on, and a
// growable device workspace (split-KV partials, conversion staging).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "backend/backend.h"

#include <cstddef>
#include <stdexcept>
#include <string>

namespace sgl {

[[noreturn]] void cuda_fail(cudaError_t e, const char* what, const char* file, int line);

// Throws std::runtime_error("CUDA error <name> (<string>) in <what> at file:line").
#define SGL_CUDA_CHECK(expr)                                                   \
  do {                                                                         \
    cudaError_t sgl_err_ = (expr);                                             \
    if (sgl_err_ != cudaSuccess) ::sgl::cuda_fail(sgl_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: a bad configuration shows here, not at the next sync.
#define SGL_CUDA_LAUNCH_CHECK() SGL_CUDA_CHECK(cudaGetLastError())

// The stream of the backend (created on first use, non-blocking). All kernels, cuBLASLt calls and copies
// of the backend go on it, in order; capture into CUDA graphs happens on it too.
cudaStream_t sgl_stream();

// A device scratch area of at least `bytes` (at least 64 MiB once first used), valid until the next call with
// a larger size (it grows and keeps its largest size; growing while a CUDA graph is captured throws).
// Used inside one backend op only: ops never hold it across calls.
void* sgl_workspace(size_t bytes);

// Streaming multiprocessor count of the current device (cached).
int sgl_sm_count();

// Throws "<op>: CUDA expects a bf16 weight (from place_weight), got <dtype>" unless w is bf16 (an absent
// weight, data null, passes: optional biases).
void require_bf16(const WeightRef& w, const char* op);
// The same for the float32 table (cuda_backend_f32), whose place_weight converts every weight to f32.
void require_f32(const WeightRef& w, const char* op);

// Element type <-> f32 in the kernels templated on the activation dtype (bf16 on the default table, f32 on
// the float32 one): to_f widens, from_f<E> rounds (bf16, nearest even) or passes through (f32).
__device__ __forceinline__ float to_f(__nv_bfloat16 h) { return __bfloat162float(h); }
__device__ __forceinline__ float to_f(float f) { return f; }
template <typename E>
__device__ __forceinline__ E from_f(float f);
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float f) { return __float2bfloat16_rn(f); }
template <>
__device__ __forceinline__ float from_f<float>(float f) { return f; }

}  // namespace sgl
