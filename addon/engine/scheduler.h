// Continuous-batching scheduler: admits waiting requests (FCFS or longest-prefix-match), chunks prefills
// under a token budget, batches prefill chunks and decodes into one ForwardBatch per step, samples,
// finishes, retracts under page pressure, and shares prefixes through the radix cache.
// Single-threaded: the engine thread calls step() in a loop.
// Overlap (SchedulerConfig::overlap, SGLang's overlap schedule): step() plans and builds step n+1 (admission,
// pages, page table, positions) while step n runs on the device, then waits for step n, appends its tokens,
// patches n+1 with them (rebuilding it only where a request finished or its pages moved) and launches it
// before emitting step n's events. A step's events therefore come out of the following step() call.
// Pooled requests (SchedRequest::pooled: embeddings, rerank / reward scores) are prefill-only and return one
// full logits row (StepEvent::embedding). On a causal model they go through chunking and the radix cache as
// a max_new_tokens = 0 request does. On an encoder model (ModelConfig::is_encoder) every request is pooled
// and computed whole in one step (never chunked: admitted only when it fits the step's remaining budget, or
// as the step's first request), the radix cache is off and its pages are freed when it finishes.
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_set>
#include <vector>

#include "engine/expert_recorder.h"
#include "engine/page_pool.h"
#include "engine/radix_cache.h"
#include "engine/sample_rows_batch.h"
#include "engine/sampler.h"
#include "kv/kv_cache.h"
#include "models/model.h"

namespace sgl {

struct SchedulerConfig {
  int32_t page_size = 1;
  int32_t chunked_prefill_size = -1;  // -1 = no chunking
  int32_t max_prefill_tokens = 16384;
  int32_t max_running_requests = 64;
  bool disable_radix_cache = false;
  enum Policy { FCFS, LPM } policy = FCFS;
  bool overlap = false;  // prepare step n+1 while step n runs (--disable-overlap-schedule turns it off)
};

struct SchedRequest {
  int64_t rid = 0;
  std::vector<int32_t> prompt;
  SamplingParams params;
  int32_t max_new_tokens = 16;  // 0 = prefill only: the prompt is cached (and its logprobs reported), no token
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;
  // Prompt logprobs: -1 = none; else positions [logprob_start_len, prompt_len) are reported (clamped to
  // prompt_len - 1), with params.top_logprobs_num / params.token_ids_logprob applied to each position too.
  // Like SGLang, the prefix-cache match is limited so those positions are recomputed.
  int32_t logprob_start_len = -1;
  // Prefill-only, no sampling and no prompt logprobs (max_new_tokens / logprob_start_len / params ignored):
  // the finishing event carries the logits row of the last prompt token (the first for an encoder model).
  // Required on a pooled model (ModelConfig::is_pooled): submit throws std::invalid_argument otherwise.
  bool pooled = false;
};

enum FinishReason : int32_t { kFinishNone = 0, kFinishStop = 1, kFinishLength = 2, kFinishAbort = 3 };

struct StepEvent {
  int64_t rid = 0;
  int32_t token = -1;  // -1 for an abort event without a token
  float logprob = 0.0f;
  int32_t finish = kFinishNone;
  int32_t matched_stop = -1;  // the eos / stop id that finished the request, else -1
  int32_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  // Output-token logprob extras (when params.return_logprob and a token was sampled).
  std::vector<std::pair<int32_t, float>> top_logprobs;  // [top_logprobs_num] (token, logprob), descending
  std::vector<float> token_ids_logprobs;                // [|token_ids_logprob|]
  // Prompt logprobs, on the request's first event (when logprob_start_len >= 0); raw log_softmax.
  // Entry j is prompt position input_logprob_start + j; position 0 has no logprob (NaN; token -1 rows).
  int32_t input_logprob_start = -1;
  std::vector<float> input_logprobs;                          // [n_pos] logprob of prompt[pos]
  std::vector<std::pair<int32_t, float>> input_top_logprobs;  // [n_pos * top_logprobs_num]
  std::vector<float> input_token_ids_logprobs;                // [n_pos * |token_ids_logprob|]
  // Pooled requests, on their finishing event (kFinishLength, token -1): the row, raw (no normalisation),
  // [ModelConfig::logits_width()]: the hidden state in embedding mode, the labels of a classifier.
  std::vector<float> embedding;
};

// Where the time of one step() went (microseconds), for the engine's overhead accounting.
struct StepTiming {
  // schedule: planning and building the launched step; forward: its launch plus the wait for the step
  // before it (overlap) or for itself; sample: reading the finished step's rows and emitting its events.
  double schedule_us = 0, forward_us = 0, sample_us = 0;
  int32_t batch_size = 0, num_tokens = 0;  // sequences and tokens of the step launched (0 when none)
};

class Scheduler {
 public:
  struct Stats {
    int32_t waiting = 0, running = 0, free_pages = 0, cached_pages = 0, live_pages = 0;
    int64_t total_retractions = 0;
    int64_t steps = 0;  // forwards run
  };

