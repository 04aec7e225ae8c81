// Native CPU sampler: penalties, temperature, top-k / top-p / min-p, seeded sampling and logprobs, over one
// float32 logits row [V] at a time. Plain data, single engine thread, no torch.
//
// SGLang semantics this follows (read from sgl-project/sglang, no code copied):
//  * sampling_params.py: `0 <= temperature < 1e-6` (_SAMPLING_EPS) is rewritten to temperature = 1, top_k = 1
//    (greedy); top_k == -1 means the whole vocabulary (TOP_K_ALL). A request is greedy iff top_k <= 1 after
//    that rewrite (sampling_batch_info.py: is_all_greedy = all(top_k <= 1)); greedy = argmax of the
//    penalized logits (torch.argmax: first index on ties).
//  * sampling_batch_info.py apply_logits_bias(): penalties are applied to the raw logits BEFORE the sampler
//    (then grammar vocab mask, then logit_bias); layers/sampler.py then divides by temperature, softmaxes,
//    and filters top-k / top-p / min-p, then samples.
//  * penaltylib/frequency_penalty.py: logits -= frequency_penalty * count(token in OUTPUT).
//    penaltylib/presence_penalty.py: logits -= presence_penalty if token occurred in OUTPUT.
//    penaltylib/repetition_penalty.py (current): tokens seen in the OUTPUT get logit/rp if logit > 0, else
//    logit*rp. (The older penaltylib/penalizers/repetition_penalty.py also counted the PROMPT, via
//    _cumulate_input_tokens; SamplingParams::repetition_penalty_counts_prompt selects that, default off. The
//    newest sampling_batch_info.py no longer registers the repetition penalizer at all.) The orchestrator's
//    penalizers are a python set (order unspecified); here: repetition first, then frequency, presence.
//  * penaltylib/min_new_tokens.py: while #output tokens < min_new_tokens, logits of
//    stop_token_ids ∪ tokenizer additional stop ids ∪ {eos} are set to -inf. ignore_eos does NOT touch the
//    logits in SGLang: it only disables the EOS / stop_token_ids finish check (schedule_batch.py
//    Req.check_finished: `if not ignore_eos:` guards both). So ignore_eos is a no-op here.
//  * layers/sampler.py top_k_top_p_min_p_sampling_from_probs_torch (= flashinfer filter_apply_order="joint"):
//    sort probs descending; keep rank r iff r < top_k AND (cumsum_r - p_r) <= top_p (exclusive cumsum over the
//    FULL distribution) AND p_r >= min_p * p_max (min_p relative to the max probability); sample from the
//    kept probs (renormalized).
//  * layers/sampler.py logprobs (SGLANG_RETURN_ORIGINAL_LOGPROB unset, the default): greedy rows:
//    log_softmax(penalized logits); sampled rows: log(top_p_normalize(softmax(penalized/T))), i.e. the
//    temperature-scaled distribution renormalized over the top-p nucleus only (top-k and min-p are NOT
//    applied), clamped to float32 min (-3.4028235e38) outside the nucleus. The chosen token's logprob,
//    get_top_logprobs (top-N) and get_token_ids_logprobs (requested ids) all index that same tensor.
//    (SGLang chooses the greedy form per batch, is_all_greedy; here it is per row so results do not depend
//    on batch composition. top_p >= 1 is treated as "no nucleus" to avoid float cumsum rounding effects.)
//  * Ties in the sort are broken by lower token id. Per-request RNG: mt19937_64 seeded from `seed` when
//    has_seed (reproducible regardless of batch), else from a global seed source (sampler_set_global_seed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/backend.h"  // LogitEdit

