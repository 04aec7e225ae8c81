// The Backend table: every op the model code needs, filled once by the CPU backend (addon/cpu/, the
// readable reference) and once by the CUDA backend (cuda/). Model code (addon/models/) calls only these.
//
// Shape glossary (also in cuda/NOTES.md): T tokens in the step, B sequences, H query heads, Hkv KV heads,
// D head dim, P page size, L layers, E experts, K top-k, V vocab, C hidden size, I intermediate size,
// N/K matmul output/input features, R rows gathered for logits.
//
// Activations and the KV cache are in the backend's activation dtype (`Backend::act_dtype`: f32 on the CPU,
// bf16 on CUDA, f32 on CUDA's float32 table); weights keep the checkpoint's dtype (WeightRef). Buffers are
// device pointers of the backend.
#pragma once
#include <cstddef>
#include <cstdint>

namespace sgl {

enum class DType : int32_t { F32 = 0, BF16 = 1, F16 = 2, I32 = 3, I64 = 4, U8 = 5, BOOL = 6 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);

// A read-only weight in its stored dtype (memory-mapped on the CPU, uploaded on CUDA).
struct WeightRef {
  const void* data = nullptr;  // null = absent (e.g. no bias)
  DType dtype = DType::F32;
};

struct EmbedParams {
  const int32_t* ids;  // [T] token ids (host-visible on CPU, device on CUDA)
  WeightRef table;     // [V, C]
  void* out;           // [T, C]
  int32_t T, C;
};

// y = x · Wᵀ (+ bias). W is stored as torch.nn.Linear keeps it: [N, K] row-major.
struct MatmulParams {
  const void* x;  // [T, K]
  WeightRef w;    // [N, K]
  WeightRef bias; // [N] or absent
  void* y;        // [T, N] in the activation dtype, or f32 when y_f32 (the logits)
  int32_t T, K, N;
  bool y_f32 = false;
};

// With residual: residual += x (in place), out = rmsnorm(residual) * w. Without: out = rmsnorm(x) * w.
// out may alias x (with or without residual): each row is read fully before it is written.
struct RmsNormParams {
  const void* x;   // [T, C]
  void* residual;  // [T, C] or null
  void* out;       // [T, C]
  WeightRef w;     // [C]
  int32_t T, C;
  float eps;
};

// rms_norm fused into the matmul that consumes its output (decode steps of a device backend):
//   h = residual_in ? round(x + residual_in) : x        (the new residual stream, as rms_norm computes it)
//   residual_out = h                                     (when residual_out is given)
//   y = round(rmsnorm(h) * norm_w) · Wᵀ (+ bias)        (as rms_norm then matmul, with the same roundings)
// residual_out must not alias x or residual_in, and y none of the inputs: the op's blocks read x and
// residual_in while others write. An entry returns false, having enqueued nothing, where it does not fit
// (too many tokens, a size or alignment it does not take): the caller then runs rms_norm and matmul.
struct RmsNormMatmulParams {
  const void* x;            // [T, K] the sub-layer output (or the embedding, with residual_in null)
  const void* residual_in;  // [T, K] or null (h = x: the first layer)
  void* residual_out;       // [T, K] or null (h not stored)
  WeightRef norm_w;         // [K]
  float eps;
  WeightRef w;              // [N, K]
  WeightRef bias;           // [N] or absent
  void* y;                  // [T, N] in the activation dtype
  int32_t T, K, N;
};

// silu_mul fused into the down projection: y = round(silu(gate) * up) · Wᵀ (+ bias), the activation rounded
// as silu_mul stores it. y must not alias gate or up. Returns false (nothing enqueued) where it does not
// fit; the caller then runs silu_mul and matmul.
struct SiluMulMatmulParams {
  const void* gate;  // [T, K] with row stride ld
  const void* up;    // [T, K] with row stride ld
  int32_t ld;        // row stride of gate and up in elements (a fused gate|up row: 2K); 0 = K
  WeightRef w;       // [N, K]
  WeightRef bias;    // [N] or absent
  void* y;           // [T, N] in the activation dtype
  int32_t T, K, N;
};

// The prefill MLP's gate|up GEMM with silu_mul in its epilogue: out = round(silu(round(x · W_gateᵀ)) ·
// round(x · W_upᵀ)), each product rounded to the activation dtype as matmul stores it, then the activation
// as silu_mul stores it. w is the fused gate_up weight (the gate rows, then the up rows). Returns false
// (nothing enqueued) where it does not fit; the caller then runs matmul and silu_mul.
struct MatmulSiluMulParams {
  const void* x;  // [T, K]
  WeightRef w;    // [2I, K]: gate rows 0..I-1, up rows I..2I-1
  void* out;      // [T, I] in the activation dtype; must not alias x
  int32_t T, K, I;
};

// Rotary embedding in place, HF "rotate_half" layout: pairs (i, i + D/2) of each head.
struct RopeParams {
  void* q;                   // [T, H, D]
  void* k;                   // [T, Hkv, D]
  const int32_t* positions;  // [T]
  const float* inv_freq;     // [D/2] (llama3 scaling already applied)
  int32_t T, H, Hkv, D;
};

// Writes this step's K/V into the paged cache: token t goes to slot slots[t] = page * P + offset.
struct KvStoreParams {
  const void* k;         // [T, Hkv, D]
  const void* v;         // [T, Hkv, D]
  void* k_cache;         // [num_pages, P, Hkv, D] of one layer
  void* v_cache;         // [num_pages, P, Hkv, D] of one layer
  const int32_t* slots;  // [T]
  int32_t T, Hkv, D;
};

// Varlen paged attention (FlashInfer-style CSR page table). Sequence b owns query tokens
// [qo_indptr[b], qo_indptr[b+1]) of the step and kv_lens[b] cached tokens (this step's included), held in
// pages kv_page_indices[kv_indptr[b] .. kv_indptr[b+1]). Its queries are the LAST q_len positions, so query
// i sits at position kv_len - q_len + i and, when causal, sees kv positions <= that.
struct AttentionParams {
  const void* q;                   // [T, H, D]
  const void* k_cache;             // [num_pages, P, Hkv, D]
  const void* v_cache;             // [num_pages, P, Hkv, D]
  void* out;                       // [T, H, D]
  const int32_t* qo_indptr;        // [B + 1]
  const int32_t* kv_indptr;        // [B + 1]
  const int32_t* kv_page_indices;  // [kv_indptr[B]]
  const int32_t* kv_lens;          // [B]
  int32_t B, T, H, Hkv, D, P;
  float scale;  // softmax scale, usually 1/sqrt(D)
  bool causal;
  // Host-side bounds over the batch (the arrays above are device memory on CUDA): the largest q_len and
  // kv_len of any sequence. They pick the kernel (decode when max_q_len == 1) and size its grid.
  int32_t max_q_len = 0, max_kv_len = 0;
};

// out = silu(gate) * up
struct SiluMulParams {
  const void* gate;  // [T, I] with row stride ld
  const void* up;    // [T, I] with row stride ld
  void* out;         // [T, I] contiguous (may alias gate only when ld == I)
  int32_t T, I;
  int32_t ld = 0;    // row stride of gate and up in elements; 0 = I (a fused gate|up output has ld = 2I)
};

// The fused attention input of a device step: one q|k|v projection row per token is split, q and k are
// rotated (as RopeParams), q is written out and k, v go to the paged cache (as KvStoreParams; a negative
// slot skips the token). Replaces rope + kv_store after one fused QKV matmul.
struct QkvRopeStoreParams {
  const void* qkv;           // [T, (H + 2 Hkv) D]: q heads, then k heads, then v heads
  void* q;                   // [T, H, D] out
  void* k_cache;             // [num_pages, P, Hkv, D] of one layer
  void* v_cache;             // [num_pages, P, Hkv, D] of one layer
  const int32_t* positions;  // [T]
  const float* inv_freq;     // [D/2]
  const int32_t* slots;      // [T]
  int32_t T, H, Hkv, D;
};

// dst[r] = src[rows[r]]
struct GatherRowsParams {
  const void* src;      // [T, C]
  const int32_t* rows;  // [R]
  void* dst;            // [R, C]
  int32_t R, C;
};

// Rows finished where the logits are, as the sampler's plain paths compute them (addon/engine/sampler.cc),
// so that their [V] logits need not be downloaded:
//  - greedy rows (inv_temp null or inv_temp[r] == 0): the first index of the maximum (NaN never chosen; a row
//    of only NaN / -inf gives 0) and log_softmax at it (NaN counted as -inf);
//  - sampled rows (inv_temp[r] > 0): x = logits * inv_temp (NaN as -inf), e = exp(x - max), Z = sum e, and
//    the first index (in id order, skipping e = 0) whose running sum exceeds u[r] * Z; logprob x - max - log Z
//    (at least float32 min).
struct ArgmaxParams {
  const float* logits;              // [R, V] f32
  int32_t* token;                   // [R]
  float* logprob;                   // [R]
  int32_t R, V;
  const float* inv_temp = nullptr;  // [R] or null (all greedy)
  const double* u = nullptr;        // [R] uniforms in [0, 1) for the sampled rows
};

// One sparse change of a logits row, as the sampler's penalties make them (addon/engine/sampler.cc,
// sampler_logit_edits): l = l > 0 ? l / value : l * value (repetition), l -= value (frequency + presence),
// l = -inf (min_new_tokens stop ids), l += value (logit_bias). A row's edits come in that op order; within
// each of the first three ops a token appears at most once (logit_bias may repeat one: applied in order).
enum : int32_t { kLogitEditRepetition = 0, kLogitEditSubtract = 1, kLogitEditMask = 2, kLogitEditBias = 3 };
struct LogitEdit {
  int32_t token;  // in [0, V)
  int32_t op;     // kLogitEdit*
  float value;
};

constexpr int32_t kSampleMaxTopN = 64;  // most top logprobs a sample_rows row returns
constexpr int32_t kSampleReturnLogprob = 1;  // SampleRowsParams::flags bit

// Sampling rows finished where the logits are, exactly as sample_row (addon/engine/sampler.cc) finishes a
// row after its uniform is drawn: the edits, then x = logits * inv_temp (NaN as -inf), e = exp(x - max);
// ranks sorted by x descending, ties by lower id; greedy rows (top_k 1) take rank 0. Others keep ranks
// r < min(top_k, max(1, #{e >= min_p})) whose exclusive cumulative share of sum(e) is <= top_p (top_p < 1)
// and draw the first kept rank whose running sum exceeds u * (kept sum); with top_p >= 1 and every token
// kept they walk ids in order instead (as sample_row does). Logprobs (flags & kSampleReturnLogprob):
// log_softmax(x) for greedy rows or top_p >= 1, else x renormalised over the top-p nucleus of the whole
// vocabulary (top-k / min-p not applied) and float32 min outside it (clamped so for non-greedy rows).
// All arrays are the backend's memory; sampled row r is logits row rows[r].
struct SampleRowsParams {
  float* logits;                // [*, V] f32; the sampled rows are edited in place
  const int32_t* rows;          // [R] logits row of each sampled row
  int32_t R, V;                 // V < 2^23 (the kernel's fixed-point masses)
  const float* inv_temp;        // [R] 1 / temperature (1 for greedy rows)
  const int32_t* top_k;         // [R] in [1, V]; 1 = greedy
  const float* top_p;           // [R]
  const float* min_p;           // [R] (<= 0: off)
  const double* u;              // [R] uniform in [0, 1) (unused for greedy rows)
  const int32_t* flags;         // [R] kSampleReturnLogprob
  const int32_t* top_n;         // [R] in [0, min(V, kSampleMaxTopN)]: top logprobs wanted
  const int32_t* edit_indptr;   // [R + 1] row r's edits: edits[edit_indptr[r] .. edit_indptr[r + 1])
  const LogitEdit* edits;       // [edit_indptr[R]]
  const int32_t* ids_indptr;    // [R + 1] row r's token_ids_logprob ids: ids[ids_indptr[r] ..)
  const int32_t* ids;           // [ids_indptr[R]] (any value; outside [0, V) reports float32 min)
  int32_t* token;               // [R] out
  float* logprob;               // [R] out: the chosen token's (computed whatever the flag)
  int32_t* status;              // [R] out: 0, or 1 when every logit is NaN / -inf (token 0, logprob float32
                                //   min, no top / id logprobs: sample_row's answer)
  int32_t* top_ids;             // [R, kSampleMaxTopN] out: the first top_n[r] entries, best first
  float* top_lps;               // [R, kSampleMaxTopN] out
  float* ids_lps;               // [ids_indptr[R]] out, aligned with ids (written when the flag is set)
  // Device scratch of sample_rows_scratch_bytes(R, V) bytes, 16-byte aligned (CUDA; the CPU ignores it).
  // Its contents need not be initialised and are meaningless afterwards.
  void* scratch = nullptr;
};

// The scratch that sample_rows needs on CUDA for R rows of V logits: per row (at most 256 rows: larger
// batches go through in groups of 256) 8 bytes per logit (the candidates it gathers), a 2048-bin histogram
// (12 bytes a bin) and 28 bytes per chunk of 8192 logits (partial sums), plus 16-byte alignment of its 8
// parts. cuda/sampling.cu checks its layout against it.
constexpr int32_t kSampleRowsPerGroup = 256;
inline size_t sample_rows_scratch_bytes(int32_t R, int32_t V) {
  const size_t rows = size_t(R < kSampleRowsPerGroup ? R : kSampleRowsPerGroup);
  const size_t chunks = (size_t(V) + 8191) / 8192;
  return rows * (size_t(V) * 8 + 2048 * 12 + chunks * 28) + 8 * 16;
}

// out = LayerNorm(x + residual) * w + b over each row (biased variance, as torch.nn.LayerNorm); residual
// may be null. For post-norm encoders (XLM-RoBERTa): the residual add and the norm in one pass. out may
// alias x.
struct LayerNormParams {
  const void* x;         // [T, C]
  const void* residual;  // [T, C] or null
  void* out;             // [T, C]
  WeightRef w, b;        // [C] each
  int32_t T, C;
  float eps;
};

// out = gelu(x) elementwise: exact (x/2 (1 + erf(x/√2)), "gelu") or the tanh approximation
// ("gelu_new" / "gelu_pytorch_tanh"). out may alias x.
struct GeluParams {
  const void* x;  // [n]
  void* out;      // [n]
  int64_t n;
  bool tanh_approx;
};

// MoE routing (Qwen2-MoE): p = softmax(logits[t]) in f32 over the E experts; the K largest (ties: the lower
// expert id first), best first; their weights p (divided by their sum when `renormalize`: norm_topk_prob).
// When counts is given, counts[e] += 1 for every choice of e (the expert counter's row of this layer).
struct MoeRouteParams {
  const float* logits;  // [T, E] router logits (f32)
  int32_t* topk_ids;    // [T, K] out: the chosen experts, best first
  float* topk_w;        // [T, K] out: their routing weights (f32)
  int32_t* counts;      // [E] or null (not recording): this layer's row of the [L, E] counter, incremented
  int32_t T, E, K;
  bool renormalize;
  // [1] in backend memory, or null (every token counts): only tokens t < *count_tokens are counted (a CUDA
  // graph's padding rows are routed but not counted; the graph reads the real count at each replay).
  const int32_t* count_tokens = nullptr;
};

// Groups the T*K (token, choice) pairs by expert. Pair i = t*K + k goes to row dst[i] of the permuted
// layout; expert e owns rows [offsets[e], offsets[e+1]) and holds its pairs in ascending i; x_perm[dst[i]] =
// x[t]. Everything stays in the backend's memory (no host round trip on a device).
struct MoePermuteParams {
  const void* x;            // [T, C]
  const int32_t* topk_ids;  // [T, K] experts in [0, E)
  void* x_perm;             // [T*K, C] out
  int32_t* dst;             // [T*K] out: the permuted row of each pair
  int32_t* offsets;         // [E + 1] out: rows per expert as CSR (offsets[E] = T*K)
  int32_t T, C, E, K;
};

// Grouped matmul over the permuted rows: for each expert e, y[r] = x[r] · W_eᵀ for r in [offsets[e],
// offsets[e+1]). Experts with no rows cost nothing; offsets stay in backend memory (never read on the host).
struct GroupedMatmulParams {
  const void* x;           // [M, K] rows grouped by expert
  const void* const* w;    // [E] expert weights, each [N, K] in w_dtype (the pointer array in backend memory)
  DType w_dtype;
  const int32_t* offsets;  // [E + 1] (offsets[E] <= M)
  void* y;                 // [M, N] in the activation dtype
  int32_t M, K, N, E;
};

// Weighted unpermute: out[t] = sum over the token's choices, in ascending expert order (as HF's loop over
// the experts adds them), of topk_w[t, k] * y[dst[t*K + k]]; then + sigmoid(shared_gate[t]) * shared[t]
// when shared is given (shared_gate null: weight 1). Sums in f32, rounded once to the activation dtype.
struct MoeUnpermuteParams {
  const void* y;             // [T*K, C] expert outputs in permuted order
  const int32_t* dst;        // [T*K] (MoePermuteParams::dst)
  const int32_t* topk_ids;   // [T, K]
  const float* topk_w;       // [T, K]
  const void* shared;        // [T, C] shared expert output, or null
  const float* shared_gate;  // [T] shared expert gate logits (f32), or null
  void* out;                 // [T, C] (must not alias y or shared)
  int32_t T, C, K;
};

struct Backend {
  const char* name;
  DType act_dtype;
  void* (*alloc)(size_t bytes);
  void (*free)(void* p);
  void (*upload)(void* dst, const void* src, size_t bytes);    // host -> device
  void (*download)(void* dst, const void* src, size_t bytes);  // device -> host
  void (*memset_zero)(void* dst, size_t bytes);
  void (*sync)();
  // Host memory the device can copy into without a staging copy (CUDA: pinned), and a device -> host copy
  // into it that is only enqueued: its data is there after the next sync(). The CPU: malloc and memcpy.
  void* (*host_alloc)(size_t bytes);
  void (*host_free)(void* p);
  void (*download_async)(void* dst_host, const void* src, size_t bytes);
  // A checkpoint weight of `count` elements (host memory, e.g. the memory map) made usable by the kernels:
  // the CPU uses it in place (returns `host`); CUDA allocates, uploads and converts it to bf16.
  // release_weight frees what place_weight allocated (a no-op on the CPU).
  WeightRef (*place_weight)(const WeightRef& host, size_t count);
  void (*release_weight)(const WeightRef& placed);

