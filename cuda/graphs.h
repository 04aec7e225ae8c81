// The Backend table's CUDA-graph hooks (cuda/graphs.cu).
#pragma once

namespace sgl {
void graph_begin_cuda();
void* graph_end_cuda();
void graph_launch_cuda(void* exec);
void graph_free_cuda(void* exec);
}  // namespace sgl
