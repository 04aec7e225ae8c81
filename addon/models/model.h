// A loaded model: weights placed on a backend and a forward over a ForwardBatch. Written once against the
// Backend table; addon/models/*.cc hold the architectures.
#pragma once
#include <memory>
#include <string>

#include "backend/backend.h"
#include "kv/kv_cache.h"
#include "model/model_config.h"
#include "model/safetensors.h"
#include "models/forward_batch.h"

namespace sgl {

class Model {
 public:
  virtual ~Model() = default;
  const ModelConfig& config() const { return config_; }
  // Runs one step: stores this step's K/V into `kv` and writes the next-token logits of the batch's
  // logit rows to `logits` (host memory, [R, V] float32).
  virtual void forward(const ForwardBatch& batch, KvCache& kv, float* logits) = 0;

 protected:
  explicit Model(ModelConfig config) : config_(std::move(config)) {}
  ModelConfig config_;
};

// Picks the implementation from config.architecture. The checkpoint must outlive the model (weights may
// point into its memory map on the CPU backend).
std::unique_ptr<Model> model_create(const ModelConfig& config, const Checkpoint& ckpt, const Backend& backend);

}  // namespace sgl
