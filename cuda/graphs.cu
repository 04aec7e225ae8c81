// Backend graph hooks on CUDA: stream capture of sgl_stream() into an executable graph (decode steps).
// Capture mode is thread-local: the engine thread captures while other threads (the JS thread uploading a
// new checkpoint, say) may still call CUDA. Kernels launched with PDL (sgl_launch, cuda_common.cuh) after
// another kernel become programmatic edges of the captured graph (CUDA 12.3+); after a memset / copy node
// or as the graph's first node they are captured as plain launches.
#include "cuda_common.cuh"
#include "graphs.h"

namespace sgl {

void graph_begin_cuda() { SGL_CUDA_CHECK(cudaStreamBeginCapture(sgl_stream(), cudaStreamCaptureModeThreadLocal)); }

void* graph_end_cuda() {
  cudaGraph_t g = nullptr;
  SGL_CUDA_CHECK(cudaStreamEndCapture(sgl_stream(), &g));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
  cudaGraphDestroy(g);
  SGL_CUDA_CHECK(e);
  return exec;
}

void graph_launch_cuda(void* exec) { SGL_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), sgl_stream())); }

void graph_free_cuda(void* exec) {
  if (exec) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec));
}

}  // namespace sgl