  Scheduler(Model& model, KvCache& kv, SchedulerConfig cfg, std::vector<int32_t> eos_ids);
  ~Scheduler();

  // Throws std::invalid_argument for a non-pooled request on a pooled model (nothing is queued).
  void submit(SchedRequest req);
  // Waiting: finished with an abort event at the next step; running: pages freed, abort event.
  void abort(int64_t rid);
  // At most one forward. Returns false when idle (nothing waiting, running or pending).
  bool step(std::vector<StepEvent>& out);
  // Refused (false) while requests wait or run.
  bool flush_cache();
  Stats stats() const;
  // Aborts everything (an abort event each into out) and returns every page to the pool.
  void close(std::vector<StepEvent>& out);
  const StepTiming& last_timing() const { return timing_; }
  // While paused, waiting requests stay waiting (running ones go on); used to drain before a weight swap.
  void set_admission_paused(bool paused) { admission_paused_ = paused; }
  // Swaps in a model of the same shape (update_weights_from_disk). Only with nothing running; the radix
  // cache is emptied (its KV came from the old weights); waiting requests stay queued.
  void replace_model(Model& model, std::vector<int32_t> eos_ids);
  // The expert distribution recorder fed with each recorded forward pass (null: none). Not owned.
  void set_expert_recorder(ExpertRecorder* r) { recorder_ = r; }

 private:
  struct Req {
    SchedRequest r;
    std::vector<int32_t> tokens;  // prompt + output
    int32_t prompt_len = 0;
    int32_t num_output = 0;
    SamplerState st;
    RadixCache::Node* node = nullptr;       // locked while running (nullptr when not)
    std::vector<int32_t> prefix_pages;      // tree-owned
    std::vector<int32_t> own_pages;         // allocated by this request
    int32_t kv_done = 0;                    // tokens with KV in the pages
    int32_t cached_tokens = -1;             // from the first admission
    int32_t lp_start = -1;                  // clamped logprob_start_len, -1 = no prompt logprobs
    bool first_event_sent = false;          // prompt logprobs travel on the first event
    bool finished = false;                  // set in the step that finishes it (then removed)
    bool pending = false;                   // its sampled token of the in-flight step is not appended yet
    bool pages_moved = false;               // cache_unfinished swapped its pages since it was planned
    std::vector<float> in_lp;               // prompt logprobs gathered so far (positions lp_start..)
    std::vector<std::pair<int32_t, float>> in_top;
    std::vector<float> in_ids;
    std::vector<float> pooled_row;          // pooled: its row, read at the step that computed it
  };
  using ReqPtr = std::unique_ptr<Req>;
  struct Planned {
    Req* q;
    int32_t n;  // tokens of q in this forward
  };
  struct Row {  // one logits row of the forward
    Req* q;
    int32_t position;  // token position whose next-token logits this is
    bool sample;       // sampling row (else a prompt-logprob or pooled row)
    bool pooled = false;  // a pooled request's row (copied whole into its event)
  };

  // One step's batch: its plan and the host arrays of its ForwardBatch.
  struct Batch {
    std::vector<Planned> plan;
    std::vector<int32_t> token_ids, qo, kv_indptr, pages, kv_lens, row_idx;
    std::vector<Row> rows;
  };
  enum class PlanResult { kOk, kRetracted, kNeedsDrain };

