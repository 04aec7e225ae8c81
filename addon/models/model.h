// A loaded model: weights placed on a backend and a forward over a ForwardBatch. Written once against the
// Backend table; addon/models/*.cc hold the architectures.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "kv/kv_cache.h"
#include "model/model_config.h"
#include "model/safetensors.h"
#include "models/forward_batch.h"

namespace sgl {

// Values of LogitsOut::argmax_only[r].
constexpr uint8_t kRowFull = 0;          // the [V] logits row is written to logits[r * V ..]
constexpr uint8_t kRowArgmax = 1;        // reduced by Backend::logits_argmax to (token[r], logprob[r])
constexpr uint8_t kRowDeviceSample = 2;  // finished by Backend::sample_rows as LogitsOut::sample describes

// Where a step's logits go (host memory). Rows with argmax_only[r] == kRowArgmax are reduced on the backend
// to (token[r], logprob[r]) (Backend::logits_argmax) and their logits are NOT written; rows marked
// kRowDeviceSample are sampled by Backend::sample_rows (not written either); the others are written to
// logits[r * V ..] in full. argmax_only null: every row in full.
// inv_temp / u (host, [R], or null = all greedy) make reduced rows with inv_temp[r] > 0 sampled instead
// (ArgmaxParams in backend.h).
// sample: the kRowDeviceSample rows (only where Model::can_sample_rows()), as a SampleRowsParams whose
// pointers are all HOST memory: rows[] are logits row indices in [0, R) (ascending), `logits` is unused, and
// the output arrays are filled by forward(). The model uploads the inputs in one buffer, runs sample_rows on
// its logits after the lm_head and downloads only the outputs.
struct LogitsOut {
  float* logits = nullptr;                // [R, V]
  const uint8_t* argmax_only = nullptr;   // [R] or null
  int32_t* token = nullptr;               // [R] (read where argmax_only[r] == kRowArgmax)
  float* logprob = nullptr;               // [R]
  const float* inv_temp = nullptr;        // [R] or null
  const double* u = nullptr;              // [R] or null
  const SampleRowsParams* sample = nullptr;  // host description of the kRowDeviceSample rows, or null
};

// One forward pass's expert routing, as a MoE model recorded it (Model::take_expert_pass).
struct ExpertPass {
  int32_t T = 0;                // tokens of the pass
  std::vector<int32_t> counts;  // [L * E] tokens routed to each (layer, expert) in this pass (dense layers: 0)
  std::vector<int32_t> topk;    // [L * T * K] the chosen experts, best first (-1 on dense layers); only at level 2
};

class Model {
 public:
  virtual ~Model() = default;
  const ModelConfig& config() const { return config_; }
  // Runs one step: stores this step's K/V into `kv` and delivers the next-token logits of the batch's
  // logit rows as `out` asks.
  virtual void forward(const ForwardBatch& batch, KvCache& kv, const LogitsOut& out) = 0;
  // forward() in two halves, so that the host can prepare the next step while this one runs on a device:
  // forward_launch enqueues the step (the batch's arrays may be reused once it returns; full logits rows
  // are already in out.logits when it returns), forward_wait blocks until the step is done and fills the
  // rest of `out` (reduced and device-sampled rows), whose arrays must stay valid until then. One step in
  // flight at a time. The defaults run forward() synchronously in the launch.
  virtual void forward_launch(const ForwardBatch& batch, KvCache& kv, const LogitsOut& out) { forward(batch, kv, out); }
  virtual void forward_wait() {}
  // True when forward() honours LogitsOut::sample (kRowDeviceSample rows): a backend with sample_rows.
  virtual bool can_sample_rows() const { return false; }
  // Expert routing record (MoE models; no-ops elsewhere): level 0 off, 1 the device-side [L, E] counter,
  // 2 the counter and each token's chosen experts. Applies from the next forward_launch. After forward_wait,
  // take_expert_pass gives that step's record, or false when it was launched at level 0.
  virtual void set_expert_recording(int32_t level) { (void)level; }
  virtual bool take_expert_pass(ExpertPass& out) { (void)out; return false; }

 protected:
  explicit Model(ModelConfig config) : config_(std::move(config)) {}
  ModelConfig config_;
};

// How a model runs its steps: CUDA graphs (on a backend with Backend::graph_launch) and embedding mode.
struct ModelRunOptions {
  int graph_max_bs = 256;       // --cuda-graph-max-bs: decode batches up to this size replay graphs
  bool disable_graphs = false;  // --disable-cuda-graph
  // --is-embedding on a causal LM (LlamaForCausalLM / Qwen2ForCausalLM): logits rows are the final-norm hidden
  // states in f32 [hidden_size] (the model's config().is_embedding is set, logits_width() says hidden_size);
  // no lm_head is loaded. Ignored by sequence classifiers (their rows are the classifier's outputs).
  bool is_embedding = false;
  // A prefill's last layer on the rows whose logits are wanted (llama.cc, prune_last_layer); false: every layer
  // on every token (tests compare the two).
  bool prune_last_layer = true;
};

// Picks the implementation from config.architecture. The checkpoint must outlive the model (weights may
// point into its memory map on the CPU backend).
std::unique_ptr<Model> model_create(const ModelConfig& config, const Checkpoint& ckpt, const Backend& backend,
                                    const ModelRunOptions& opts = {});

}  // namespace sgl
