// config.json + generation_config.json of a Hugging Face model directory, normalised. Reads both key
// styles: transformers 4 (rope_theta, rope_scaling, torch_dtype) and transformers 5 (rope_parameters, dtype).
#pragma once
#include <string>
#include <vector>

#include "util/json.h"

namespace sgl {

struct RopeConfig {
  std::string type = "default";  // default | linear | llama3
  double theta = 10000.0;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string dir;
  std::string architecture;  // architectures[0]
  std::vector<std::string> architectures;
  std::string model_type;
  std::string dtype;  // torch_dtype / dtype as written ("bfloat16", "float32", ...), "" if absent
  int hidden_size = 0, intermediate_size = 0, num_layers = 0;
  int num_heads = 0, num_kv_heads = 0, head_dim = 0, vocab_size = 0;
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double layer_norm_eps = 1e-12;  // encoder models (XLM-RoBERTa): layer_norm_eps
  int num_labels = 0;             // *ForSequenceClassification: the classifier's outputs (id2label size)
  int type_vocab_size = 0;        // encoder models: token type embeddings
  bool is_encoder = false;        // bidirectional encoder (XLM-RoBERTa); no KV kept between steps
  // Not from config.json: a causal LM served with --is-embedding (ModelRunOptions::is_embedding), whose rows
  // are the final-norm hidden states [hidden_size] instead of next-token logits. Never set with num_labels.
  bool is_embedding = false;
  // Width of a logits row the model delivers: the classifier's labels for sequence classifiers, the hidden
  // size in embedding mode, else vocab.
  int logits_width() const { return num_labels > 0 ? num_labels : is_embedding ? hidden_size : vocab_size; }
  // Pooled (non-generative) models: every request is prefill-only and returns one row (SGLang's
  // is_generation = false): embedding mode and sequence classifiers.
  bool is_pooled() const { return num_labels > 0 || is_embedding; }
  bool tie_word_embeddings = false;
  // Qwen2MoeForCausalLM: a layer l is sparse when num_experts > 0, l is not in mlp_only_layers and
  // (l + 1) % decoder_sparse_step == 0 (as transformers decides); other layers keep the dense MLP.
  int num_experts = 0;                      // E (0: a dense model)
  int num_experts_per_tok = 0;              // K
  int moe_intermediate_size = 0;            // each expert's SwiGLU width
  int shared_expert_intermediate_size = 0;  // 0: no shared expert
  bool norm_topk_prob = false;              // renormalise the top-K weights to sum 1
  int decoder_sparse_step = 1;
  std::vector<int> mlp_only_layers;
  bool is_moe_layer(int l) const {
    if (num_experts <= 0) return false;
    for (int m : mlp_only_layers)
      if (m == l) return false;
    return decoder_sparse_step > 0 && (l + 1) % decoder_sparse_step == 0;
  }
  bool qkv_bias = false;  // Qwen2 always; Llama when attention_bias
  bool o_bias = false;    // Llama attention_bias
  bool mlp_bias = false;
  std::string hidden_act = "silu";
  RopeConfig rope;
  int64_t bos_token_id = -1;
  int64_t pad_token_id = -1;
  std::vector<int64_t> eos_token_ids;  // union of config.json and generation_config.json
  Json raw;             // config.json as read
  Json generation;      // generation_config.json, or null
};

// Throws with the file name: missing config.json, bad JSON, unknown architecture, missing/invalid keys.
ModelConfig model_config_load(const std::string& dir);

// Rotary inverse frequencies [head_dim / 2] with the config's scaling applied, as transformers computes them,
// then rounded to the checkpoint dtype ("bfloat16"/"float16"; unchanged for "float32" or ""): transformers
// keeps inv_freq as a floating buffer, so a model held in bf16 rotates with bf16-rounded frequencies (the
// fixtures' goldens were computed that way; the difference reaches 1e-3 in logprobs within a few tokens).
std::vector<float> rope_inv_freq(const RopeConfig& rope, int head_dim, const std::string& checkpoint_dtype);

bool model_architecture_supported(const std::string& arch);

}  // namespace sgl
