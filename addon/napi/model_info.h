// The JS info object of a loaded model (ModelInfo in src/native/addon.ts), shared by NativeModel and NativeEngine.
#pragma once
#include <napi.h>

#include "kv/kv_cache.h"
#include "model/model_config.h"
#include "model/safetensors.h"

namespace sgl {
Napi::Object model_info_object(Napi::Env env, const ModelConfig& config, const Checkpoint& ckpt, const KvCache& kv,
                               const char* backend_name);
}  // namespace sgl
