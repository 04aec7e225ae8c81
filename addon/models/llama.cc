// LlamaForCausalLM and Qwen2ForCausalLM: pre-norm decoder layers of RMSNorm, rotary GQA attention (q/k/v
// biases for Qwen2, attention_bias for Llama) and a SwiGLU MLP; tied or untied lm_head.
// LlamaForSequenceClassification (Skywork-style reward models) is the same decoder with the `score` head
// [labels, C] in the lm_head's place: its logits row at the last token is the reward.
// Qwen2MoeForCausalLM: the same decoder whose sparse layers (ModelConfig::is_moe_layer) replace the MLP by a
// router (softmax top-K over E experts), SwiGLU experts of moe_intermediate_size run on the tokens grouped by
// expert (Backend::moe_route / moe_permute / grouped_matmul / moe_unpermute) and a shared expert scaled by
// sigmoid(shared_expert_gate · x). While recording (set_expert_recording), the router adds each token's
// choices to a [L, E] counter in backend memory.
// Embedding mode (ModelRunOptions::is_embedding, --is-embedding on a causal LM, gte-Qwen2 style): no lm_head;
// a logits row is the final-norm hidden state of its token in f32 [C] (the scheduler pools the last token's).
#include <cmath>
#include <algorithm>
#include <map>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/device_buffer.h"
#include "models/model.h"

namespace sgl {
namespace {

// Decode steps of at most this many tokens try the fused norm / silu GEMVs (Backend::rms_norm_matmul,
// silu_mul_matmul: the CUDA GEMV's kGemvMaxT; an entry declines any other step itself).
constexpr int kFusedMaxT = 2;

struct LayerWeights {
  WeightRef input_norm, post_norm;     // [C]
  WeightRef q, k, v, o;                // [H*D, C], [Hkv*D, C], [Hkv*D, C], [C, H*D]
  WeightRef q_bias, k_bias, v_bias, o_bias;
  WeightRef gate, up, down;            // [I, C], [I, C], [C, I]
  WeightRef gate_bias, up_bias, down_bias;
  // Fused on device backends (fuse_): q|k|v rows [(H + 2 Hkv) D, C] and gate|up rows [2I, C], with biases.
  WeightRef qkv, qkv_bias, gate_up, gate_up_bias;
  // Sparse (MoE) layers: the router [E, C]; the experts' weights as pointer arrays in backend memory
  // (const void*[E]: gate [Im, C], up [Im, C], down [C, Im]; on device backends gate|up rows [2 Im, C] per
  // expert instead of gate and up) of dtype exp_dtype; the shared expert (absent when its size is 0) with
  // its gate [1, C].
  bool moe = false;
  WeightRef router;
  void *exp_gate = nullptr, *exp_up = nullptr, *exp_gate_up = nullptr, *exp_down = nullptr;
  DType exp_dtype = DType::F32;
  WeightRef sh_gate, sh_up, sh_gate_up, sh_down, sh_gate_w;
};

class LlamaModel : public Model {
 public:
  LlamaModel(const ModelConfig& cfg, const Checkpoint& ck, const Backend& be, const ModelRunOptions& opts)
      : Model(cfg), be_(be), opts_(opts), fuse_(&be != &cpu_backend() && be.qkv_rope_store != nullptr),
        eager_(be), graph_scratch_(be), counter_(be), samp_(be), stage_(be) {
    config_.is_embedding = (opts.is_embedding || cfg.is_embedding) && cfg.num_labels == 0;
    try {
      load(ck);
    } catch (...) {
      release();
      throw;
    }
  }

  ~LlamaModel() override { release(); }

  void forward(const ForwardBatch& b, KvCache& kv, const LogitsOut& out) override {
    forward_launch(b, kv, out);
    forward_wait();
  }
  void forward_launch(const ForwardBatch& b, KvCache& kv, const LogitsOut& out) override;
  void forward_wait() override;
  bool can_sample_rows() const override { return be_.sample_rows != nullptr && config_.vocab_size < (1 << 23); }
  void set_expert_recording(int32_t level) override;
  bool take_expert_pass(ExpertPass& out) override;

 private:
  struct DevMeta;
  // Activations and step buffers of one execution path (eager, or the CUDA-graph path whose buffers never
  // move once a graph has captured their addresses).
  struct Scratch {
    explicit Scratch(const Backend& be)
        : x(be), res(be), q(be), k(be), v(be), attn(be), gate(be), up(be), rows(be), logits(be), red(be), meta(be),
          qkv(be), res2(be), moe_logits(be), moe_ids(be), moe_w(be), moe_dst(be), moe_off(be), moe_x(be), moe_h(be),
          moe_h2(be), moe_y(be), sh_out(be), sh_g(be), last_q(be), last_res(be) {}
    DeviceBuffer x, res, q, k, v, attn, gate, up, rows, logits, red, meta;
    DeviceBuffer qkv;   // fused path: [T, (H + 2 Hkv) D]; gate|up uses `gate` at [T, 2I]
    DeviceBuffer res2;  // backends with rms_norm_matmul: the residual stream's second buffer [T, C] (ping-pong)
    // MoE layers: router logits [T, E] f32, chosen experts [L, T, K] (one slice per layer, so that a pass's
    // choices can be read after it), weights [T, K] f32, permuted row of each pair [T K], expert offsets
    // [E + 1], permuted inputs [T K, C], expert hidden [T K, 2 Im] (gate|up; gate alone on the CPU) and
    // [T K, Im], expert outputs [T K, C], shared expert output [T, C] and gate logits [T] f32.
    DeviceBuffer moe_logits, moe_ids, moe_w, moe_dst, moe_off, moe_x, moe_h, moe_h2, moe_y, sh_out, sh_g;
    // The pruned last layer (DevMeta::last_qo): the logits rows' queries [R, H D] and residual stream [R, C].
    DeviceBuffer last_q, last_res;
  };
  void size_scratch(Scratch& s, int T, int R);
  void run(const DevMeta& d, Scratch& s, KvCache& kv, int B, int T, int R, int max_q_len, int max_kv_len, bool reduce);
  void moe_mlp(const LayerWeights& w, Scratch& s, const DevMeta& d, int l, int T);
  void mark_recorded(Scratch& s, int T_real, int T_run);
  // const void*[n] of `ptrs` in backend memory, freed with the weights
  void* place_pointers(const std::vector<const void*>& ptrs) {
    void* a = be_.alloc(ptrs.size() * sizeof(void*));
    if (!a) throw std::runtime_error("out of memory: expert pointer array");
    ptr_arrays_.push_back(a);
    be_.upload(a, ptrs.data(), ptrs.size() * sizeof(void*));
    return a;
  }
  int run_graph(const ForwardBatch& b, KvCache& kv, const std::vector<int32_t>& positions,
                const std::vector<int32_t>& slots, int32_t max_kv_len, const LogitsOut& out, const float*& lg,
                const int32_t*& red);
  void upload_sampling(Scratch& s, const LogitsOut& out, int R, int stride);
  void deliver(const float* lg, const int32_t* red, int R, int stride, const LogitsOut& out);
  void sample_on_device(const float* lg, const SampleRowsParams& h);

