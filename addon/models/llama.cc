// LlamaForCausalLM and Qwen2ForCausalLM: pre-norm decoder layers of RMSNorm, rotary GQA attention (q/k/v
// biases for Qwen2, attention_bias for Llama) and a SwiGLU MLP; tied or untied lm_head.
#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>

#include "models/device_buffer.h"
#include "models/model.h"

namespace sgl {
namespace {

struct LayerWeights {
  WeightRef input_norm, post_norm;     // [C]
  WeightRef q, k, v, o;                // [H*D, C], [Hkv*D, C], [Hkv*D, C], [C, H*D]
  WeightRef q_bias, k_bias, v_bias, o_bias;
  WeightRef gate, up, down;            // [I, C], [I, C], [C, I]
  WeightRef gate_bias, up_bias, down_bias;
};

class LlamaModel : public Model {
 public:
  LlamaModel(const ModelConfig& cfg, const Checkpoint& ck, const Backend& be)
      : Model(cfg), be_(be), x_(be), residual_(be), q_(be), k_(be), v_(be), attn_(be), gate_(be), up_(be),
        rows_(be), logits_(be), meta_(be), red_(be) {
    try {
      load(ck);
    } catch (...) {
      release();
      throw;
    }
  }

  ~LlamaModel() override { release(); }

  void forward(const ForwardBatch& b, KvCache& kv, const LogitsOut& out) override;

 private:
  // Finds a checkpoint tensor and places it on the backend (in place on the CPU; uploaded on CUDA).
  WeightRef place(const WeightRef& host, const std::vector<int64_t>& shape) {
    if (!host.data) return host;
    size_t count = 1;
    for (int64_t d : shape) count *= size_t(d);
    WeightRef w = be_.place_weight(host, count);
    placed_.push_back(w);
    placed_bytes_ += count * dtype_size(w.dtype);
    return w;
  }

  void release() {
    for (const WeightRef& w : placed_) be_.release_weight(w);
    placed_.clear();
    if (inv_freq_) be_.free(inv_freq_);
    inv_freq_ = nullptr;
  }

  void load(const Checkpoint& ck) {
    const ModelConfig& cfg = config_;
    const Backend& be = be_;
    auto W = [&](const std::string& name, const std::vector<int64_t>& shape) { return place(ck.weight(name, shape), shape); };
    const int64_t C = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
    const int64_t QD = int64_t(cfg.num_heads) * cfg.head_dim, KD = int64_t(cfg.num_kv_heads) * cfg.head_dim;
    embed_ = W("model.embed_tokens.weight", {V, C});
    final_norm_ = W("model.norm.weight", {C});
    lm_head_ = cfg.tie_word_embeddings && !ck.find("lm_head.weight") ? embed_ : W("lm_head.weight", {V, C});
    for (int l = 0; l < cfg.num_layers; l++) {
      std::string p = "model.layers." + std::to_string(l) + ".";
      LayerWeights w;
      w.input_norm = W(p + "input_layernorm.weight", {C});
      w.post_norm = W(p + "post_attention_layernorm.weight", {C});
      w.q = W(p + "self_attn.q_proj.weight", {QD, C});
      w.k = W(p + "self_attn.k_proj.weight", {KD, C});
      w.v = W(p + "self_attn.v_proj.weight", {KD, C});
      w.o = W(p + "self_attn.o_proj.weight", {C, QD});
      if (cfg.qkv_bias) {
        w.q_bias = W(p + "self_attn.q_proj.bias", {QD});
        w.k_bias = W(p + "self_attn.k_proj.bias", {KD});
        w.v_bias = W(p + "self_attn.v_proj.bias", {KD});
      }
      if (cfg.o_bias) w.o_bias = W(p + "self_attn.o_proj.bias", {C});
      w.gate = W(p + "mlp.gate_proj.weight", {I, C});
      w.up = W(p + "mlp.up_proj.weight", {I, C});
      w.down = W(p + "mlp.down_proj.weight", {C, I});
      if (cfg.mlp_bias) {
        w.gate_bias = W(p + "mlp.gate_proj.bias", {I});
        w.up_bias = W(p + "mlp.up_proj.bias", {I});
        w.down_bias = W(p + "mlp.down_proj.bias", {C});
      }
      layers_.push_back(w);
    }
    std::vector<float> inv = rope_inv_freq(cfg.rope, cfg.head_dim, cfg.dtype);
    inv_freq_ = static_cast<float*>(be.alloc(inv.size() * sizeof(float)));
    be.upload(inv_freq_, inv.data(), inv.size() * sizeof(float));
  }

