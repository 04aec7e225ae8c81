// Shared by the CUDA backend's files: error checks, the one stream every kernel and copy runs on, and a
// growable device workspace (split-KV partials, conversion staging).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "backend/backend.h"

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

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

// Whether the current device is compute capability 9.0 (H100 / H200), where the sm_90a code of the
// *_sm90.cu files runs (cached).
bool sgl_is_sm90();

// Throws "<op>: CUDA expects a bf16 weight (from place_weight), got <dtype>" unless w is bf16 (an absent
// weight, data null, passes: optional biases).
void require_bf16(const WeightRef& w, const char* op);
// The same for the float32 table (cuda_backend_f32), whose place_weight converts every weight to f32.
void require_f32(const WeightRef& w, const char* op);

// ---- programmatic dependent launch (PDL, sm_90+) -------------------------------------------------------
// A kernel launched through sgl_launch may start while the kernel before it on the stream is still running
// (cudaLaunchAttributeProgrammaticStreamSerialization), so it must call pdl_wait() before it reads anything
// an earlier kernel wrote or writes anything an earlier kernel reads: griddepcontrol.wait returns once every
// prerequisite grid has completed and its memory is visible. Only reads of data no kernel writes (weights)
// may come before it. pdl_trigger() lets the next PDL kernel be scheduled (it still waits for this grid's
// completion at its own pdl_wait); kernels here call it right after pdl_wait, so at most the next kernel is
// resident early, and a grid never completes before its predecessor (every thread waits first), which is
// what makes the ordering transitive along the stream. Both are no-ops when the kernel was launched
// normally. Off unless SGL_PDL=1 in the environment (read once): it measured slower (cuda/NOTES.md).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// SGL_PDL=1 and the device is sm_90 or newer (read once).
bool sgl_pdl_enabled();
// Whether the next launch on sgl_stream() may carry the PDL attribute: sgl_pdl_enabled(), and while the
// stream is being captured into a graph, only when every node the launch will depend on is a kernel node (a
// programmatic edge exists only between kernels; the first node of a graph, or one after a memset / copy,
// is launched normally).
bool sgl_pdl_launch_ok();

// Launches kernel<<<grid, block, smem, sgl_stream()>>>(args...) through cudaLaunchKernelEx, with the PDL
// attribute where sgl_pdl_launch_ok(); throws on a launch error. The kernel must follow the pdl_wait rule.
template <typename... KArgs, typename... Args>
void sgl_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = sgl_stream();
  cudaLaunchAttribute attr[1];
  if (sgl_pdl_launch_ok()) {
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
  }
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
  if (e != cudaSuccess) {
    cudaGetLastError();  // the launch error is reported here, not at the next check
    cuda_fail(e, "cudaLaunchKernelEx", __FILE__, __LINE__);
  }
}

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
