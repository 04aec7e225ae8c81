// cuda_backend() and cuda_backend_f32() where the addon is built without CUDA (the real ones are in
// cuda/cuda_backend.cu).
#include "backend/backend.h"

#if !defined(SGL_WITH_CUDA)
namespace sgl {
const Backend* cuda_backend() { return nullptr; }
const Backend* cuda_backend_f32() { return nullptr; }
}  // namespace sgl
#endif
