// The JS info object of a loaded model (ModelInfo in src/native/addon.ts), shared by NativeModel and NativeEngine.
#pragma once
#include <napi.h>

#include "backend/backend.h"
#include "kv/kv_cache.h"
#include "model/model_config.h"
#include "model/safetensors.h"

namespace sgl {
// backend: its name ("cpu", "cuda") and activation dtype ("activationDtype": "float32" / "bfloat16", the dtype
// the model computes and keeps its KV cache in; "dtype" stays the checkpoint's).
Napi::Object model_info_object(Napi::Env env, const ModelConfig& config, const Checkpoint& ckpt, const KvCache& kv,
                               const Backend& backend);
}  // namespace sgl