  void (*embed)(const EmbedParams&);
  void (*matmul)(const MatmulParams&);
  void (*rms_norm)(const RmsNormParams&);
  void (*rope)(const RopeParams&);
  void (*kv_store)(const KvStoreParams&);
  void (*attention)(const AttentionParams&);
  void (*silu_mul)(const SiluMulParams&);
  void (*gather_rows)(const GatherRowsParams&);
  // logits stay in f32 whatever the activation dtype: [R, V]
  void (*to_f32)(const void* src, float* dst_host, size_t n);
  void (*logits_argmax)(const ArgmaxParams&);
  // CUDA graphs (null where the backend has none): every op enqueued between graph_begin and graph_end is
  // captured into an executable graph instead of running; graph_launch replays it; graph_free releases it.
  void (*graph_begin)();
  void* (*graph_end)();
  void (*graph_launch)(void* exec);
  void (*graph_free)(void* exec);
  void (*qkv_rope_store)(const QkvRopeStoreParams&);
  void (*layer_norm)(const LayerNormParams&);
  void (*gelu)(const GeluParams&);
  // Null where the model should keep sampling on the host (the CPU: sample_row over the logits in place).
  void (*sample_rows)(const SampleRowsParams&);
  // Fused decode ops (null where the backend has none: the CPU, CUDA's float32 table). Each returns whether
  // it enqueued the op; on false the model runs the unfused pair.
  bool (*rms_norm_matmul)(const RmsNormMatmulParams&) = nullptr;
  bool (*silu_mul_matmul)(const SiluMulMatmulParams&) = nullptr;
  // MoE layers (null where the backend has none: a MoE model then refuses to load with a clear message).
  void (*moe_route)(const MoeRouteParams&) = nullptr;
  void (*moe_permute)(const MoePermuteParams&) = nullptr;
  void (*grouped_matmul)(const GroupedMatmulParams&) = nullptr;
  void (*moe_unpermute)(const MoeUnpermuteParams&) = nullptr;
  // The prefill gate|up GEMM with silu_mul fused (null where the backend has none: the CPU, CUDA's float32
  // table); returns whether it enqueued the op.
  bool (*matmul_silu_mul)(const MatmulSiluMulParams&) = nullptr;
  // y += x · Wᵀ (+ bias) in place, one rounding of the sum to the activation dtype (y_f32 unused): a pooled
  // model's prefill o_proj / down_proj writing straight into the residual stream, so the norm after them reads one tensor
  // instead of two and writes one instead of two. Returns whether it enqueued the op (false: the caller runs
  // matmul and folds the output in with rms_norm's residual). Null where the backend has none (the CPU,
  // CUDA's float32 table).
  bool (*matmul_add)(const MatmulParams&) = nullptr;
};

const Backend& cpu_backend();
// The CUDA backend on device 0, or null where the addon was built without CUDA or no GPU is present
// (defined in cuda/cuda_backend.cu; a stub returning null otherwise).
const Backend* cuda_backend();
// The float32 CUDA backend (SGLang's --dtype float32): the same device and ops with f32 activations, KV cache
// and weights (converted to f32 at placement) and f32 math throughout (no TF32), a correctness mode that
// matches float32 references tightly. Null where cuda_backend() is.
const Backend* cuda_backend_f32();

}  // namespace sgl
