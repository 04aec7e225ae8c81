#include "napi/model_info.h"

namespace sgl {

Napi::Object model_info_object(Napi::Env env, const ModelConfig& c, const Checkpoint& ckpt, const KvCache& kv,
                               const Backend& backend) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("architecture", c.architecture);
  Napi::Array archs = Napi::Array::New(env, c.architectures.size());
  for (size_t i = 0; i < c.architectures.size(); i++) archs.Set(uint32_t(i), c.architectures[i]);
  o.Set("architectures", archs);
  o.Set("modelType", c.model_type);
  o.Set("dtype", c.dtype);
  o.Set("hiddenSize", c.hidden_size);
  o.Set("intermediateSize", c.intermediate_size);
  o.Set("numLayers", c.num_layers);
  o.Set("numHeads", c.num_heads);
  o.Set("numKvHeads", c.num_kv_heads);
  o.Set("headDim", c.head_dim);
  o.Set("vocabSize", c.vocab_size);
  o.Set("numLabels", c.num_labels);  // sequence classifiers: the width of a logits row (0 = vocabSize)
  // Pooled models (SGLang's is_generation false): embedding mode, reward classifiers, cross-encoders.
  o.Set("isGeneration", !c.is_pooled());
  o.Set("poolingKind", c.is_embedding && c.num_labels == 0 ? "embedding"
                       : c.num_labels == 0                 ? "none"
                       : c.is_encoder                      ? "rerank"
                                                           : "classify");
  o.Set("embeddingDim", c.is_pooled() ? c.logits_width() : 0);  // width of a pooled row
  o.Set("contextLength", c.max_position_embeddings);
  o.Set("numExperts", c.num_experts);  // 0 for dense models
  o.Set("numExpertsPerTok", c.num_experts_per_tok);
  Napi::Array moe_layers = Napi::Array::New(env);
  for (int l = 0, n = 0; l < c.num_layers; ++l)
    if (c.is_moe_layer(l)) moe_layers.Set(uint32_t(n++), Napi::Number::New(env, l));
  o.Set("moeLayerIds", moe_layers);
  o.Set("bosTokenId", double(c.bos_token_id));
  o.Set("padTokenId", double(c.pad_token_id));
  Napi::Array eos = Napi::Array::New(env, c.eos_token_ids.size());
  for (size_t i = 0; i < c.eos_token_ids.size(); i++) eos.Set(uint32_t(i), double(c.eos_token_ids[i]));
  o.Set("eosTokenIds", eos);
  o.Set("ropeType", c.rope.type);
  o.Set("ropeTheta", c.rope.theta);
  o.Set("tieWordEmbeddings", c.tie_word_embeddings);
  o.Set("configJson", c.raw.dump());
  o.Set("generationConfigJson", c.generation.is_null() ? env.Null() : Napi::String::New(env, c.generation.dump()));
  o.Set("weightBytes", double(ckpt.total_bytes()));
  o.Set("kvBytes", double(kv.bytes()));
  o.Set("numPages", kv.num_pages());
  o.Set("pageSize", kv.page_size());
  o.Set("backend", backend.name);
  const DType act = backend.act_dtype;
  o.Set("activationDtype", act == DType::BF16 ? "bfloat16" : act == DType::F16 ? "float16" : "float32");
  return o;
}

}  // namespace sgl
