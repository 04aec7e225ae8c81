// XLMRobertaForSequenceClassification (bge-reranker style cross-encoders): a bidirectional post-norm encoder
// (word + learned absolute position + token type embeddings, LayerNorm; layers of attention -> add & LayerNorm
// -> GELU MLP -> add & LayerNorm) and the classifier head on the first token (<s>): dense, tanh, out_proj.
//
// Every sequence of a step is encoded whole (q_len == kv_len): its K/V go through the paged cache only so that
// the paged attention kernels serve it (non-causal); nothing is reused by a later step. Logits rows are the
// classifier's outputs [num_labels] at the requested token rows (the callers ask for each sequence's first).
// The head's dense layer (C x C per sequence) runs on the device backends as one matmul of the gathered rows
// (f32 out), then its bias, tanh and out_proj (labels x C) on the host in double; on the CPU the whole head
// runs on the host in double from the checkpoint's weights.
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/convert.h"
#include "models/device_buffer.h"
#include "models/model.h"

namespace sgl {
namespace {

struct EncoderLayer {
  WeightRef q, k, v, q_bias, k_bias, v_bias;  // [C, C], [C]
  WeightRef o, o_bias;                        // attention.output.dense
  WeightRef attn_ln_w, attn_ln_b;             // attention.output.LayerNorm
  WeightRef inter, inter_bias;                // intermediate.dense [I, C]
  WeightRef out, out_bias;                    // output.dense [C, I]
  WeightRef out_ln_w, out_ln_b;               // output.LayerNorm
};

std::vector<float> host_floats(const WeightRef& w, size_t n) {
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    if (w.dtype == DType::F32) out[i] = static_cast<const float*>(w.data)[i];
    else if (w.dtype == DType::BF16) out[i] = bf16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    else out[i] = f16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
  }
  return out;
}

class XlmRobertaModel : public Model {
 public:
  XlmRobertaModel(const ModelConfig& cfg, const Checkpoint& ck, const Backend& be)
      : Model(cfg), be_(be), x_(be), t_(be), q_(be), k_(be), v_(be), attn_(be), h_(be), rows_(be), meta_(be), dense_(be) {
    try {
      load(ck);
    } catch (...) {
      release();
      throw;
    }
  }
  ~XlmRobertaModel() override { release(); }

  void forward(const ForwardBatch& b, KvCache& kv, const LogitsOut& out) override;

 private:
  WeightRef place(const WeightRef& host, size_t count) {
    WeightRef w = be_.place_weight(host, count);
    placed_.push_back(w);
    return w;
  }
  void release() {
    for (const WeightRef& w : placed_) be_.release_weight(w);
    placed_.clear();
  }

  void load(const Checkpoint& ck) {
    const ModelConfig& c = config_;
    const int64_t C = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, NP = c.max_position_embeddings;
    auto W = [&](const std::string& name, std::vector<int64_t> shape) {
      size_t n = 1;
      for (int64_t d : shape) n *= size_t(d);
      return place(ck.weight(name, shape), n);
    };
    const std::string e = "roberta.embeddings.";
    word_ = W(e + "word_embeddings.weight", {V, C});
    // Position and token-type embeddings summed once on the host (f32): every token has type 0, as in the
    // cross-encoder's inputs (XLM-R tokenizers return token_type_ids of zeros).
    const WeightRef pos = ck.weight(e + "position_embeddings.weight", {NP, C});
    const WeightRef typ = ck.weight(e + "token_type_embeddings.weight", {int64_t(c.type_vocab_size), C});
    pos_type_ = host_floats(pos, size_t(NP * C));
    const std::vector<float> t0 = host_floats(typ, size_t(C));
    for (int64_t p = 0; p < NP; ++p)
      for (int64_t i = 0; i < C; ++i) pos_type_[size_t(p * C + i)] += t0[size_t(i)];
    pos_type_w_ = place(WeightRef{pos_type_.data(), DType::F32}, pos_type_.size());
    emb_ln_w_ = W(e + "LayerNorm.weight", {C});
    emb_ln_b_ = W(e + "LayerNorm.bias", {C});
    for (int l = 0; l < c.num_layers; ++l) {
      const std::string p = "roberta.encoder.layer." + std::to_string(l) + ".";
      EncoderLayer w;
      w.q = W(p + "attention.self.query.weight", {C, C});
      w.q_bias = W(p + "attention.self.query.bias", {C});
      w.k = W(p + "attention.self.key.weight", {C, C});
      w.k_bias = W(p + "attention.self.key.bias", {C});
      w.v = W(p + "attention.self.value.weight", {C, C});
      w.v_bias = W(p + "attention.self.value.bias", {C});
      w.o = W(p + "attention.output.dense.weight", {C, C});
      w.o_bias = W(p + "attention.output.dense.bias", {C});
      w.attn_ln_w = W(p + "attention.output.LayerNorm.weight", {C});
      w.attn_ln_b = W(p + "attention.output.LayerNorm.bias", {C});
      w.inter = W(p + "intermediate.dense.weight", {I, C});
      w.inter_bias = W(p + "intermediate.dense.bias", {I});
      w.out = W(p + "output.dense.weight", {C, I});
      w.out_bias = W(p + "output.dense.bias", {C});
      w.out_ln_w = W(p + "output.LayerNorm.weight", {C});
      w.out_ln_b = W(p + "output.LayerNorm.bias", {C});
      layers_.push_back(w);
    }
    const int64_t L = c.num_labels;
    head_dense_ = host_floats(ck.weight("classifier.dense.weight", {C, C}), size_t(C * C));
    if (&be_ != &cpu_backend()) head_dense_w_ = W("classifier.dense.weight", {C, C});  // the device matmul's copy
    head_dense_b_ = host_floats(ck.weight("classifier.dense.bias", {C}), size_t(C));
    head_out_ = host_floats(ck.weight("classifier.out_proj.weight", {L, C}), size_t(L * C));
    head_out_b_ = host_floats(ck.weight("classifier.out_proj.bias", {L}), size_t(L));
  }

