#include "model/model_config.h"

#include <cmath>
#include <stdexcept>

#include "util/fs.h"
#include "cpu/convert.h"  // scalar bf16/f16 conversions

namespace sgl {

static const char* kSupported[] = {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen2MoeForCausalLM", "LlamaForSequenceClassification",
                                   "XLMRobertaForSequenceClassification"};

bool model_architecture_supported(const std::string& arch) {
  for (const char* a : kSupported)
    if (arch == a) return true;
  return false;
}

static Json load_json(const std::string& path) {
  try {
    return Json::parse(read_file(path));
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

static int require_int(const Json& cfg, const std::string& key, const std::string& path) {
  const Json& v = cfg[key];
  if (!v.is_number()) throw std::runtime_error(path + ": missing or non-numeric \"" + key + "\"");
  int64_t x = v.integer();
  if (x <= 0) throw std::runtime_error(path + ": \"" + key + "\" must be positive, got " + std::to_string(x));
  return int(x);
}

static void add_ids(std::vector<int64_t>& out, const Json& v) {
  auto add = [&](int64_t id) {
    for (int64_t e : out)
      if (e == id) return;
    out.push_back(id);
  };
  if (v.is_number()) add(v.integer());
  if (v.is_array())
    for (const Json& e : v.array())
      if (e.is_number()) add(e.integer());
}

static RopeConfig read_rope(const Json& cfg, const std::string& path) {
  RopeConfig r;
  // transformers 5: rope_parameters holds theta and the scaling; transformers 4: rope_theta + rope_scaling.
  const Json& params = cfg["rope_parameters"];
  const Json& scaling = params.is_object() ? params : cfg["rope_scaling"];
  r.theta = cfg.num_or("rope_theta", 10000.0);
  if (params.is_object()) r.theta = params.num_or("rope_theta", r.theta);
  if (scaling.is_object()) {
    r.type = scaling.str_or("rope_type", scaling.str_or("type", "default"));
    r.factor = scaling.num_or("factor", 1.0);
    r.low_freq_factor = scaling.num_or("low_freq_factor", 1.0);
    r.high_freq_factor = scaling.num_or("high_freq_factor", 4.0);
    r.original_max_position_embeddings = scaling.int_or("original_max_position_embeddings", 8192);
  }
  if (r.type != "default" && r.type != "linear" && r.type != "llama3")
    throw std::runtime_error(path + ": unsupported rope type \"" + r.type + "\" (supported: default, linear, llama3)");
  return r;
}

ModelConfig model_config_load(const std::string& dir) {
  if (!is_directory(dir)) throw std::runtime_error("model directory not found: " + dir);
  std::string path = path_join(dir, "config.json");
  if (!file_exists(path)) throw std::runtime_error("missing config.json in " + dir);
  ModelConfig c;
  c.dir = dir;
  c.raw = load_json(path);
  const Json& cfg = c.raw;
  if (!cfg.is_object()) throw std::runtime_error(path + ": not a JSON object");
  if (!cfg["architectures"].is_array() || cfg["architectures"].size() == 0)
    throw std::runtime_error(path + ": missing \"architectures\"");
  for (const Json& a : cfg["architectures"].array()) c.architectures.push_back(a.str());
  c.architecture = c.architectures[0];
  if (!model_architecture_supported(c.architecture)) {
    std::string list;
    for (const char* a : kSupported) list += (list.empty() ? "" : ", ") + std::string(a);
    throw std::runtime_error(path + ": unknown architecture \"" + c.architecture + "\" (supported: " + list + ")");
  }
  c.model_type = cfg.str_or("model_type", "");
  c.dtype = cfg.str_or("torch_dtype", cfg.str_or("dtype", ""));
  c.hidden_size = require_int(cfg, "hidden_size", path);
  c.intermediate_size = require_int(cfg, "intermediate_size", path);
  c.num_layers = require_int(cfg, "num_hidden_layers", path);
  c.num_heads = require_int(cfg, "num_attention_heads", path);
  c.num_kv_heads = cfg["num_key_value_heads"].is_number() ? require_int(cfg, "num_key_value_heads", path) : c.num_heads;
  c.head_dim = cfg["head_dim"].is_number() ? require_int(cfg, "head_dim", path) : c.hidden_size / c.num_heads;
  c.vocab_size = require_int(cfg, "vocab_size", path);
  c.max_position_embeddings = int(cfg.int_or("max_position_embeddings", 2048));
  c.rms_norm_eps = cfg.num_or("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = cfg.bool_or("tie_word_embeddings", false);
  c.hidden_act = cfg.str_or("hidden_act", "silu");
  if (c.num_heads % c.num_kv_heads != 0)
    throw std::runtime_error(path + ": num_attention_heads " + std::to_string(c.num_heads) +
                             " is not a multiple of num_key_value_heads " + std::to_string(c.num_kv_heads));
  if (c.head_dim % 2 != 0) throw std::runtime_error(path + ": head_dim must be even for rotary embeddings");
  c.is_encoder = c.architecture == "XLMRobertaForSequenceClassification";
  if (c.is_encoder) {
    // transformers' XLMRobertaConfig: gelu by default, LayerNorm eps 1e-12, one token type, labels from
    // id2label (num_labels when written), 2 by default.
    c.hidden_act = cfg.str_or("hidden_act", "gelu");
    c.layer_norm_eps = cfg.num_or("layer_norm_eps", 1e-12);
    c.type_vocab_size = int(cfg.int_or("type_vocab_size", 2));
    c.num_labels = cfg["id2label"].is_object() ? int(cfg["id2label"].size()) : int(cfg.int_or("num_labels", 2));
    if (c.num_labels <= 0) throw std::runtime_error(path + ": \"id2label\" is empty");
    if (c.hidden_act != "gelu" && c.hidden_act != "gelu_new" && c.hidden_act != "gelu_pytorch_tanh")
      throw std::runtime_error(path + ": unsupported hidden_act \"" + c.hidden_act + "\" (supported: gelu, gelu_new, gelu_pytorch_tanh)");
    if (c.type_vocab_size <= 0) throw std::runtime_error(path + ": \"type_vocab_size\" must be positive");
  } else if (c.architecture == "LlamaForSequenceClassification") {
    c.num_labels = cfg["id2label"].is_object() ? int(cfg["id2label"].size()) : int(cfg.int_or("num_labels", 2));
    if (c.num_labels <= 0) throw std::runtime_error(path + ": \"id2label\" is empty");
  }
  if (!c.is_encoder && c.hidden_act != "silu") {
    throw std::runtime_error(path + ": unsupported hidden_act \"" + c.hidden_act + "\"");
  }
  if (c.architecture == "Qwen2ForCausalLM" || c.architecture == "Qwen2MoeForCausalLM") {
    c.qkv_bias = c.architecture == "Qwen2ForCausalLM" || cfg.bool_or("qkv_bias", true);  // Qwen2: always
  } else {
    c.qkv_bias = c.o_bias = cfg.bool_or("attention_bias", false);
    c.mlp_bias = cfg.bool_or("mlp_bias", false);
  }
  if (c.architecture == "Qwen2MoeForCausalLM") {
    c.num_experts = require_int(cfg, "num_experts", path);
    c.num_experts_per_tok = require_int(cfg, "num_experts_per_tok", path);
    c.moe_intermediate_size = require_int(cfg, "moe_intermediate_size", path);
    c.shared_expert_intermediate_size = int(cfg.int_or("shared_expert_intermediate_size", 0));
    c.norm_topk_prob = cfg.bool_or("norm_topk_prob", false);
    c.decoder_sparse_step = int(cfg.int_or("decoder_sparse_step", 1));
    if (cfg["mlp_only_layers"].is_array())
      for (const Json& v : cfg["mlp_only_layers"].array()) c.mlp_only_layers.push_back(int(v.integer()));
    if (c.num_experts_per_tok > c.num_experts)
      throw std::runtime_error(path + ": num_experts_per_tok " + std::to_string(c.num_experts_per_tok) +
                               " exceeds num_experts " + std::to_string(c.num_experts));
    if (c.num_experts > 1024 || c.num_experts_per_tok > 32)
      throw std::runtime_error(path + ": at most 1024 experts and 32 per token are supported");
    if (c.decoder_sparse_step < 1) throw std::runtime_error(path + ": \"decoder_sparse_step\" must be positive");
  }
  c.rope = read_rope(cfg, path);
  c.bos_token_id = cfg.int_or("bos_token_id", -1);
  c.pad_token_id = cfg.int_or("pad_token_id", -1);

  std::string gen_path = path_join(dir, "generation_config.json");
  if (file_exists(gen_path)) {
    c.generation = load_json(gen_path);
    add_ids(c.eos_token_ids, c.generation["eos_token_id"]);
  }
  add_ids(c.eos_token_ids, cfg["eos_token_id"]);
  return c;
}

std::vector<float> rope_inv_freq(const RopeConfig& rope, int head_dim, const std::string& checkpoint_dtype) {
  int half = head_dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; i++) {
    // transformers: 1 / base^(2i / dim) in float32
    float expo = float(2 * i) / float(head_dim);
    inv[i] = 1.0f / std::pow(float(rope.theta), expo);
  }
  if (rope.type == "linear") {
    for (float& f : inv) f = float(f / rope.factor);
  } else if (rope.type == "llama3") {
    const double pi = 3.14159265358979323846;
    double old_len = double(rope.original_max_position_embeddings);
    double low_wavelen = old_len / rope.low_freq_factor;
    double high_wavelen = old_len / rope.high_freq_factor;
    for (float& f : inv) {
      double wavelen = 2 * pi / f;
      if (wavelen > low_wavelen) {
        f = float(f / rope.factor);  // low frequencies: fully scaled
      } else if (wavelen >= high_wavelen) {
        double smooth = (old_len / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
        f = float((1 - smooth) * f / rope.factor + smooth * f);
      }  // high frequencies: unchanged
    }
  }
  if (checkpoint_dtype == "bfloat16" || checkpoint_dtype == "bf16")
    for (float& f : inv) f = bf16_to_f32(f32_to_bf16(f));
  else if (checkpoint_dtype == "float16" || checkpoint_dtype == "fp16")
    for (float& f : inv) f = f16_to_f32(f32_to_f16(f));
  return inv;
}

}  // namespace sgl
