// cuda_backend() where the addon is built without CUDA (the real one is cuda/cuda_backend.cu).
#include "backend/backend.h"

#if !defined(SGL_WITH_CUDA)
namespace sgl {
const Backend* cuda_backend() { return nullptr; }
}  // namespace sgl
#endif