  // Finds a checkpoint tensor and places it on the backend (in place on the CPU; uploaded on CUDA).
  WeightRef place(const WeightRef& host, const std::vector<int64_t>& shape) {
    if (!host.data) return host;
    size_t count = 1;
    for (int64_t d : shape) count *= size_t(d);
    WeightRef w = be_.place_weight(host, count);
    placed_.push_back(w);
    placed_bytes_ += count * dtype_size(w.dtype);
    report_upload(count * dtype_size(host.dtype));
    return w;
  }

  // Tensors of one dtype stacked along their first dim ({name, rows}; cols 0 = 1-D biases) and placed as
  // one weight. The host copy lives only until place_weight returns (it uploads synchronously).
  WeightRef place_concat(const Checkpoint& ck, const std::vector<std::pair<std::string, int64_t>>& parts, int64_t cols) {
    std::vector<WeightRef> refs;
    for (const auto& [name, rows] : parts)
      refs.push_back(ck.weight(name, cols > 0 ? std::vector<int64_t>{rows, cols} : std::vector<int64_t>{rows}));
    for (const WeightRef& r : refs)
      if (r.dtype != refs[0].dtype)
        throw std::runtime_error(parts[0].first + ": the tensors to fuse have different dtypes");
    const size_t es = dtype_size(refs[0].dtype), per_row = size_t(cols > 0 ? cols : 1);
    size_t rows_total = 0;
    for (const auto& pr : parts) rows_total += size_t(pr.second);
    std::vector<uint8_t> buf(rows_total * per_row * es);
    size_t off = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
      const size_t bytes = size_t(parts[i].second) * per_row * es;
      std::memcpy(buf.data() + off, refs[i].data, bytes);
      off += bytes;
    }
    return place(WeightRef{buf.data(), refs[0].dtype}, {int64_t(rows_total), int64_t(per_row)});
  }

  // Device backends: a progress line on stderr at each quarter of the checkpoint's bytes uploaded.
  void report_upload(size_t bytes) {
    if (fuse_ == false || upload_total_ == 0) return;
    upload_done_ += bytes;
    while (upload_quarter_ < 4 && upload_done_ * 4 >= upload_total_ * size_t(upload_quarter_ + 1)) {
      ++upload_quarter_;
      std::fprintf(stderr, "[sglang-ts] Uploading weights to %s: %d%% (%.2f / %.2f GB)\n", be_.name, upload_quarter_ * 25,
                   double(upload_done_) / 1e9, double(upload_total_) / 1e9);
    }
  }

  void release() {
    for (auto& [key, slot] : graph_)
      if (slot.exec) be_.graph_free(slot.exec), slot.exec = nullptr;
    for (const WeightRef& w : placed_) be_.release_weight(w);
    placed_.clear();
    for (void* a : ptr_arrays_) be_.free(a);
    ptr_arrays_.clear();
    if (inv_freq_) be_.free(inv_freq_);
    inv_freq_ = nullptr;
  }

  void load(const Checkpoint& ck) {
    upload_total_ = ck.total_bytes();
    const TensorInfo* lm = config_.is_embedding ? ck.find("lm_head.weight") : nullptr;
    if (lm) upload_total_ -= std::min(upload_total_, lm->nbytes);  // not loaded in embedding mode
    const ModelConfig& cfg = config_;
    const Backend& be = be_;
    auto W = [&](const std::string& name, const std::vector<int64_t>& shape) { return place(ck.weight(name, shape), shape); };
    const int64_t C = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
    const int64_t QD = int64_t(cfg.num_heads) * cfg.head_dim, KD = int64_t(cfg.num_kv_heads) * cfg.head_dim;
    embed_ = W("model.embed_tokens.weight", {V, C});
    final_norm_ = W("model.norm.weight", {C});
    if (cfg.num_labels > 0)  // *ForSequenceClassification: the score head [labels, C] in the lm_head's place
      lm_head_ = W("score.weight", {int64_t(cfg.num_labels), C});
    else if (cfg.is_embedding)  // the final-norm rows are the output: no head
      lm_head_ = WeightRef{};
    else
      lm_head_ = cfg.tie_word_embeddings && !ck.find("lm_head.weight") ? embed_ : W("lm_head.weight", {V, C});
    for (int l = 0; l < cfg.num_layers; l++) {
      std::string p = "model.layers." + std::to_string(l) + ".";
      LayerWeights w;
      w.input_norm = W(p + "input_layernorm.weight", {C});
      w.post_norm = W(p + "post_attention_layernorm.weight", {C});
      w.o = W(p + "self_attn.o_proj.weight", {C, QD});
      if (cfg.o_bias) w.o_bias = W(p + "self_attn.o_proj.bias", {C});
      if (fuse_) {
        // One matmul for q|k|v and one for gate|up: the rows concatenated on the host, placed once.
        w.qkv = place_concat(ck, {{p + "self_attn.q_proj.weight", QD}, {p + "self_attn.k_proj.weight", KD},
                                  {p + "self_attn.v_proj.weight", KD}}, C);
        if (cfg.qkv_bias)
          w.qkv_bias = place_concat(ck, {{p + "self_attn.q_proj.bias", QD}, {p + "self_attn.k_proj.bias", KD},
                                         {p + "self_attn.v_proj.bias", KD}}, 0);
        w.moe = cfg.is_moe_layer(l);
        if (!w.moe) w.gate_up = place_concat(ck, {{p + "mlp.gate_proj.weight", I}, {p + "mlp.up_proj.weight", I}}, C);
        if (cfg.mlp_bias && !w.moe)
          w.gate_up_bias = place_concat(ck, {{p + "mlp.gate_proj.bias", I}, {p + "mlp.up_proj.bias", I}}, 0);
      } else {
        w.q = W(p + "self_attn.q_proj.weight", {QD, C});
        w.k = W(p + "self_attn.k_proj.weight", {KD, C});
        w.v = W(p + "self_attn.v_proj.weight", {KD, C});
        if (cfg.qkv_bias) {
          w.q_bias = W(p + "self_attn.q_proj.bias", {QD});
          w.k_bias = W(p + "self_attn.k_proj.bias", {KD});
          w.v_bias = W(p + "self_attn.v_proj.bias", {KD});
        }
        w.moe = cfg.is_moe_layer(l);
        if (!w.moe) {
          w.gate = W(p + "mlp.gate_proj.weight", {I, C});
          w.up = W(p + "mlp.up_proj.weight", {I, C});
        }
      }
      if (w.moe) {
        load_moe(ck, p, w);
        layers_.push_back(w);
        continue;
      }
      w.down = W(p + "mlp.down_proj.weight", {C, I});
      if (cfg.mlp_bias) {
        if (!fuse_) {
          w.gate_bias = W(p + "mlp.gate_proj.bias", {I});
          w.up_bias = W(p + "mlp.up_proj.bias", {I});
        }
        w.down_bias = W(p + "mlp.down_proj.bias", {C});
      }
      layers_.push_back(w);
    }
    std::vector<float> inv = rope_inv_freq(cfg.rope, cfg.head_dim, cfg.dtype);
    inv_freq_ = static_cast<float*>(be.alloc(inv.size() * sizeof(float)));
    be.upload(inv_freq_, inv.data(), inv.size() * sizeof(float));
  }