namespace sgl {

constexpr float kSamplingEps = 1e-6f;
constexpr int32_t kTopKAll = 1 << 30;
constexpr float kLogprobFloor = -3.4028234663852886e38f;  // torch.finfo(float32).min

struct SamplingParams {
  float temperature = 1.0f;
  float top_p = 1.0f;
  int32_t top_k = -1;  // -1 = whole vocabulary
  float min_p = 0.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  float repetition_penalty = 1.0f;
  bool repetition_penalty_counts_prompt = false;  // old-SGLang behaviour (prompt + output); default output only
  int32_t min_new_tokens = 0;
  bool ignore_eos = false;  // no effect on logits (SGLang: finish check only)
  std::vector<int32_t> stop_token_ids;
  std::vector<std::pair<int32_t, float>> logit_bias;  // (token, bias) added to the penalized logits
  uint64_t seed = 0;
  bool has_seed = false;
  // logprob request flags
  bool return_logprob = false;
  int32_t top_logprobs_num = 0;
  std::vector<int32_t> token_ids_logprob;
};

struct SamplerState {
  std::unordered_map<int32_t, int32_t> output_counts;  // token -> count in output so far (when penalized)
  bool track_counts = false;                           // a penalty reads output_counts
  std::vector<int32_t> prompt_tokens;                  // sorted unique prompt tokens
  std::vector<int32_t> min_tokens_stop_ids;            // stop_token_ids ∪ eos_ids (masked during min_new_tokens)
  int32_t num_output = 0;
  std::mt19937_64 rng;
};

// True when sample_row would return the plain argmax of the raw logits, with (if return_logprob) only the
// chosen token's log_softmax: greedy after the temperature rewrite, no penalty, bias or min-token mask in
// effect, no top / token-id logprobs. Such rows can be reduced where the logits are (Backend::logits_argmax).
bool is_plain_greedy(const SamplingParams& p, const SamplerState& st);

// True when sample_row would draw from the whole temperature-scaled softmax (top_k all, top_p >= 1, min_p 0)
// with none of the logit changes above and at most the chosen token's logprob: the backend can sample such a
// row where the logits are, given 1/T and the row's uniform. sampler_draw_uniform makes that draw, the same
// one (from the same stream) sample_row makes, so a seeded request samples the same tokens either way.
bool is_plain_sample(const SamplingParams& p, const SamplerState& st, int32_t V);
double sampler_draw_uniform(SamplerState& st);

struct SampleOutput {
  int32_t token = -1;
  float logprob = 0.0f;                                  // valid when return_logprob
  std::vector<std::pair<int32_t, float>> top_logprobs;  // top_logprobs_num (token, logprob), descending
  std::vector<float> token_ids_logprobs;                 // aligned with SamplingParams::token_ids_logprob
};

// Seed source for requests without a seed (default: std::random_device at first use).
void sampler_set_global_seed(uint64_t seed);

void sampler_state_init(SamplerState& st, const SamplingParams& p, const int32_t* prompt, size_t n,
                        const std::vector<int32_t>& eos_ids);
void sampler_state_append(SamplerState& st, int32_t token);

// Applies penalties / min_new_tokens masking to logits in place (logits keep the penalized values, before
// temperature), then selects a token. Returns the token (also out.token).
int32_t sample_row(float* logits, int32_t V, const SamplingParams& p, SamplerState& st, SampleOutput& out);

// Step 1 of sample_row alone (exposed for tests / other callers).
void apply_penalties(float* logits, int32_t V, const SamplingParams& p, const SamplerState& st);

// apply_penalties as a list of sparse edits, appended to `out` in the order they apply (the op order of
// LogitEdit in backend.h: repetition scales, then frequency / presence subtractions, then the min_new_tokens
// mask, then logit_bias additions; tokens outside [0, V) dropped). apply_penalties is exactly
// sampler_logit_edits followed by apply_logit_edits, so a backend given these edits penalizes bit-for-bit
// as the CPU does.
void sampler_logit_edits(const SamplingParams& p, const SamplerState& st, int32_t V, std::vector<LogitEdit>& out);
void apply_logit_edits(float* logits, const LogitEdit* edits, size_t n);

// sample_row's per-row parameters after the sampling_params.py normalisation (what a backend needs to finish
// the row where the logits are).
struct RowSpec {
  float inv_t = 1.0f;     // 1 / temperature (1 for greedy rows)
  int32_t top_k = 1;      // in [1, V]; 1 = greedy
  float top_p = 1.0f;
  float min_p = 0.0f;
  bool return_logprob = false;
  int32_t top_logprobs_num = 0;         // clamped to [0, V]
  const int32_t* token_ids = nullptr;   // [n_token_ids] for token_ids_logprobs
  int32_t n_token_ids = 0;
  bool greedy() const { return top_k == 1; }
};
RowSpec sampler_row_spec(const SamplingParams& p, int32_t V);

// sample_row after the penalties, over an already penalized row, with the row's uniform given: u is used
// only by non-greedy rows (sample_row draws one for every non-greedy row, even one whose logits are all NaN
// / -inf, where it goes unused). sample_row is apply_penalties + this with u = sampler_draw_uniform(st). Does not modify logits.
int32_t sample_row_u(const float* logits, int32_t V, const RowSpec& s, double u, SampleOutput& out);

// Full log_softmax(logits / temperature) of a row into out[V] (temperature 1 = raw; prompt-logprob use).
void log_softmax_row(const float* logits, int32_t V, float* out, float temperature = 1.0f);

}  // namespace sgl