  void apply_aborts(std::vector<StepEvent>& out);
  // kRetracted when it retracted someone; kNeedsDrain (nothing retracted) when pages ran out and
  // may_retract is false (a step is in flight: its requests must not be retracted under it).
  PlanResult plan_running(int64_t& budget, std::vector<Planned>& plan, bool may_retract);
  int64_t step_budget() const;
  // Tokens of q known or pending (the in-flight step's sampled token counts before it is appended).
  int32_t effective_len(const Req& q) const { return int32_t(q.tokens.size()) + (q.pending ? 1 : 0); }
  void build_batch(Batch& b) const;         // the arrays from b.plan (token ids from the known tokens)
  void fill_token_ids(Batch& b) const;      // after the in-flight step's tokens are appended
  void launch(Batch& b);                    // sampling descriptors, Model::forward_launch; b becomes in-flight
  void finish_inflight(std::vector<StepEvent>& out);  // waits, reads the rows, appends, emits, finishes
  bool ends_all_work(const Batch& b) const;
  void admit_waiting(int64_t& budget, std::vector<Planned>& plan, std::vector<StepEvent>& out);
  void sort_waiting_lpm();
  bool wants_prompt_logprobs(const Req& q) const { return q.lp_start >= 0 && !q.first_event_sent; }
  int32_t match_limit(const Req& q) const;
  void reset_prompt_logprobs(Req& q);
  void attach_prompt_logprobs(Req& q, StepEvent& e);
  bool alloc_pages(int32_t n, std::vector<int32_t>& out);
  void release(Req& q, bool insert_into_cache);  // frees / hands over pages, unlocks
  void cache_unfinished(Req& q);                  // inserts the KV so far into the tree, keeps running
  void retract(Req& q);
  StepEvent make_event(const Req& q, int32_t token, float logprob, int32_t finish, int32_t matched) const;

  Model* model_;
  KvCache& kv_;
  SchedulerConfig cfg_;
  std::vector<int32_t> eos_ids_;
  PagePool pool_;
  RadixCache tree_;
  int32_t context_len_;
  int32_t vocab_;
  int32_t row_width_;  // of a logits row: ModelConfig::logits_width() (vocab for generation models)
  bool encoder_;       // ModelConfig::is_encoder: whole-prompt steps, no radix cache
  std::deque<ReqPtr> waiting_;
  std::vector<ReqPtr> running_;  // admission order
  std::unordered_set<int64_t> pending_aborts_;
  int64_t total_retractions_ = 0;
  std::vector<float> logits_;
  std::vector<uint8_t> argmax_only_;    // [R] per logits row of the step: reduced by the backend
  std::vector<int32_t> argmax_token_;   // [R]
  std::vector<float> argmax_logprob_;   // [R]
  std::vector<float> row_inv_temp_;     // [R] 1/T of the rows sampled by the backend, else 0
  std::vector<double> row_u_;           // [R] their uniforms
  // Rows sampled by Backend::sample_rows (argmax_only_ == kRowDeviceSample): their descriptors (host), in
  // row order, and the outputs forward() fills. dev_index_[i]: row i's index among them.
  struct DeviceRows {
    SampleRowsBatch in;                          // the rows' descriptors
    std::vector<int32_t> token, status, top_ids;
    std::vector<float> logprob, top_lps, ids_lps;
    SampleRowsParams params{};
  } dev_;
  std::vector<int32_t> dev_index_;
  Batch next_;      // being planned / launched
  Batch inflight_;  // launched, its results not read yet (when has_inflight_)
  bool has_inflight_ = false;
  double inflight_launch_us_ = 0;  // forward_launch time of the in-flight step
  double wait_us_ = 0, finish_us_ = 0;  // this step() call's forward_wait and finish_inflight times
  std::vector<ReqPtr> done_;       // finished this call, freed at its end
  StepTiming timing_;
  int64_t steps_ = 0;
  int64_t inflight_pass_ = 0;  // forward pass id (steps_ at its launch) of the in-flight step
  ExpertRecorder* recorder_ = nullptr;
  bool admission_paused_ = false;
};

}  // namespace sgl