  // A sparse layer's router, experts and shared expert (see LayerWeights).
  void load_moe(const Checkpoint& ck, const std::string& p, LayerWeights& w) {
    const ModelConfig& cfg = config_;
    if (!be_.moe_route || !be_.moe_permute || !be_.grouped_matmul || !be_.moe_unpermute)
      throw std::runtime_error(cfg.architecture + ": the " + std::string(be_.name) +
                               " backend has no MoE kernels yet; serve this model with --device cpu");
    auto W = [&](const std::string& name, const std::vector<int64_t>& shape) { return place(ck.weight(name, shape), shape); };
    const int64_t C = cfg.hidden_size, E = cfg.num_experts, Im = cfg.moe_intermediate_size,
                  Is = cfg.shared_expert_intermediate_size;
    w.router = W(p + "mlp.gate.weight", {E, C});
    std::vector<const void*> gate, up, gate_up, down;
    bool first = true;
    auto same_dtype = [&](const WeightRef& r) {
      if (first) w.exp_dtype = r.dtype, first = false;
      if (r.dtype != w.exp_dtype) throw std::runtime_error(p + "mlp.experts: the experts' weights have different dtypes");
      return r.data;
    };
    for (int64_t e = 0; e < E; ++e) {
      const std::string q = p + "mlp.experts." + std::to_string(e) + ".";
      if (fuse_) {
        gate_up.push_back(same_dtype(place_concat(ck, {{q + "gate_proj.weight", Im}, {q + "up_proj.weight", Im}}, C)));
      } else {
        gate.push_back(same_dtype(W(q + "gate_proj.weight", {Im, C})));
        up.push_back(same_dtype(W(q + "up_proj.weight", {Im, C})));
      }
      down.push_back(same_dtype(W(q + "down_proj.weight", {C, Im})));
    }
    if (fuse_) {
      w.exp_gate_up = place_pointers(gate_up);
    } else {
      w.exp_gate = place_pointers(gate);
      w.exp_up = place_pointers(up);
    }
    w.exp_down = place_pointers(down);
    if (Is > 0) {
      const std::string q = p + "mlp.shared_expert.";
      if (fuse_)
        w.sh_gate_up = place_concat(ck, {{q + "gate_proj.weight", Is}, {q + "up_proj.weight", Is}}, C);
      else
        w.sh_gate = W(q + "gate_proj.weight", {Is, C}), w.sh_up = W(q + "up_proj.weight", {Is, C});
      w.sh_down = W(q + "down_proj.weight", {C, Is});
      w.sh_gate_w = W(p + "mlp.shared_expert_gate.weight", {1, C});
    }
  }