  const Backend& be_;
  WeightRef word_, pos_type_w_, emb_ln_w_, emb_ln_b_;
  std::vector<float> pos_type_;  // [max_positions, C] host (the CPU backend reads it in place)
  std::vector<EncoderLayer> layers_;
  std::vector<float> head_dense_, head_dense_b_, head_out_, head_out_b_;
  WeightRef head_dense_w_;  // device backends: classifier.dense placed for the matmul (null on the CPU)
  std::vector<WeightRef> placed_;
  DeviceBuffer x_, t_, q_, k_, v_, attn_, h_, rows_, meta_, dense_;
  std::vector<int32_t> host_meta_;
};

void XlmRobertaModel::forward(const ForwardBatch& b, KvCache& kv, const LogitsOut& out) {
  const ModelConfig& c = config_;
  forward_batch_validate(b, kv.num_pages(), kv.page_size(), c.vocab_size, c.max_position_embeddings);
  const int B = b.B, T = b.T, R = b.R, C = c.hidden_size, I = c.intermediate_size, H = c.num_heads,
            D = c.head_dim, P = kv.page_size();
  if (T == 0) return;
  const int pad = int(c.pad_token_id);
  // Host metadata: ids | positions | slots | qo | kv_indptr | kv_lens | rows | pages.
  std::vector<int32_t>& h = host_meta_;
  const int n_pages = b.kv_indptr[B];
  h.assign(size_t(3 * T + 2 * (B + 1) + B + R + n_pages), 0);
  int32_t *ids = h.data(), *pos = ids + T, *slots = pos + T, *qo = slots + T, *kvp = qo + B + 1, *kvlen = kvp + B + 1,
          *rows = kvlen + B, *pages = rows + R;
  int max_len = 0;
  for (int s = 0; s < B; ++s) {
    const int t0 = b.qo_indptr[s], n = b.qo_indptr[s + 1] - t0;
    if (n != b.kv_lens[s])
      throw std::invalid_argument("sequence " + std::to_string(s) + ": an encoder step takes whole sequences (q_len " +
                                  std::to_string(n) + ", kv_len " + std::to_string(b.kv_lens[s]) + ")");
    max_len = std::max(max_len, n);
    // transformers' create_position_ids_from_input_ids: padding_idx + the running count of non-pad tokens
    // (pad tokens themselves sit at padding_idx).
    int count = 0;
    for (int i = 0; i < n; ++i) {
      const int32_t id = b.token_ids[t0 + i];
      const bool real = id != pad;
      count += real ? 1 : 0;
      const int p = real ? pad + count : pad;
      if (p < 0 || p >= c.max_position_embeddings)
        throw std::invalid_argument("sequence " + std::to_string(s) + " is longer than the model's " +
                                    std::to_string(c.max_position_embeddings - pad - 1) + " positions");
      pos[t0 + i] = p;
      const int32_t page = b.kv_page_indices[b.kv_indptr[s] + i / P];
      slots[t0 + i] = page * P + i % P;
    }
  }
  std::memcpy(ids, b.token_ids, size_t(T) * 4);
  std::memcpy(qo, b.qo_indptr, size_t(B + 1) * 4);
  std::memcpy(kvp, b.kv_indptr, size_t(B + 1) * 4);
  std::memcpy(kvlen, b.kv_lens, size_t(B) * 4);
  std::memcpy(rows, b.logit_rows, size_t(R) * 4);
  std::memcpy(pages, b.kv_page_indices, size_t(n_pages) * 4);
  int32_t* d = static_cast<int32_t*>(meta_.ensure(h.size() * 4));
  be_.upload(d, h.data(), h.size() * 4);
  const int32_t *d_ids = d, *d_pos = d + T, *d_slots = d + 2 * T, *d_qo = d + 3 * T, *d_kvp = d_qo + B + 1,
                *d_kvlen = d_kvp + B + 1, *d_rows = d_kvlen + B, *d_pages = d_rows + R;

  const size_t es = dtype_size(be_.act_dtype);
  void* x = x_.ensure(size_t(T) * C * es);
  void* t = t_.ensure(size_t(T) * C * es);
  void* q = q_.ensure(size_t(T) * C * es);
  void* k = k_.ensure(size_t(T) * C * es);
  void* v = v_.ensure(size_t(T) * C * es);
  void* attn = attn_.ensure(size_t(T) * C * es);
  void* hid = h_.ensure(size_t(T) * I * es);
  const float eps = float(c.layer_norm_eps);
  const bool tanh_gelu = c.hidden_act != "gelu";

  be_.embed({d_ids, word_, x, T, C});
  be_.embed({d_pos, pos_type_w_, t, T, C});
  be_.layer_norm({x, t, x, emb_ln_w_, emb_ln_b_, T, C, eps});
  const float scale = 1.0f / std::sqrt(float(D));
  for (int l = 0; l < c.num_layers; ++l) {
    const EncoderLayer& w = layers_[size_t(l)];
    be_.matmul({x, w.q, w.q_bias, q, T, C, C});
    be_.matmul({x, w.k, w.k_bias, k, T, C, C});
    be_.matmul({x, w.v, w.v_bias, v, T, C, C});
    be_.kv_store({k, v, kv.k(l), kv.v(l), d_slots, T, H, D});
    AttentionParams ap{q, kv.k(l), kv.v(l), attn, d_qo, d_kvp, d_pages, d_kvlen, B, T, H, H, D, P, scale, false};
    ap.max_q_len = max_len;
    ap.max_kv_len = max_len;
    be_.attention(ap);
    be_.matmul({attn, w.o, w.o_bias, t, T, C, C});
    be_.layer_norm({t, x, x, w.attn_ln_w, w.attn_ln_b, T, C, eps});  // x = LN(dense(attn) + x)
    be_.matmul({x, w.inter, w.inter_bias, hid, T, C, I});
    be_.gelu({hid, hid, int64_t(T) * I, tanh_gelu});
    be_.matmul({hid, w.out, w.out_bias, t, T, I, C});
    be_.layer_norm({t, x, x, w.out_ln_w, w.out_ln_b, T, C, eps});  // x = LN(dense(h) + x)
  }
  if (R == 0 || !out.logits) return;
  void* r = rows_.ensure(size_t(R) * C * es);
  be_.gather_rows({x, d_rows, r, R, C});
  std::vector<float> hr(size_t(R) * C);
  const bool dense_on_device = head_dense_w_.data != nullptr;
  if (dense_on_device) {  // hr = rows · denseᵀ (f32), the bias below
    float* dz = static_cast<float*>(dense_.ensure(size_t(R) * C * sizeof(float)));
    MatmulParams mp{r, head_dense_w_, WeightRef{}, dz, R, C, C};
    mp.y_f32 = true;
    be_.matmul(mp);
    be_.download(hr.data(), dz, hr.size() * sizeof(float));
  } else {
    be_.to_f32(r, hr.data(), hr.size());
  }
  const int L = c.num_labels;
  std::vector<double> z(static_cast<size_t>(C));
  for (int i = 0; i < R; ++i) {
    const float* hv = hr.data() + size_t(i) * C;
    for (int o = 0; o < C; ++o) {
      double acc = head_dense_b_[size_t(o)];
      if (dense_on_device) {
        acc += hv[o];
      } else {
        for (int j = 0; j < C; ++j) acc += double(head_dense_[size_t(o) * C + j]) * hv[j];
      }
      z[size_t(o)] = std::tanh(acc);
    }
    for (int o = 0; o < L; ++o) {
      double acc = head_out_b_[size_t(o)];
      for (int j = 0; j < C; ++j) acc += double(head_out_[size_t(o) * C + j]) * z[size_t(j)];
      out.logits[size_t(i) * L + o] = float(acc);
    }
  }
}

}  // namespace

std::unique_ptr<Model> xlmr_create(const ModelConfig& config, const Checkpoint& ckpt, const Backend& backend) {
  return std::make_unique<XlmRobertaModel>(config, ckpt, backend);
}

}  // namespace sgl
