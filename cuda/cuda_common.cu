#include "cuda_common.cuh"

#include <algorithm>
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