  const Backend& be_;
  WeightRef embed_, final_norm_, lm_head_;
  std::vector<LayerWeights> layers_;
  std::vector<WeightRef> placed_;  // what place_weight allocated, released once each
  size_t placed_bytes_ = 0;
  float* inv_freq_ = nullptr;  // [D/2] on the device
  DeviceBuffer x_, residual_, q_, k_, v_, attn_, gate_, up_, rows_, logits_, meta_, red_;
};

void LlamaModel::forward(const ForwardBatch& b, KvCache& kv, const LogitsOut& out) {
  const ModelConfig& c = config_;
  forward_batch_validate(b, kv.num_pages(), kv.page_size(), c.vocab_size, c.max_position_embeddings);
  const int T = b.T, C = c.hidden_size, I = c.intermediate_size, H = c.num_heads, Hkv = c.num_kv_heads,
            D = c.head_dim, P = kv.page_size();
  const size_t es = dtype_size(be_.act_dtype);

  // Host-side step metadata: each token's position and KV slot, derived from the page tables.
  std::vector<int32_t> positions(T), slots(T);
  int32_t max_q_len = 0, max_kv_len = 0;
  for (int s = 0; s < b.B; s++) {
    int q0 = b.qo_indptr[s], q_len = b.qo_indptr[s + 1] - q0, start = b.kv_lens[s] - q_len;
    max_q_len = std::max(max_q_len, q_len);
    max_kv_len = std::max(max_kv_len, b.kv_lens[s]);
    const int32_t* pages = b.kv_page_indices + b.kv_indptr[s];
    for (int i = 0; i < q_len; i++) {
      int pos = start + i;
      positions[q0 + i] = pos;
      slots[q0 + i] = pages[pos / P] * P + pos % P;
    }
  }
  int n_pages = b.kv_indptr[b.B];
  // One metadata upload: ids | positions | slots | qo_indptr | kv_indptr | kv_lens | logit_rows | pages
  size_t meta_len = size_t(3 * T + 2 * (b.B + 1) + b.B + b.R + n_pages);
  std::vector<int32_t> host_meta;
  host_meta.reserve(meta_len);
  auto append = [&](const int32_t* p, int n) { host_meta.insert(host_meta.end(), p, p + n); };
  append(b.token_ids, T);
  append(positions.data(), T);
  append(slots.data(), T);
  append(b.qo_indptr, b.B + 1);
  append(b.kv_indptr, b.B + 1);
  append(b.kv_lens, b.B);
  append(b.logit_rows, b.R);
  append(b.kv_page_indices, n_pages);
  int32_t* meta = meta_.as<int32_t>(meta_len);
  be_.upload(meta, host_meta.data(), meta_len * sizeof(int32_t));
  const int32_t *d_ids = meta, *d_pos = d_ids + T, *d_slots = d_pos + T, *d_qo = d_slots + T,
                *d_kvp = d_qo + b.B + 1, *d_kvlen = d_kvp + b.B + 1, *d_rows = d_kvlen + b.B,
                *d_pages = d_rows + b.R;

  void* x = x_.ensure(size_t(T) * C * es);
  void* res = residual_.ensure(size_t(T) * C * es);
  void* q = q_.ensure(size_t(T) * H * D * es);
  void* k = k_.ensure(size_t(T) * Hkv * D * es);
  void* v = v_.ensure(size_t(T) * Hkv * D * es);
  void* attn = attn_.ensure(size_t(T) * H * D * es);
  void* gate = gate_.ensure(size_t(T) * I * es);
  void* up = up_.ensure(size_t(T) * I * es);

  be_.embed({d_ids, embed_, x, T, C});
  be_.memset_zero(res, size_t(T) * C * es);
  const float scale = 1.0f / std::sqrt(float(D));
  for (int l = 0; l < c.num_layers; l++) {
    const LayerWeights& w = layers_[l];
    // x holds the previous sub-layer's output: fold it into the residual stream and normalise.
    be_.rms_norm({x, res, x, w.input_norm, T, C, float(c.rms_norm_eps)});
    be_.matmul({x, w.q, w.q_bias, q, T, C, H * D});
    be_.matmul({x, w.k, w.k_bias, k, T, C, Hkv * D});
    be_.matmul({x, w.v, w.v_bias, v, T, C, Hkv * D});
    be_.rope({q, k, d_pos, inv_freq_, T, H, Hkv, D});
    be_.kv_store({k, v, kv.k(l), kv.v(l), d_slots, T, Hkv, D});
    AttentionParams ap{q, kv.k(l), kv.v(l), attn, d_qo, d_kvp, d_pages, d_kvlen, b.B, T, H, Hkv, D, P, scale, true};
    ap.max_q_len = max_q_len;
    ap.max_kv_len = max_kv_len;
    be_.attention(ap);
    be_.matmul({attn, w.o, w.o_bias, x, T, H * D, C});
    be_.rms_norm({x, res, x, w.post_norm, T, C, float(c.rms_norm_eps)});
    be_.matmul({x, w.gate, w.gate_bias, gate, T, C, I});
    be_.matmul({x, w.up, w.up_bias, up, T, C, I});
    be_.silu_mul({gate, up, gate, T, I});
    be_.matmul({gate, w.down, w.down_bias, x, T, I, C});
  }
  be_.rms_norm({x, res, x, final_norm_, T, C, float(c.rms_norm_eps)});
  if (b.R == 0) return;
  void* rows = rows_.ensure(size_t(b.R) * C * es);
  be_.gather_rows({x, d_rows, rows, b.R, C});
  // The logits come out of the lm_head matmul in f32 on every backend (bf16 logits would cost ~1e-2 in
  // logprobs), then one download.
  float* lg = logits_.as<float>(size_t(b.R) * c.vocab_size);
  MatmulParams mp{rows, lm_head_, WeightRef{}, lg, b.R, C, c.vocab_size};
  mp.y_f32 = true;
  be_.matmul(mp);
  const size_t V = size_t(c.vocab_size);
  if (!out.argmax_only) {
    be_.download(out.logits, lg, size_t(b.R) * V * sizeof(float));
    return;
  }
  // Greedy rows: reduced where the logits are; only (token, logprob) comes back. Full rows: one download
  // per run of consecutive full rows.
  int32_t* tok = red_.as<int32_t>(size_t(2) * b.R);
  float* lp = reinterpret_cast<float*>(tok + b.R);
  be_.logits_argmax({lg, tok, lp, b.R, c.vocab_size});
  std::vector<int32_t> host(size_t(2) * b.R);
  be_.download(host.data(), tok, host.size() * sizeof(int32_t));
  std::memcpy(out.token, host.data(), size_t(b.R) * sizeof(int32_t));
  std::memcpy(out.logprob, host.data() + b.R, size_t(b.R) * sizeof(float));
  for (int32_t r = 0; r < b.R;) {
    if (out.argmax_only[r]) {
      ++r;
      continue;
    }
    int32_t e = r;
    while (e < b.R && !out.argmax_only[e]) ++e;
    be_.download(out.logits + size_t(r) * V, lg + size_t(r) * V, size_t(e - r) * V * sizeof(float));
    r = e;
  }
}

}  // namespace

std::unique_ptr<Model> model_create(const ModelConfig& config, const Checkpoint& ckpt, const Backend& backend) {
  if (config.architecture == "LlamaForCausalLM" || config.architecture == "Qwen2ForCausalLM")
    return std::make_unique<LlamaModel>(config, ckpt, backend);
  throw std::runtime_error("unknown architecture \"" + config.architecture + "\"");
}

}  // namespace sgl
