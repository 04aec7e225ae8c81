#include "cuda_common.cuh"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace sgl {

void cuda_fail(cudaError_t e, const char* what, const char* file, int line) {
  throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") in " +
                           what + " at " + file + ":" + std::to_string(line));
}

cudaStream_t sgl_stream() {
  static cudaStream_t s = [] {
    cudaStream_t st;
    SGL_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    return st;
  }();
  return s;
}

void* sgl_workspace(size_t bytes) {
  static void* ptr = nullptr;
  static size_t cap = 0;
  if (bytes > cap) {
    // A captured CUDA graph holds the workspace's address: it must not move once graphs exist. The first
    // allocation is generous (split-KV partials need a few MiB at most) and growth during a capture is an
    // error rather than a dangling pointer.
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    SGL_CUDA_CHECK(cudaStreamIsCapturing(sgl_stream(), &cs));
    if (cs != cudaStreamCaptureStatusNone)
      throw std::runtime_error("sgl_workspace: " + std::to_string(bytes) + " bytes needed while capturing a CUDA graph");
    if (ptr) {
      SGL_CUDA_CHECK(cudaStreamSynchronize(sgl_stream()));  // the old area may still be in use
      SGL_CUDA_CHECK(cudaFree(ptr));
      ptr = nullptr;
    }
    size_t want = std::max(bytes + bytes / 2, size_t(64) << 20);
    SGL_CUDA_CHECK(cudaMalloc(&ptr, want));
    cap = want;
  }
  return ptr;
}

int sgl_sm_count() {
  static int n = [] {
    int dev = 0, v = 0;
    SGL_CUDA_CHECK(cudaGetDevice(&dev));
    SGL_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
    return v;
  }();
  return n;
}

bool sgl_is_sm90() {
  static const bool yes = [] {
    int dev = 0, major = 0, minor = 0;
    SGL_CUDA_CHECK(cudaGetDevice(&dev));
    SGL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    SGL_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    return major == 9 && minor == 0;
  }();
  return yes;
}

bool sgl_pdl_enabled() {
  static const bool on = [] {
    // Opt-in: measured on an H100 (2026-12-05), Qwen2.5-0.5B batch-1 decode ran at 891 tokens/s with PDL
    // and 918 without, and batch 256 lost ~10% with it (early-resident dependents take SM slots from
    // multi-wave grids). SGL_PDL=1 turns it on.
    const char* e = std::getenv("SGL_PDL");
    if (!e || std::strcmp(e, "1") != 0) return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return major >= 9;
  }();
  return on;
}

bool sgl_pdl_launch_ok() {
  if (!sgl_pdl_enabled()) return false;
  cudaStream_t s = sgl_stream();
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &st) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  if (st == cudaStreamCaptureStatusNone) return true;  // eager: the runtime relaxes kernel -> kernel only
  if (st != cudaStreamCaptureStatusActive) return false;
#if CUDART_VERSION >= 12030  // programmatic edges in captured graphs
  const cudaGraphNode_t* deps = nullptr;
  const cudaGraphEdgeData* edges = nullptr;  // asked for: a query without it fails on programmatic edges
  size_t n = 0;
#if CUDART_VERSION >= 13000
  cudaError_t e = cudaStreamGetCaptureInfo(s, &st, nullptr, nullptr, &deps, &edges, &n);
#else
  cudaError_t e = cudaStreamGetCaptureInfo_v3(s, &st, nullptr, nullptr, &deps, &edges, &n);
#endif
  if (e != cudaSuccess) {
    cudaGetLastError();  // the query's own error
    return false;
  }
  if (st != cudaStreamCaptureStatusActive || n == 0) return false;  // the graph's first node
  for (size_t i = 0; i < n; ++i) {
    cudaGraphNodeType type = cudaGraphNodeTypeEmpty;
    if (cudaGraphNodeGetType(deps[i], &type) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    if (type != cudaGraphNodeTypeKernel) return false;  // a memset / copy before this launch
  }
  return true;
#else
  return false;
#endif
}

void require_bf16(const WeightRef& w, const char* op) {
  if (w.data && w.dtype != DType::BF16)
    throw std::runtime_error(std::string(op) + ": CUDA expects a bf16 weight (from place_weight), got " +
                             dtype_name(w.dtype));
}

void require_f32(const WeightRef& w, const char* op) {
  if (w.data && w.dtype != DType::F32)
    throw std::runtime_error(std::string(op) + ": the float32 CUDA backend expects an f32 weight (from place_weight), got " +
                             dtype_name(w.dtype));
}

}  // namespace sgl