  const Backend& be_;
  WeightRef embed_, final_norm_, lm_head_;
  std::vector<LayerWeights> layers_;
  std::vector<WeightRef> placed_;  // what place_weight allocated, released once each
  std::vector<void*> ptr_arrays_;  // the experts' pointer arrays (backend memory)
  size_t placed_bytes_ = 0;
  size_t upload_total_ = 0, upload_done_ = 0;  // checkpoint bytes, for the progress line
  int upload_quarter_ = 0;
  float* inv_freq_ = nullptr;  // [D/2] on the device
  ModelRunOptions opts_;
  bool fuse_;  // device backends: fused q|k|v and gate|up matmuls (the CPU keeps its weights memory-mapped)
  Scratch eager_, graph_scratch_;
  // Expert routing record: the level of the launches to come, the cumulative [L, E] counter (backend
  // memory) and its host copy at the last pass read; the last launched pass's record (read by
  // take_expert_pass after the step: counter delta, and at level 2 the [L, T_run, K] choices of the scratch).
  int32_t rec_level_ = 0, rec_launch_ = 0;  // requested, and of the launch being enqueued
  DeviceBuffer counter_;
  std::vector<int32_t> counter_host_;
  struct RecPending {
    int32_t level = 0;
    int32_t T = 0, T_run = 0;        // real tokens, and the rows the forward ran (a graph's padded size)
    const int32_t* ids = nullptr;    // [L, T_run, K] in the scratch that ran
  } rec_;
  struct GraphSlot {
    void* exec = nullptr;  // the captured decode graph
    bool warm = false;     // this (batch size, context bucket) has run once eagerly
  };
  std::map<int64_t, GraphSlot> graph_;  // key: recording * 2^32 + padded batch size * 64 + log2(context bucket)
  std::vector<int32_t> host_pos_, host_slots_, host_meta_, host_pages_, host_last_qo_;
  std::vector<char> host_sampling_;
  DeviceBuffer samp_;                 // sample_rows' inputs | outputs (eager, never captured by a graph)
  std::vector<char> host_samp_in_;
  // The launched step's small outputs, copied by the stream into stage_ (pinned) and out of it by
  // forward_wait: the reduced rows' token[stride] | logprob[stride] at 0, sample_rows' outputs at samp_at.
  HostStage stage_;
  struct Pending {
    bool active = false;
    LogitsOut out;
    int R = 0, stride = 0;
    bool red = false;            // reduced rows to copy
    bool samp = false;           // sample_rows outputs to copy into *out.sample's arrays
    size_t samp_at = 0;          // their offset in stage_
    size_t o_lp = 0, o_st = 0, o_tid = 0, o_tlp = 0, o_ilp = 0;  // offsets of each output after samp_at
  } pending_;
};

// The step's metadata on the device: ids | positions | slots | qo_indptr | kv_indptr | kv_lens | logit_rows
// | pages. Eager steps pack it tightly; graph steps use fixed offsets for up to G sequences so that a
// captured graph reads the same addresses every replay.
// The reduced-rows buffer for n rows: token[n] | logprob[n] | inv_temp[n] | u[n] (double, 8-aligned).
struct RedLayout {
  size_t lp, inv, u, bytes;
  explicit RedLayout(size_t n) : lp(4 * n), inv(8 * n), u((12 * n + 7) / 8 * 8), bytes(u + 8 * n) {}
};

struct LlamaModel::DevMeta {
  const int32_t *ids, *pos, *slots, *qo, *kvp, *kvlen, *rows, *pages;
  const int32_t* ntok = nullptr;  // [1] tokens to count in the expert record (graphs: the real batch), or null: all
  // The last layer on the logits rows alone (prune_last_layer): their qo_indptr [B + 1] and 0..R-1 [R], and
  // the longest sequence's row count; null / 0: every layer runs on all T tokens.
  const int32_t *last_qo = nullptr, *last_rows = nullptr;
  int last_max_q = 0;
};

// Whether the last layer can run on the logits rows alone: each sequence's rows are a non-empty suffix of its
// query tokens, in order (a prefill wants its last token; a prompt-logprob request a suffix of the prompt).
// Then that layer's attention needs only those queries (the keys and values of every token still go to the
// cache first), and its o_proj, MLP and the final norm only those rows: a 500-token embedding request skips
// 499 rows of one layer in 28. Fills `qo` [B + 1] with the rows' offsets; false (and no pruning) otherwise.
bool prune_last_layer(const ForwardBatch& b, std::vector<int32_t>& qo, int32_t& max_rows) {
  if (b.R <= 0 || b.R >= b.T) return false;
  qo.assign(size_t(b.B) + 1, 0);
  max_rows = 0;
  int j = 0;
  for (int s = 0; s < b.B; s++) {
    const int32_t q0 = b.qo_indptr[s], q1 = b.qo_indptr[s + 1];
    const int j0 = j;
    while (j < b.R && b.logit_rows[j] >= q0 && b.logit_rows[j] < q1) j++;
    const int r = j - j0;
    if (r == 0) return false;  // a sequence without rows (a middle chunk) would be a zero-length query
    for (int i = 0; i < r; i++)
      if (b.logit_rows[j0 + i] != q1 - r + i) return false;
    qo[size_t(s) + 1] = j;
    max_rows = std::max<int32_t>(max_rows, r);
  }
  return j == b.R;
}

void LlamaModel::forward_launch(const ForwardBatch& b, KvCache& kv, const LogitsOut& out) {
  if (pending_.active) forward_wait();  // one step in flight
  const ModelConfig& c = config_;
  forward_batch_validate(b, kv.num_pages(), kv.page_size(), c.vocab_size, c.max_position_embeddings);
  const int T = b.T, P = kv.page_size();

  // Host-side step metadata: each token's position and KV slot, derived from the page tables.
  std::vector<int32_t>& positions = host_pos_;
  std::vector<int32_t>& slots = host_slots_;
  positions.resize(size_t(T));
  slots.resize(size_t(T));
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
  if (b.R == 0 && b.T == 0) return;
  rec_launch_ = rec_level_;
  rec_ = RecPending{};

  // Decode steps (one token per sequence, every token's logits wanted, in order) replay a CUDA graph.
  // Not in embedding mode: its rows are converted by to_f32 (a synchronous download) after an eager run.
  bool decode = be_.graph_launch != nullptr && !opts_.disable_graphs && max_q_len == 1 && b.T == b.B &&
                b.R == b.B && b.B <= opts_.graph_max_bs && !c.is_embedding;
  for (int i = 0; decode && i < b.R; ++i) decode = b.logit_rows[i] == i;
  const float* lg = nullptr;
  const int32_t* red = nullptr;
  int stride = b.R;  // rows of the reduced-output layout (a graph's padded batch size)
  if (decode) {
    stride = run_graph(b, kv, positions, slots, max_kv_len, out, lg, red);
  } else {
    const int n_pages = b.kv_indptr[b.B];
    // MoE models keep every layer whole: the expert recorder counts each token at each layer, as SGLang's does.
    int32_t last_max_q = 0;
    const bool prune = c.num_experts == 0 && opts_.prune_last_layer && prune_last_layer(b, host_last_qo_, last_max_q);
    const size_t meta_len =
        size_t(3 * T + 2 * (b.B + 1) + b.B + b.R + n_pages) + (prune ? size_t(b.B + 1 + b.R) : 0);
    std::vector<int32_t>& host_meta = host_meta_;
    host_meta.clear();
    auto append = [&](const int32_t* p, int n) { host_meta.insert(host_meta.end(), p, p + n); };
    append(b.token_ids, T);
    append(positions.data(), T);
    append(slots.data(), T);
    append(b.qo_indptr, b.B + 1);
    append(b.kv_indptr, b.B + 1);
    append(b.kv_lens, b.B);
    append(b.logit_rows, b.R);
    append(b.kv_page_indices, n_pages);
    if (prune) {
      append(host_last_qo_.data(), b.B + 1);
      for (int32_t i = 0; i < b.R; i++) host_meta.push_back(i);
    }
    int32_t* meta = eager_.meta.as<int32_t>(meta_len);
    be_.upload(meta, host_meta.data(), meta_len * sizeof(int32_t));
    DevMeta d{meta, meta + T, meta + 2 * T, meta + 3 * T, meta + 3 * T + b.B + 1, meta + 3 * T + 2 * (b.B + 1),
              meta + 3 * T + 2 * (b.B + 1) + b.B, meta + 3 * T + 2 * (b.B + 1) + b.B + b.R};
    if (prune) {
      d.last_qo = meta + 3 * T + 2 * (b.B + 1) + b.B + b.R + n_pages;
      d.last_rows = d.last_qo + b.B + 1;
      d.last_max_q = last_max_q;
    }
    size_scratch(eager_, T, b.R);
    if (out.argmax_only) upload_sampling(eager_, out, b.R, b.R);
    run(d, eager_, kv, b.B, T, b.R, max_q_len, max_kv_len, out.argmax_only != nullptr);
    mark_recorded(eager_, T, T);
    if (c.is_embedding) {  // the gathered final-norm rows, to f32 on the way to the host (every row full)
      if (b.R > 0 && out.logits) be_.to_f32(eager_.rows.ensure(0), out.logits, size_t(b.R) * c.hidden_size);
      return;
    }
    lg = eager_.logits.as<float>(size_t(b.R) * c.logits_width());
    red = static_cast<const int32_t*>(eager_.red.ensure(0));
  }
  if (b.R == 0) return;
  pending_ = Pending{};
  pending_.out = out;
  pending_.R = b.R;
  pending_.stride = stride;
  // stage_: the reduced rows, then sample_rows' outputs (sized here, before anything is copied into it)
  const size_t red_bytes = out.argmax_only ? size_t(2) * stride * sizeof(int32_t) : 0;
  const bool samp = out.sample && out.sample->R > 0;
  const size_t R = samp ? size_t(out.sample->R) : 0, NI = samp ? size_t(out.sample->ids_indptr[R]) : 0;
  const size_t TN = size_t(kSampleMaxTopN);
  pending_.samp_at = (red_bytes + 7) / 8 * 8;
  pending_.o_lp = 4 * R;
  pending_.o_st = 8 * R;
  pending_.o_tid = 12 * R;
  pending_.o_tlp = pending_.o_tid + 4 * R * TN;
  pending_.o_ilp = pending_.o_tlp + 4 * R * TN;
  stage_.ensure(pending_.samp_at + pending_.o_ilp + 4 * NI);
  if (samp) sample_on_device(lg, *out.sample);
  deliver(lg, red, b.R, stride, out);
  pending_.active = true;
}

// Waits for the launched step and copies its small outputs out of the pinned stage.
void LlamaModel::forward_wait() {
  if (!pending_.active) return;
  pending_.active = false;
  be_.sync();
  const Pending& p = pending_;
  const char* st = stage_.ensure(0);
  if (p.red) {
    std::memcpy(p.out.token, st, size_t(p.R) * sizeof(int32_t));
    std::memcpy(p.out.logprob, st + size_t(p.stride) * sizeof(int32_t), size_t(p.R) * sizeof(float));
  }
  if (p.samp) {
    const SampleRowsParams& h = *p.out.sample;
    const size_t R = size_t(h.R), NI = size_t(h.ids_indptr[h.R]), TN = size_t(kSampleMaxTopN);
    const char* o = st + p.samp_at;
    std::memcpy(h.token, o, 4 * R);
    std::memcpy(h.logprob, o + p.o_lp, 4 * R);
    std::memcpy(h.status, o + p.o_st, 4 * R);
    std::memcpy(h.top_ids, o + p.o_tid, 4 * R * TN);
    std::memcpy(h.top_lps, o + p.o_tlp, 4 * R * TN);
    if (NI) std::memcpy(h.ids_lps, o + p.o_ilp, 4 * NI);
  }
}

// Sizes every scratch buffer for T tokens and R logits rows (they only grow).
void LlamaModel::size_scratch(Scratch& s, int T, int R) {
  const ModelConfig& c = config_;
  const size_t es = dtype_size(be_.act_dtype);
  const size_t t = size_t(std::max(T, 1)), r = size_t(std::max(R, 1));
  s.x.ensure(t * c.hidden_size * es);
  s.res.ensure(t * c.hidden_size * es);
  if (fuse_ && be_.rms_norm_matmul) s.res2.ensure(t * c.hidden_size * es);
  s.q.ensure(t * c.num_heads * c.head_dim * es);
  if (!fuse_) {  // the fused path's k and v go from the qkv rows straight into the cache
    s.k.ensure(t * c.num_kv_heads * c.head_dim * es);
    s.v.ensure(t * c.num_kv_heads * c.head_dim * es);
  }
  s.attn.ensure(t * c.num_heads * c.head_dim * es);
  const size_t inter = size_t(std::max(c.intermediate_size, c.shared_expert_intermediate_size));  // the shared expert's too
  s.gate.ensure(t * inter * es * (fuse_ ? 2 : 1));
  if (fuse_) s.qkv.ensure(t * size_t(c.num_heads + 2 * c.num_kv_heads) * c.head_dim * es);
  s.up.ensure(t * inter * es);
  if (c.num_experts > 0) {
    const size_t E = size_t(c.num_experts), K = size_t(c.num_experts_per_tok), Im = size_t(c.moe_intermediate_size);
    const size_t tk = t * K, C = size_t(c.hidden_size);
    s.moe_logits.ensure(t * E * sizeof(float));
    s.moe_ids.ensure(size_t(c.num_layers) * tk * sizeof(int32_t));
    s.moe_w.ensure(tk * sizeof(float));
    s.moe_dst.ensure(tk * sizeof(int32_t));
    s.moe_off.ensure((E + 1) * sizeof(int32_t));
    s.moe_x.ensure(tk * C * es);
    s.moe_h.ensure(tk * Im * es * (fuse_ ? 2 : 1));
    s.moe_h2.ensure(tk * Im * es);
    s.moe_y.ensure(tk * C * es);
    s.sh_out.ensure(t * C * es);
    s.sh_g.ensure(t * sizeof(float));
  }
  s.rows.ensure(r * c.hidden_size * es);
  s.last_q.ensure(r * c.num_heads * c.head_dim * es);
  s.last_res.ensure(r * c.hidden_size * es);
  s.logits.ensure(r * c.vocab_size * sizeof(float));
  s.red.ensure(RedLayout(r).bytes);
}

// Enqueues the whole forward on the backend: layers, final norm, logits rows (f32) and, when `reduce`, their
// argmax (Backend::logits_argmax) into s.red = token[R] | logprob[R]. No host synchronisation: a graph can
// capture it.
void LlamaModel::run(const DevMeta& d, Scratch& s, KvCache& kv, int B, int T, int R, int max_q_len, int max_kv_len,
                     bool reduce) {
  const ModelConfig& c = config_;
  const int C = c.hidden_size, I = c.intermediate_size, H = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim,
            P = kv.page_size();
  const size_t es = dtype_size(be_.act_dtype);
  void *x = s.x.ensure(0), *res = s.res.ensure(0), *q = s.q.ensure(0), *k = s.k.ensure(0), *v = s.v.ensure(0),
       *attn = s.attn.ensure(0), *gate = s.gate.ensure(0), *up = s.up.ensure(0);
  const float eps = float(c.rms_norm_eps);
  be_.embed({d.ids, embed_, x, T, C});
  // The residual stream: `res_cur` holds it, null before the first norm (the stream is then the embedding in
  // x alone). The unfused norm folds x into it in place (a zeroed buffer the first time); the fused
  // rms_norm_matmul (decode steps of <= kFusedMaxT tokens) reads it and writes the sum to the other buffer of
  // the pair (res, res2), as its blocks still read the old one. The buffers never move, so a graph captures
  // the same sequence of addresses every time.
  void* res_cur = nullptr;
  void* res2 = s.res2.ensure(0);
  const bool fused_norm = fuse_ && be_.rms_norm_matmul != nullptr && res2 != nullptr && T <= kFusedMaxT;
  const bool fused_silu = fuse_ && be_.silu_mul_matmul != nullptr && T <= kFusedMaxT;
  // Pooled models' prefill on a backend with matmul_add: o_proj and down_proj add their outputs into the
  // residual stream themselves (x_pending false after them), and the norm that follows only normalises it:
  // the residual gets one rounding to bf16 instead of two (the GEMM's output, then the sum). Generation models
  // keep the two roundings: their decode steps (the fused rms_norm_matmul GEMVs) round that way, and a token's
  // prefill and decode must agree (radix cache, batch invariance); with matmul_add a near-tied greedy choice
  // of qwen2-tiny (top-2 margin 0.06) flipped between a cold prefill and a cached one (H100, 2026-12-07).
  const bool add_into_res = fuse_ && be_.matmul_add != nullptr && T > kFusedMaxT && c.is_pooled();
  bool x_pending = true;  // x holds a sub-layer's output (the embedding at first) not yet in the stream
  // x <- rmsnorm(res_cur += x) * g, in place (Backend::rms_norm with the residual); with nothing pending,
  // x <- rmsnorm(res_cur) * g.
  auto norm_in_place = [&](const WeightRef& g) {
    if (!res_cur) {
      be_.memset_zero(res, size_t(T) * C * es);
      res_cur = res;
    }
    if (x_pending)
      be_.rms_norm({x, res_cur, x, g, T, C, eps});
    else
      be_.rms_norm({res_cur, nullptr, x, g, T, C, eps});
    x_pending = false;
  };
  // A sub-layer's output projection: into the residual stream where the backend adds in place, else into x.
  auto out_proj = [&](const void* in, const WeightRef& wt, const WeightRef& bias, int K) {
    if (add_into_res && res_cur != nullptr && be_.matmul_add({in, wt, bias, res_cur, T, K, C})) return;
    be_.matmul({in, wt, bias, x, T, K, C});
    x_pending = true;
  };
  // y <- (rmsnorm(res_cur += x) * g) · Wᵀ + bias: one fused kernel where the backend takes it, else the pair.
  auto norm_matmul = [&](const WeightRef& g, const WeightRef& wt, const WeightRef& bias, void* y, int N) {
    if (fused_norm) {
      void* next = res_cur == res ? res2 : res;
      if (be_.rms_norm_matmul({x, res_cur, next, g, eps, wt, bias, y, T, C, N})) {
        res_cur = next;
        x_pending = false;
        return;
      }
    }
    norm_in_place(g);
    be_.matmul({x, wt, bias, y, T, C, N});
  };
  const float scale = 1.0f / std::sqrt(float(D));
  for (int l = 0; l < c.num_layers; l++) {
    const LayerWeights& w = layers_[l];
    // x holds the previous sub-layer's output: fold it into the residual stream and normalise.
    if (fuse_) {
      void* qkv = s.qkv.ensure(0);
      norm_matmul(w.input_norm, w.qkv, w.qkv_bias, qkv, (H + 2 * Hkv) * D);
      be_.qkv_rope_store({qkv, q, kv.k(l), kv.v(l), d.pos, inv_freq_, d.slots, T, H, Hkv, D});
    } else {
      norm_in_place(w.input_norm);
      be_.matmul({x, w.q, w.q_bias, q, T, C, H * D});
      be_.matmul({x, w.k, w.k_bias, k, T, C, Hkv * D});
      be_.matmul({x, w.v, w.v_bias, v, T, C, Hkv * D});
      be_.rope({q, k, d.pos, inv_freq_, T, H, Hkv, D});
      be_.kv_store({k, v, kv.k(l), kv.v(l), d.slots, T, Hkv, D});
    }
    // The pruned last layer (DevMeta::last_qo): every token's k and v are in the cache; from here on only the
    // logits rows' queries and residual stream go on (T becomes R for the rest of the forward).
    const void* q_rows = q;
    const int32_t* qo = d.qo;
    if (l == c.num_layers - 1 && d.last_qo != nullptr) {
      void *lq = s.last_q.ensure(0), *lres = s.last_res.ensure(0);
      be_.gather_rows({q, d.rows, lq, R, H * D});
      be_.gather_rows({res_cur, d.rows, lres, R, C});
      res_cur = lres;
      q_rows = lq;
      qo = d.last_qo;
      max_q_len = d.last_max_q;
      T = R;
    }
    AttentionParams ap{q_rows, kv.k(l), kv.v(l), attn, qo, d.kvp, d.pages, d.kvlen, B, T, H, Hkv, D, P, scale, true};
    ap.max_q_len = max_q_len;
    ap.max_kv_len = max_kv_len;
    be_.attention(ap);
    out_proj(attn, w.o, w.o_bias, H * D);
    if (w.moe) {
      norm_in_place(w.post_norm);
      moe_mlp(w, s, d, l, T);  // into x
      x_pending = true;
    } else if (fuse_) {
      // Prefill: the gate|up GEMM with silu_mul in its epilogue where the backend has one (no gate_up bias).
      if (!fused_silu && be_.matmul_silu_mul != nullptr && w.gate_up_bias.data == nullptr) {
        norm_in_place(w.post_norm);
        if (be_.matmul_silu_mul({x, w.gate_up, up, T, C, I})) {
          out_proj(up, w.down, w.down_bias, I);
          continue;
        }
        be_.matmul({x, w.gate_up, w.gate_up_bias, gate, T, C, 2 * I});
      } else {
        norm_matmul(w.post_norm, w.gate_up, w.gate_up_bias, gate, 2 * I);
      }
      const void* up_half = static_cast<const char*>(gate) + size_t(I) * es;
      if (fused_silu && be_.silu_mul_matmul({gate, up_half, 2 * I, w.down, w.down_bias, x, T, I, C})) {
        x_pending = true;
      } else {
        SiluMulParams sm{gate, up_half, up, T, I};
        sm.ld = 2 * I;
        be_.silu_mul(sm);
        out_proj(up, w.down, w.down_bias, I);
      }
    } else {
      norm_in_place(w.post_norm);
      be_.matmul({x, w.gate, w.gate_bias, gate, T, C, I});
      be_.matmul({x, w.up, w.up_bias, up, T, C, I});
      be_.silu_mul({gate, up, gate, T, I});
      out_proj(gate, w.down, w.down_bias, I);
    }
  }
  norm_in_place(final_norm_);
  if (R == 0) return;
  void* rows = s.rows.ensure(0);
  be_.gather_rows({x, d.last_qo ? d.last_rows : d.rows, rows, R, C});  // pruned: x holds the R rows in order
  if (c.is_embedding) return;  // embedding mode: s.rows is the output (forward_launch converts it)
  // The logits come out of the lm_head matmul in f32 on every backend (bf16 logits would cost ~1e-2 in
  // logprobs).
  float* lg = static_cast<float*>(s.logits.ensure(0));
  MatmulParams mp{rows, lm_head_, WeightRef{}, lg, R, C, c.logits_width()};
  mp.y_f32 = true;
  be_.matmul(mp);
  if (reduce) {
    char* red = static_cast<char*>(s.red.ensure(0));
    const RedLayout L{size_t(R)};
    ArgmaxParams ap{lg, reinterpret_cast<int32_t*>(red), reinterpret_cast<float*>(red + L.lp), R, c.vocab_size};
    ap.inv_temp = reinterpret_cast<const float*>(red + L.inv);
    ap.u = reinterpret_cast<const double*>(red + L.u);
    be_.logits_argmax(ap);
  }
}

// A sparse layer's MLP on x (the post-attention norm's output, T tokens), its output back into x: router
// logits (f32), top-K routing (counted into the layer's row of the expert counter while recording), the pairs
// grouped by expert, the experts' SwiGLU as grouped matmuls, the shared expert beside, and the weighted sum.
void LlamaModel::moe_mlp(const LayerWeights& w, Scratch& s, const DevMeta& d, int l, int T) {
  const ModelConfig& c = config_;
  const int C = c.hidden_size, E = c.num_experts, K = c.num_experts_per_tok, Im = c.moe_intermediate_size,
            Is = c.shared_expert_intermediate_size, M = T * K;
  const size_t es = dtype_size(be_.act_dtype);
  void* x = s.x.ensure(0);
  float* logits = static_cast<float*>(s.moe_logits.ensure(0));
  int32_t* ids = static_cast<int32_t*>(s.moe_ids.ensure(0)) + size_t(l) * M;
  float* tw = static_cast<float*>(s.moe_w.ensure(0));
  int32_t* dst = static_cast<int32_t*>(s.moe_dst.ensure(0));
  int32_t* off = static_cast<int32_t*>(s.moe_off.ensure(0));
  void *xp = s.moe_x.ensure(0), *h = s.moe_h.ensure(0), *h2 = s.moe_h2.ensure(0), *y = s.moe_y.ensure(0);
  MatmulParams rp{x, w.router, WeightRef{}, logits, T, C, E};
  rp.y_f32 = true;
  be_.matmul(rp);
  int32_t* counts = rec_launch_ > 0 ? static_cast<int32_t*>(counter_.ensure(0)) + size_t(l) * E : nullptr;
  MoeRouteParams route{logits, ids, tw, counts, T, E, K, c.norm_topk_prob};
  route.count_tokens = d.ntok;
  be_.moe_route(route);
  be_.moe_permute({x, ids, xp, dst, off, T, C, E, K});
  const void* act;  // silu(gate) * up of each pair [M, Im]
  if (w.exp_gate_up) {
    be_.grouped_matmul({xp, static_cast<const void* const*>(w.exp_gate_up), w.exp_dtype, off, h, M, C, 2 * Im, E});
    SiluMulParams sm{h, static_cast<const char*>(h) + size_t(Im) * es, h2, M, Im};
    sm.ld = 2 * Im;
    be_.silu_mul(sm);
    act = h2;
  } else {
    be_.grouped_matmul({xp, static_cast<const void* const*>(w.exp_gate), w.exp_dtype, off, h, M, C, Im, E});
    be_.grouped_matmul({xp, static_cast<const void* const*>(w.exp_up), w.exp_dtype, off, h2, M, C, Im, E});
    be_.silu_mul({h, h2, h, M, Im});
    act = h;
  }
  be_.grouped_matmul({act, static_cast<const void* const*>(w.exp_down), w.exp_dtype, off, y, M, Im, C, E});
  void* shared = nullptr;
  float* shared_gate = nullptr;
  if (Is > 0) {
    void *gate = s.gate.ensure(0), *up = s.up.ensure(0);
    shared = s.sh_out.ensure(0);
    if (w.sh_gate_up.data) {
      be_.matmul({x, w.sh_gate_up, WeightRef{}, gate, T, C, 2 * Is});
      SiluMulParams sm{gate, static_cast<const char*>(gate) + size_t(Is) * es, up, T, Is};
      sm.ld = 2 * Is;
      be_.silu_mul(sm);
      be_.matmul({up, w.sh_down, WeightRef{}, shared, T, Is, C});
    } else {
      be_.matmul({x, w.sh_gate, WeightRef{}, gate, T, C, Is});
      be_.matmul({x, w.sh_up, WeightRef{}, up, T, C, Is});
      be_.silu_mul({gate, up, gate, T, Is});
      be_.matmul({gate, w.sh_down, WeightRef{}, shared, T, Is, C});
    }
    shared_gate = static_cast<float*>(s.sh_g.ensure(0));
    MatmulParams gp{x, w.sh_gate_w, WeightRef{}, shared_gate, T, C, 1};
    gp.y_f32 = true;
    be_.matmul(gp);
  }
  be_.moe_unpermute({y, dst, ids, tw, shared, shared_gate, x, T, C, K});
}

// Notes what the launch just enqueued recorded, for take_expert_pass.
void LlamaModel::mark_recorded(Scratch& s, int T_real, int T_run) {
  if (rec_launch_ == 0) return;
  rec_.level = rec_launch_;
  rec_.T = T_real;
  rec_.T_run = T_run;
  rec_.ids = static_cast<const int32_t*>(s.moe_ids.ensure(0));
}

void LlamaModel::set_expert_recording(int32_t level) {
  const ModelConfig& c = config_;
  if (c.num_experts == 0) level = 0;
  if (level > 0 && rec_level_ == 0) {  // a fresh counter (stream-ordered after what runs)
    const size_t n = size_t(c.num_layers) * size_t(c.num_experts);
    be_.memset_zero(counter_.ensure(n * sizeof(int32_t)), n * sizeof(int32_t));
    counter_host_.assign(n, 0);
  }
  rec_level_ = level;
}

bool LlamaModel::take_expert_pass(ExpertPass& out) {
  if (rec_.level == 0) return false;
  const RecPending r = rec_;
  rec_ = RecPending{};
  const ModelConfig& c = config_;
  const size_t L = size_t(c.num_layers), E = size_t(c.num_experts), K = size_t(c.num_experts_per_tok);
  be_.sync();
  std::vector<int32_t> now(L * E);
  be_.download(now.data(), counter_.ensure(0), now.size() * sizeof(int32_t));
  out.T = r.T;
  out.counts.resize(now.size());
  for (size_t i = 0; i < now.size(); ++i) out.counts[i] = now[i] - counter_host_[i];
  counter_host_ = std::move(now);
  out.topk.clear();
  if (r.level >= 2) {
    const size_t per_layer = size_t(r.T_run) * K;
    std::vector<int32_t> all(L * per_layer);
    be_.download(all.data(), r.ids, all.size() * sizeof(int32_t));
    out.topk.assign(L * size_t(r.T) * K, -1);
    for (size_t l = 0; l < L; ++l)
      if (layers_[l].moe)
        std::copy(all.begin() + l * per_layer, all.begin() + l * per_layer + size_t(r.T) * K,
                  out.topk.begin() + l * size_t(r.T) * K);
  }
  return true;
}

// A decode step through a CUDA graph captured for the padded batch size: the metadata goes to fixed offsets
// of a buffer sized for G = graph_max_bs sequences; padding sequences decode one token into the KV cache's
// scratch page. The first step of a size runs eagerly (it also sizes the kernels' caches), the second
// captures, later ones replay. Returns the padded batch size (the stride of the reduced outputs).
int LlamaModel::run_graph(const ForwardBatch& b, KvCache& kv, const std::vector<int32_t>& positions,
                          const std::vector<int32_t>& slots, int32_t max_kv_len, const LogitsOut& out,
                          const float*& lg, const int32_t*& red) {
  const ModelConfig& c = config_;
  const int G = opts_.graph_max_bs, P = kv.page_size();
  int bs = 1;
  while (bs < b.B) bs = bs < 8 ? bs * 2 : bs + 16 - bs % 16;
  bs = std::min(bs, G);
  const int64_t cap_tokens = std::min<int64_t>(int64_t(c.max_position_embeddings), int64_t(kv.num_pages()) * P);
  const int max_pages_seq = int((cap_tokens + P - 1) / P);
  const size_t head = size_t(7) * G + 3, meta_cap = head + size_t(G) * max_pages_seq;
  if (graph_scratch_.meta.ensure(0) == nullptr) {
    size_scratch(graph_scratch_, G, G);
    graph_scratch_.meta.ensure(meta_cap * sizeof(int32_t));
  }
  std::vector<int32_t>& h = host_meta_;
  h.assign(head, 0);
  int32_t *ids = h.data(), *pos = ids + G, *sl = pos + G, *qo = sl + G, *kvp = qo + G + 1, *kvlen = kvp + G + 1,
          *rows = kvlen + G;
  std::vector<int32_t>& pages = host_pages_;
  pages.clear();
  kvp[0] = 0;
  for (int i = 0; i < bs; ++i) {
    const bool real = i < b.B;
    ids[i] = real ? b.token_ids[i] : 0;
    pos[i] = real ? positions[i] : 0;
    sl[i] = real ? slots[i] : kv.scratch_page() * P;
    qo[i] = i;
    kvlen[i] = real ? b.kv_lens[i] : 1;
    rows[i] = i;
    if (real)
      pages.insert(pages.end(), b.kv_page_indices + b.kv_indptr[i], b.kv_page_indices + b.kv_indptr[i + 1]);
    else
      pages.push_back(kv.scratch_page());
    kvp[i + 1] = int32_t(pages.size());
  }
  qo[bs] = bs;
  h[size_t(7) * G + 2] = b.B;  // the tokens the expert record counts (the padding rows are not)
  int32_t* d = static_cast<int32_t*>(graph_scratch_.meta.ensure(0));
  be_.upload(d, h.data(), head * sizeof(int32_t));
  be_.upload(d + head, pages.data(), pages.size() * sizeof(int32_t));
  DevMeta dm{d, d + G, d + 2 * G, d + 3 * G, d + 4 * G + 1, d + 5 * G + 2, d + 6 * G + 2, d + head, d + 7 * G + 2};
  upload_sampling(graph_scratch_, out, b.B, bs);
  // The attention grid (its KV split count) is sized from the longest context, so graphs are kept per
  // (batch size, context bucket): the next power of two >= the longest context, from 256 up to the cap.
  int64_t kv_cap = 256;
  int kv_log = 8;
  while (kv_cap < max_kv_len) kv_cap *= 2, ++kv_log;
  const int max_kv = int(std::min<int64_t>(kv_cap, cap_tokens));
  GraphSlot& slot = graph_[(rec_launch_ > 0 ? int64_t(1) << 32 : 0) + int64_t(bs) * 64 + kv_log];
  if (!slot.warm) {
    run(dm, graph_scratch_, kv, bs, bs, bs, 1, max_kv, true);
    slot.warm = true;
  } else {
    if (!slot.exec) {
      be_.graph_begin();
      run(dm, graph_scratch_, kv, bs, bs, bs, 1, max_kv, true);
      slot.exec = be_.graph_end();
    }
    be_.graph_launch(slot.exec);
  }
  mark_recorded(graph_scratch_, b.B, bs);
  // Graphs always reduce (the argmax costs little beside the lm_head); deliver() reads what `out` asks.
  lg = static_cast<const float*>(graph_scratch_.logits.ensure(0));
  red = static_cast<const int32_t*>(graph_scratch_.red.ensure(0));
  // s.red holds token[bs] | logprob[bs]: deliver() reads R = b.B rows of a bs-row layout.
  return bs;
}

// The reduced rows' 1/T and uniforms into s.red (a row of `stride` layout; rows past R, and every row when
// `out` has none, are greedy: inv_temp 0).
void LlamaModel::upload_sampling(Scratch& s, const LogitsOut& out, int R, int stride) {
  const RedLayout L(static_cast<size_t>(stride));
  std::vector<char>& h = host_sampling_;
  h.assign(L.bytes - L.inv, 0);
  if (out.inv_temp) std::memcpy(h.data(), out.inv_temp, size_t(R) * sizeof(float));
  if (out.u) std::memcpy(h.data() + (L.u - L.inv), out.u, size_t(R) * sizeof(double));
  be_.upload(static_cast<char*>(s.red.ensure(0)) + L.inv, h.data(), h.size());
}

// Backend::sample_rows over the step's logits (device rows lg[r * V ..], a graph's included: its row r is
// batch row r) for the rows `h` describes in host memory: its inputs packed into one upload, one eager
// launch after whatever the stream holds (the lm_head, a graph replay), its outputs in one asynchronous
// download into the stage (forward_wait copies them into h's arrays); the kernel's scratch follows them in
// the same buffer. Not captured in graphs: the edit and id lists change size every step.
void LlamaModel::sample_on_device(const float* lg, const SampleRowsParams& h) {
  const size_t R = size_t(h.R), E = size_t(h.edit_indptr[h.R]), NI = size_t(h.ids_indptr[h.R]);
  size_t off = 0;
  auto take = [&](size_t bytes) {
    const size_t at = off;
    off = (off + bytes + 7) / 8 * 8;
    return at;
  };
  // inputs
  const size_t o_rows = take(4 * R), o_inv = take(4 * R), o_k = take(4 * R), o_p = take(4 * R), o_minp = take(4 * R),
               o_u = take(8 * R), o_flags = take(4 * R), o_topn = take(4 * R), o_eptr = take(4 * (R + 1)),
               o_iptr = take(4 * (R + 1)), o_edits = take(sizeof(LogitEdit) * E), o_ids = take(4 * NI);
  const size_t in_bytes = off;
  // outputs, packed as forward_wait reads them from the stage (pending_'s offsets)
  const size_t o_tok = in_bytes, o_lp = o_tok + pending_.o_lp, o_st = o_tok + pending_.o_st,
               o_tid = o_tok + pending_.o_tid, o_tlp = o_tok + pending_.o_tlp, o_ilp = o_tok + pending_.o_ilp;
  off = o_ilp + 4 * NI;
  const size_t out_bytes = off - in_bytes;
  // the kernel's scratch (not transferred)
  off = (off + 15) / 16 * 16;
  const size_t o_scratch = off;
  off += sample_rows_scratch_bytes(h.R, h.V);
  std::vector<char>& in = host_samp_in_;
  in.assign(in_bytes, 0);
  auto put = [&](size_t at, const void* src, size_t bytes) {
    if (bytes) std::memcpy(in.data() + at, src, bytes);
  };
  put(o_rows, h.rows, 4 * R);
  put(o_inv, h.inv_temp, 4 * R);
  put(o_k, h.top_k, 4 * R);
  put(o_p, h.top_p, 4 * R);
  put(o_minp, h.min_p, 4 * R);
  put(o_u, h.u, 8 * R);
  put(o_flags, h.flags, 4 * R);
  put(o_topn, h.top_n, 4 * R);
  put(o_eptr, h.edit_indptr, 4 * (R + 1));
  put(o_iptr, h.ids_indptr, 4 * (R + 1));
  put(o_edits, h.edits, sizeof(LogitEdit) * E);
  put(o_ids, h.ids, 4 * NI);
  char* d = static_cast<char*>(samp_.ensure(off));
  be_.upload(d, in.data(), in_bytes);
  SampleRowsParams p = h;
  p.logits = const_cast<float*>(lg);
  p.rows = reinterpret_cast<const int32_t*>(d + o_rows);
  p.inv_temp = reinterpret_cast<const float*>(d + o_inv);
  p.top_k = reinterpret_cast<const int32_t*>(d + o_k);
  p.top_p = reinterpret_cast<const float*>(d + o_p);
  p.min_p = reinterpret_cast<const float*>(d + o_minp);
  p.u = reinterpret_cast<const double*>(d + o_u);
  p.flags = reinterpret_cast<const int32_t*>(d + o_flags);
  p.top_n = reinterpret_cast<const int32_t*>(d + o_topn);
  p.edit_indptr = reinterpret_cast<const int32_t*>(d + o_eptr);
  p.ids_indptr = reinterpret_cast<const int32_t*>(d + o_iptr);
  p.edits = reinterpret_cast<const LogitEdit*>(d + o_edits);
  p.ids = reinterpret_cast<const int32_t*>(d + o_ids);
  p.token = reinterpret_cast<int32_t*>(d + o_tok);
  p.logprob = reinterpret_cast<float*>(d + o_lp);
  p.status = reinterpret_cast<int32_t*>(d + o_st);
  p.top_ids = reinterpret_cast<int32_t*>(d + o_tid);
  p.top_lps = reinterpret_cast<float*>(d + o_tlp);
  p.ids_lps = reinterpret_cast<float*>(d + o_ilp);
  p.scratch = d + o_scratch;
  be_.sample_rows(p);
  be_.download_async(stage_.ensure(0) + pending_.samp_at, d + in_bytes, out_bytes);  // read by forward_wait
  pending_.samp = true;
}

// Downloads what `out` asks: (token, logprob) of the reduced rows into the stage (forward_wait copies them
// out), the full rows of the rest straight into out.logits (synchronously: they can be large).
void LlamaModel::deliver(const float* lg, const int32_t* red, int R, int stride, const LogitsOut& out) {
  const size_t V = size_t(config_.logits_width());  // labels for a sequence classifier
  if (!out.argmax_only) {
    be_.download(out.logits, lg, size_t(R) * V * sizeof(float));
    return;
  }
  be_.download_async(stage_.ensure(0), red, size_t(2) * stride * sizeof(int32_t));
  pending_.red = true;
  for (int32_t r = 0; r < R;) {  // one download per run of consecutive full rows
    if (out.argmax_only[r]) {
      ++r;
      continue;
    }
    int32_t e = r;
    while (e < R && !out.argmax_only[e]) ++e;
    be_.download(out.logits + size_t(r) * V, lg + size_t(r) * V, size_t(e - r) * V * sizeof(float));
    r = e;
  }
}

}  // namespace

std::unique_ptr<Model> xlmr_create(const ModelConfig& config, const Checkpoint& ckpt, const Backend& backend);  // xlmr.cc

std::unique_ptr<Model> model_create(const ModelConfig& config, const Checkpoint& ckpt, const Backend& backend,
                                    const ModelRunOptions& opts) {
  if (config.architecture == "LlamaForCausalLM" || config.architecture == "Qwen2ForCausalLM" ||
      config.architecture == "Qwen2MoeForCausalLM" || config.architecture == "LlamaForSequenceClassification")
    return std::make_unique<LlamaModel>(config, ckpt, backend, opts);
  if (config.architecture == "XLMRobertaForSequenceClassification") return xlmr_create(config, ckpt, backend);
  throw std::runtime_error("unknown architecture \"" + config.architecture + "\"");
}

}  // namespace sgl
