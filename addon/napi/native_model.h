#pragma once
#include <napi.h>

namespace sgl {
// JS class NativeModel: a model and its KV cache on the CPU backend, with a synchronous forward.
// new NativeModel({modelPath, numPages, pageSize}); .info(); .forward(batch) -> Float32Array; .close()
Napi::Function native_model_class(Napi::Env env);
}  // namespace sgl
