#include "engine/scheduler.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "cpu/thread_pool.h"
#include "engine/logprob_row.h"

namespace sgl {

namespace {
int32_t ceil_div(int32_t a, int32_t b) { return (a + b - 1) / b; }
bool contains(const std::vector<int32_t>& v, int32_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }
double elapsed_us(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
}  // namespace

Scheduler::Scheduler(Model& model, KvCache& kv, SchedulerConfig cfg, std::vector<int32_t> eos_ids)
    : model_(&model),
      kv_(kv),
      cfg_(cfg),
      eos_ids_(std::move(eos_ids)),
      pool_(kv.num_pages()),
      // An encoder's K/V depend on the whole sequence: nothing of it can be shared with another request.
      tree_(pool_, cfg.page_size, cfg.disable_radix_cache || model.config().is_encoder),
      context_len_(model.config().max_position_embeddings),
      vocab_(model.config().vocab_size),
      row_width_(model.config().logits_width()),
      encoder_(model.config().is_encoder) {
  if (cfg_.page_size != kv.page_size()) throw std::invalid_argument("Scheduler: page_size differs from the KV cache");
  if (cfg_.max_prefill_tokens <= 0) cfg_.max_prefill_tokens = INT32_MAX;
  if (cfg_.max_running_requests <= 0) cfg_.max_running_requests = INT32_MAX;
  // XLM-R positions start after padding_idx: a sequence may hold max_positions - padding_idx - 1 tokens.
  const ModelConfig& mc = model.config();
  if (encoder_ && mc.pad_token_id >= 0) context_len_ = std::max(1, context_len_ - int32_t(mc.pad_token_id));
}

Scheduler::~Scheduler() = default;

void Scheduler::submit(SchedRequest req) {
  if (model_->config().is_pooled() && !req.pooled)
    throw std::invalid_argument(model_->config().architecture + " is a pooled model: only pooled requests run on it");
  if (req.pooled) {  // prefill-only, one row back: no token, no prompt logprobs
    req.max_new_tokens = 0;
    req.logprob_start_len = -1;
  }
  auto q = std::make_unique<Req>();
  q->r = std::move(req);
  q->r.params.stop_token_ids = q->r.stop_token_ids;  // masked by the sampler during min_new_tokens
  q->r.params.ignore_eos = q->r.ignore_eos;
  q->tokens = q->r.prompt;
  q->prompt_len = int32_t(q->r.prompt.size());
  if (q->r.logprob_start_len >= 0 && q->prompt_len > 0)
    q->lp_start = std::min(q->r.logprob_start_len, q->prompt_len - 1);
  reset_prompt_logprobs(*q);
  sampler_state_init(q->st, q->r.params, q->r.prompt.data(), q->r.prompt.size(), eos_ids_);
  waiting_.push_back(std::move(q));
}

void Scheduler::abort(int64_t rid) { pending_aborts_.insert(rid); }

StepEvent Scheduler::make_event(const Req& q, int32_t token, float logprob, int32_t finish, int32_t matched) const {
  StepEvent e;
  e.rid = q.r.rid;
  e.token = token;
  e.logprob = logprob;
  e.finish = finish;
  e.matched_stop = matched;
  e.prompt_tokens = q.prompt_len;
  e.completion_tokens = q.num_output;
  e.cached_tokens = std::max(0, q.cached_tokens);
  return e;
}

// Prompt logprobs: position 0 has none (SGLang reports None there), so its entries are NaN placeholders.
void Scheduler::reset_prompt_logprobs(Req& q) {
  q.in_lp.clear();
  q.in_top.clear();
  q.in_ids.clear();
  if (q.lp_start != 0) return;
  q.in_lp.push_back(kNaN);
  q.in_top.assign(size_t(std::max(0, q.r.params.top_logprobs_num)), {-1, kNaN});
  q.in_ids.assign(q.r.params.token_ids_logprob.size(), kNaN);
}

void Scheduler::attach_prompt_logprobs(Req& q, StepEvent& e) {
  if (q.first_event_sent) return;
  q.first_event_sent = true;
  if (q.lp_start < 0) return;
  e.input_logprob_start = q.lp_start;
  e.input_logprobs = std::move(q.in_lp);
  e.input_top_logprobs = std::move(q.in_top);
  e.input_token_ids_logprobs = std::move(q.in_ids);
  q.in_lp.clear();
  q.in_top.clear();
  q.in_ids.clear();
}

// Prompt tokens whose KV may come from the cache. Positions whose logprobs are wanted must be recomputed
// (the logits row of position p - 1 gives position p), as SGLang limits its prefix match.
int32_t Scheduler::match_limit(const Req& q) const {
  const int32_t len = int32_t(q.tokens.size());
  if (!wants_prompt_logprobs(q)) return len - 1;
  return std::min(len - 1, std::max(q.lp_start - 1, 0));
}

bool Scheduler::alloc_pages(int32_t n, std::vector<int32_t>& out) {
  if (n <= 0) return true;
  if (pool_.available() < n) tree_.evict(n - pool_.available());
  return pool_.alloc(n, out);
}

void Scheduler::release(Req& q, bool insert_into_cache) {
  const int32_t P = cfg_.page_size;
  if (insert_into_cache && !tree_.disabled() && q.kv_done > 0) {
    std::vector<int32_t> pages = q.prefix_pages;
    pages.insert(pages.end(), q.own_pages.begin(), q.own_pages.end());
    size_t ret = tree_.insert(q.tokens.data(), size_t(q.kv_done), pages.data());
    const size_t pre = q.prefix_pages.size(), dup_end = ret / P, full = size_t(q.kv_done / P);
    std::vector<int32_t> to_free;
    for (size_t i = pre; i < dup_end && i < pages.size(); ++i) to_free.push_back(pages[i]);  // already cached
    for (size_t i = std::max(full, pre); i < pages.size(); ++i) to_free.push_back(pages[i]);  // partial tail
    if (!to_free.empty()) pool_.free(to_free);
  } else {
    if (!q.own_pages.empty()) pool_.free(q.own_pages);
  }
  q.own_pages.clear();
  q.prefix_pages.clear();
  if (q.node) tree_.unlock(q.node);
  q.node = nullptr;
  q.kv_done = 0;
}

// SGLang's cache_unfinished_req: after a prefill chunk, the full pages computed so far go into the tree, so
// requests admitted later (parallel samples, shared system prompts) reuse them while this one still runs.
void Scheduler::cache_unfinished(Req& q) {
  const int32_t P = cfg_.page_size;
  const size_t full = size_t(q.kv_done / P), pre = q.prefix_pages.size();
  if (tree_.disabled() || full <= pre) return;
  std::vector<int32_t> pages = q.prefix_pages;
  pages.insert(pages.end(), q.own_pages.begin(), q.own_pages.end());
  const size_t dup_end = tree_.insert(q.tokens.data(), full * P, pages.data()) / P;
  auto m = tree_.match_prefix(q.tokens.data(), full * P);
  std::vector<int32_t> dups;  // ours, but another request cached the same tokens first: use the tree's
  for (size_t i = pre; i < dup_end; ++i) dups.push_back(pages[i]);
  if (!dups.empty()) pool_.free(dups);
  tree_.lock(m.last_node);
  if (q.node) tree_.unlock(q.node);
  q.node = m.last_node;
  q.prefix_pages = std::move(m.pages);
  q.own_pages.assign(pages.begin() + long(full), pages.end());
  q.pages_moved = true;
}

void Scheduler::retract(Req& q) {
  release(q, false);
  if (!q.first_event_sent) reset_prompt_logprobs(q);
  ++total_retractions_;
}

void Scheduler::apply_aborts(std::vector<StepEvent>& out) {
  if (pending_aborts_.empty()) return;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (pending_aborts_.count((*it)->r.rid)) {
      out.push_back(make_event(**it, -1, 0.0f, kFinishAbort, -1));
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = running_.begin(); it != running_.end();) {
    if (pending_aborts_.count((*it)->r.rid)) {
      release(**it, false);
      out.push_back(make_event(**it, -1, 0.0f, kFinishAbort, -1));
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
  pending_aborts_.clear();
}

// Running requests, in admission order: a decode token each, or their next prefill chunk. A decode token
// (the last output token fed back) is not charged to the step's prefill budget; prompt tokens always are,
// the one-token tail of a chunked prompt included (else it rides along outside the budget and the step
// exceeds chunked_prefill_size). When pages run out, the most recently admitted request goes back to the
// front of the queue (possibly the one at hand). A request whose pending token (in the in-flight step) ends
// it by length is not planned again.
Scheduler::PlanResult Scheduler::plan_running(int64_t& budget, std::vector<Planned>& plan, bool may_retract) {
  const int32_t P = cfg_.page_size;
  bool retracted = false;
  for (size_t i = 0; i < running_.size(); ++i) {
    Req& q = *running_[i];
    const int32_t len = effective_len(q);
    if (q.pending && (q.num_output + 1 >= q.r.max_new_tokens || len >= context_len_)) continue;
    const int32_t remaining = len - q.kv_done;
    const bool decode = remaining == 1 && q.kv_done >= q.prompt_len;
    const int32_t n = decode ? 1 : int32_t(std::min<int64_t>(remaining, budget));
    if (n <= 0) continue;
    bool ok = false;
    while (true) {
      const int32_t need = ceil_div(q.kv_done + n, P) - int32_t(q.prefix_pages.size() + q.own_pages.size());
      if (alloc_pages(need, q.own_pages)) {
        ok = true;
        break;
      }
      if (!may_retract) return PlanResult::kNeedsDrain;
      Req& victim = *running_.back();
      retract(victim);
      retracted = true;
      waiting_.push_front(std::move(running_.back()));
      running_.pop_back();
      if (&victim == &q) break;
    }
    if (!ok) break;
    if (!decode) budget -= n;
    plan.push_back({&q, n});
  }
  return retracted ? PlanResult::kRetracted : PlanResult::kOk;
}

int64_t Scheduler::step_budget() const {
  int64_t budget = cfg_.max_prefill_tokens;
  if (cfg_.chunked_prefill_size > 0) budget = std::min<int64_t>(budget, cfg_.chunked_prefill_size);
  return budget;
}

void Scheduler::sort_waiting_lpm() {
  std::vector<std::pair<size_t, size_t>> keyed;  // (matched, index)
  for (size_t i = 0; i < waiting_.size(); ++i) {
    const Req& q = *waiting_[i];
    auto m = tree_.match_prefix(q.tokens.data(), size_t(std::max(0, match_limit(q))));
    keyed.emplace_back(m.matched_tokens, i);
  }
  std::stable_sort(keyed.begin(), keyed.end(), [](auto& a, auto& b) { return a.first > b.first; });
  std::deque<ReqPtr> sorted;
  for (auto& k : keyed) sorted.push_back(std::move(waiting_[k.second]));
  waiting_.swap(sorted);
}

void Scheduler::admit_waiting(int64_t& budget, std::vector<Planned>& plan, std::vector<StepEvent>& out) {
  const int32_t P = cfg_.page_size;
  if (cfg_.policy == SchedulerConfig::LPM && !tree_.disabled() && waiting_.size() > 1) sort_waiting_lpm();
  while (!waiting_.empty() && int32_t(running_.size()) < cfg_.max_running_requests && budget > 0) {
    Req& q = *waiting_.front();
    const int32_t len = int32_t(q.tokens.size());
    if (len == 0 || len >= context_len_) {  // the front end rejects these; never run them
      out.push_back(make_event(q, -1, 0.0f, kFinishAbort, -1));
      waiting_.pop_front();
      continue;
    }
    // An encoder request is never chunked: the whole prompt in this step, within the remaining budget unless
    // it is the step's first sequence (then whatever its length). Later requests wait for another step.
    if (encoder_ && len > budget && !plan.empty()) break;
    auto m = tree_.match_prefix(q.tokens.data(), size_t(match_limit(q)));  // (disabled for encoders)
    tree_.lock(m.last_node);
    const int32_t matched = int32_t(m.matched_tokens);
    const int32_t n = encoder_ ? len : int32_t(std::min<int64_t>(len - matched, budget));
    const int32_t need = ceil_div(matched + n, P) - int32_t(m.pages.size());
    std::vector<int32_t> own;
    if (!alloc_pages(need, own)) {
      tree_.unlock(m.last_node);
      if (running_.empty() && plan.empty()) {  // cannot fit even alone: give up on it
        out.push_back(make_event(q, -1, 0.0f, kFinishAbort, -1));
        waiting_.pop_front();
        continue;
      }
      break;
    }
    q.node = m.last_node;
    q.prefix_pages = std::move(m.pages);
    q.own_pages = std::move(own);
    q.kv_done = matched;
    if (q.cached_tokens < 0) q.cached_tokens = matched;
    budget -= n;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    plan.push_back({running_.back().get(), n});
  }
}

bool Scheduler::step(std::vector<StepEvent>& out) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const size_t out0 = out.size();
  timing_ = StepTiming{};
  wait_us_ = finish_us_ = 0;
  // An abort frees its request: none may be in flight then.
  if (!pending_aborts_.empty() && has_inflight_) finish_inflight(out);
  apply_aborts(out);
  if (!has_inflight_ && waiting_.empty() && running_.empty()) return out.size() > out0;

  // Plan and build the next step (with overlap, while the in-flight one runs on the device).
  Batch& b = next_;
  b.plan.clear();
  int64_t budget = step_budget();
  PlanResult pr = plan_running(budget, b.plan, !has_inflight_);
  if (pr == PlanResult::kNeedsDrain) {  // pages ran out: finish the in-flight step, then plan as without overlap
    finish_inflight(out);
    b.plan.clear();
    budget = step_budget();
    pr = plan_running(budget, b.plan, true);
  }
  // After a retraction the pool is short: admit nobody this step.
  if (pr == PlanResult::kOk && !waiting_.empty() && !admission_paused_) admit_waiting(budget, b.plan, out);
  build_batch(b);

  if (has_inflight_) {
    // The in-flight step's tokens, then the planned step patched with them: requests that finished drop
    // out, and a request whose pages moved into the tree (cache_unfinished) needs its page table rebuilt.
    finish_inflight(out);
    bool rebuild = false;
    for (const Planned& pl : b.plan) rebuild = rebuild || pl.q->finished || pl.q->pages_moved;
    if (rebuild) {
      b.plan.erase(std::remove_if(b.plan.begin(), b.plan.end(), [](const Planned& pl) { return pl.q->finished; }),
                   b.plan.end());
      build_batch(b);
    } else {
      fill_token_ids(b);
    }
  }
  bool busy = out.size() > out0 || !waiting_.empty() || !running_.empty();
  if (!b.plan.empty()) {
    launch(b);
    // With overlap the launched step is read in the next call, while that call's step runs. When there is no
    // next step (nobody waits and every running request is pooled and ends in this one: a lone /encode),
    // that only delays the result by a loop iteration and a hand-off to JS: read it now.
    if (!cfg_.overlap || ends_all_work(inflight_)) finish_inflight(out);
    busy = true;
  }
  done_.clear();  // requests finished this call: no batch refers to them any more
  timing_.forward_us = inflight_launch_us_ + wait_us_;
  timing_.sample_us = finish_us_ - wait_us_;
  timing_.schedule_us = std::max(0.0, elapsed_us(t0, clock::now()) - timing_.forward_us - timing_.sample_us);
  if (!cfg_.overlap || !has_inflight_) inflight_launch_us_ = 0;
  return busy || has_inflight_;
}

// Whether the batch (just launched) finishes everything the scheduler holds: nobody waits, and each running
// request is pooled with its row in the batch (a pooled request ends at its row).
bool Scheduler::ends_all_work(const Batch& b) const {
  if (!waiting_.empty()) return false;
  size_t pooled_rows = 0;
  for (const Row& r : b.rows) pooled_rows += r.pooled ? 1 : 0;
  return pooled_rows == running_.size();
}

// The ForwardBatch arrays of b.plan: each planned request's next n tokens; logits rows for sampling and
// prompt logprobs. Token ids not known yet (a pending token) are written as 0 until fill_token_ids.
void Scheduler::build_batch(Batch& b) const {
  const int32_t P = cfg_.page_size;
  b.token_ids.clear();
  b.qo.assign(1, 0);
  b.kv_indptr.assign(1, 0);
  b.pages.clear();
  b.kv_lens.clear();
  b.row_idx.clear();
  b.rows.clear();
  for (auto& [q, n] : b.plan) {
    q->pages_moved = false;
    const int32_t base = int32_t(b.token_ids.size());
    for (int32_t i = q->kv_done; i < q->kv_done + n; ++i)
      b.token_ids.push_back(i < int32_t(q->tokens.size()) ? q->tokens[size_t(i)] : 0);
    b.qo.push_back(int32_t(b.token_ids.size()));
    const int32_t kvlen = q->kv_done + n;
    const int32_t np = ceil_div(kvlen, P);
    for (int32_t p = 0; p < np; ++p)
      b.pages.push_back(p < int32_t(q->prefix_pages.size()) ? q->prefix_pages[size_t(p)]
                                                            : q->own_pages[size_t(p) - q->prefix_pages.size()]);
    b.kv_indptr.push_back(int32_t(b.pages.size()));
    b.kv_lens.push_back(kvlen);
    if (wants_prompt_logprobs(*q)) {
      const int32_t first = std::max(q->kv_done, std::max(q->lp_start, 1) - 1);
      const int32_t last = std::min(kvlen, q->prompt_len - 1);  // exclusive
      for (int32_t p = first; p < last; ++p) {
        b.row_idx.push_back(base + p - q->kv_done);
        b.rows.push_back({q, p, false});
      }
    }
    if (kvlen == effective_len(*q) && q->r.max_new_tokens > 0) {
      b.row_idx.push_back(int32_t(b.token_ids.size()) - 1);
      b.rows.push_back({q, kvlen - 1, true});
    }
    if (q->r.pooled && kvlen == q->prompt_len) {  // its last prompt token (an encoder's first: <s> / CLS)
      const int32_t p = encoder_ ? 0 : kvlen - 1;
      b.row_idx.push_back(base + p - q->kv_done);
      b.rows.push_back({q, p, false, true});
    }
  }
}

void Scheduler::fill_token_ids(Batch& b) const {
  size_t t = 0;
  for (auto& [q, n] : b.plan)
    for (int32_t i = q->kv_done; i < q->kv_done + n; ++i) b.token_ids[t++] = q->tokens[size_t(i)];
}

// The sampling descriptors of b's rows, then the forward launched; b becomes the in-flight step.
void Scheduler::launch(Batch& b) {
  const std::vector<Row>& rows = b.rows;
  ForwardBatch fb;
  fb.B = int32_t(b.plan.size());
  fb.T = int32_t(b.token_ids.size());
  fb.R = int32_t(b.row_idx.size());
  fb.token_ids = b.token_ids.data();
  fb.qo_indptr = b.qo.data();
  fb.kv_indptr = b.kv_indptr.data();
  fb.kv_page_indices = b.pages.data();
  fb.kv_lens = b.kv_lens.data();
  fb.logit_rows = b.row_idx.data();
  logits_.resize(size_t(std::max(1, fb.R)) * size_t(row_width_));
  // Plain greedy and plain (whole-vocabulary) sampling rows are finished by the backend where the logits
  // are: no [V] row comes back. A sampled row's uniform is drawn here, from its own stream, as sample_row
  // would draw it.
  argmax_only_.assign(rows.size(), 0);
  argmax_token_.resize(rows.size());
  argmax_logprob_.resize(rows.size());
  row_inv_temp_.assign(rows.size(), 0.0f);
  row_u_.assign(rows.size(), 0.0);
  // Every other sampling row is finished by the backend's sample_rows where it has one (not the CPU's),
  // unless it asks for more top logprobs than the kernel returns: its penalties go as sparse edits, its
  // uniform is drawn here as sample_row would draw it (non-greedy rows; undone if the row turns out to be
  // all -inf, where sample_row draws none).
  const bool dev_ok = model_->can_sample_rows();
  DeviceRows& dv = dev_;
  dv.in.clear();
  dev_index_.assign(rows.size(), -1);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!rows[i].sample) continue;
    Req& q = *rows[i].q;
    const SamplingParams& sp = q.r.params;
    if (is_plain_greedy(sp, q.st)) {
      argmax_only_[i] = kRowArgmax;
    } else if (is_plain_sample(sp, q.st, vocab_)) {
      argmax_only_[i] = kRowArgmax;
      row_inv_temp_[i] = 1.0f / sp.temperature;
      row_u_[i] = sampler_draw_uniform(q.st);
    } else if (dev_ok && std::min(std::max(sp.top_logprobs_num, 0), vocab_) <= kSampleMaxTopN) {
      argmax_only_[i] = kRowDeviceSample;
      dev_index_[i] = dv.in.size();
      dv.in.add(int32_t(i), sp, q.st, vocab_);
    }
  }
  const size_t n_dev = size_t(dv.in.size());
  dv.token.assign(n_dev, 0);
  dv.status.assign(n_dev, 0);
  dv.logprob.assign(n_dev, 0.0f);
  dv.top_ids.assign(n_dev * kSampleMaxTopN, -1);
  dv.top_lps.assign(n_dev * kSampleMaxTopN, 0.0f);
  dv.ids_lps.assign(dv.in.ids.size(), 0.0f);
  SampleRowsParams& sr = dv.params;
  sr = SampleRowsParams{};
  dv.in.fill_inputs(sr, vocab_);
  sr.token = dv.token.data();
  sr.logprob = dv.logprob.data();
  sr.status = dv.status.data();
  sr.top_ids = dv.top_ids.data();
  sr.top_lps = dv.top_lps.data();
  sr.ids_lps = dv.ids_lps.data();
  LogitsOut lo;
  lo.sample = n_dev ? &sr : nullptr;
  lo.logits = logits_.data();
  lo.argmax_only = argmax_only_.data();
  lo.token = argmax_token_.data();
  lo.logprob = argmax_logprob_.data();
  lo.inv_temp = row_inv_temp_.data();
  lo.u = row_u_.data();
  using clock = std::chrono::steady_clock;
  const auto t1 = clock::now();
  model_->set_expert_recording(recorder_ ? recorder_->level() : 0);
  model_->forward_launch(fb, kv_, lo);
  inflight_pass_ = steps_;
  inflight_launch_us_ = elapsed_us(t1, clock::now());
  for (auto& [q, n] : b.plan) q->kv_done += n;
  for (const Row& r : rows)
    if (r.sample) r.q->pending = true;
  ++steps_;
  std::swap(inflight_, b);
  has_inflight_ = true;
  timing_.batch_size = fb.B;
  timing_.num_tokens = fb.T;
}

// Waits for the in-flight step, reads its rows, appends the sampled tokens, emits its events and finishes
// requests (their Req objects wait in done_ until the end of step(): the next batch may still name them).
void Scheduler::finish_inflight(std::vector<StepEvent>& out) {
  if (!has_inflight_) return;
  has_inflight_ = false;
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  model_->forward_wait();
  if (recorder_) {
    ExpertPass pass;
    if (model_->take_expert_pass(pass)) recorder_->add(pass, inflight_pass_);
  }
  wait_us_ += elapsed_us(t0, clock::now());
  const std::vector<Row>& rows = inflight_.rows;
  const std::vector<Planned>& plan = inflight_.plan;
  for (const Row& r : rows)
    if (r.sample) r.q->pending = false;

  // Read the rows: each row independently (sampling touches only its own request's state; a request has
  // at most one sampling row per step), in parallel when the rows are big enough to pay for the dispatch.
  struct RowOut {
    SampleOutput so;
    float lp = 0.0f;  // prompt-logprob rows
    std::vector<std::pair<int32_t, float>> top;
    std::vector<float> ids;
  };
  std::vector<RowOut> row_out(rows.size());
  auto read_row = [&](int64_t i) {
    if (rows[size_t(i)].pooled) return;  // copied whole below
    Req& q = *rows[size_t(i)].q;
    float* row = logits_.data() + size_t(i) * size_t(row_width_);
    RowOut& o = row_out[size_t(i)];
    if (argmax_only_[size_t(i)] == kRowDeviceSample) {
      // what sample_row would have returned (SampleOutput fresh: logprob 0 where it sets none)
      const int32_t j = dev_index_[size_t(i)];
      const SamplingParams& sp = q.r.params;
      const bool greedy = dev_.in.top_k[size_t(j)] == 1;
      o.so.token = dev_.token[size_t(j)];
      o.so.top_logprobs.clear();
      o.so.token_ids_logprobs.clear();
      if (dev_.status[size_t(j)]) {  // every logit NaN / -inf (the uniform drawn goes unused, as in sample_row)
        o.so.logprob = greedy && !sp.return_logprob ? 0.0f : kLogprobFloor;
      } else {
        o.so.logprob = sp.return_logprob ? dev_.logprob[size_t(j)] : 0.0f;
        if (sp.return_logprob) {
          const size_t base = size_t(j) * kSampleMaxTopN;
          for (int32_t k = 0; k < dev_.in.top_n[size_t(j)]; ++k)
            o.so.top_logprobs.emplace_back(dev_.top_ids[base + size_t(k)], dev_.top_lps[base + size_t(k)]);
          o.so.token_ids_logprobs.assign(dev_.ids_lps.begin() + dev_.in.ids_indptr[size_t(j)],
                                         dev_.ids_lps.begin() + dev_.in.ids_indptr[size_t(j) + 1]);
        }
      }
    } else if (argmax_only_[size_t(i)]) {
      o.so.token = argmax_token_[size_t(i)];
      o.so.logprob = argmax_logprob_[size_t(i)];
      o.so.top_logprobs.clear();
      o.so.token_ids_logprobs.clear();
    } else if (rows[size_t(i)].sample) {
      sample_row(row, vocab_, q.r.params, q.st, o.so);
    } else {
      thread_local std::vector<float> scratch;
      LogprobRowRequest lr{q.tokens[size_t(rows[size_t(i)].position) + 1], q.r.params.top_logprobs_num,
                           &q.r.params.token_ids_logprob};
      o.lp = logprob_row_read(row, vocab_, lr, scratch, o.top, o.ids);
    }
  };
  if (rows.size() > 1 && int64_t(rows.size()) * row_width_ >= (int64_t(1) << 18))
    cpu_pool().parallel_for_dynamic(int64_t(rows.size()), read_row);
  else
    for (size_t i = 0; i < rows.size(); ++i) read_row(int64_t(i));

  // Then, in row order: gather prompt logprobs, append sampled tokens, check finishes, emit events.
  std::vector<Req*> finished;
  out.reserve(out.size() + rows.size() + plan.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    Req& q = *rows[i].q;
    RowOut& o = row_out[i];
    if (rows[i].pooled) {
      const float* row = logits_.data() + i * size_t(row_width_);
      q.pooled_row.assign(row, row + row_width_);
      continue;
    }
    if (!rows[i].sample) {
      q.in_lp.push_back(o.lp);
      q.in_top.insert(q.in_top.end(), o.top.begin(), o.top.end());
      q.in_ids.insert(q.in_ids.end(), o.ids.begin(), o.ids.end());
      continue;
    }
    const int32_t tok = o.so.token;
    sampler_state_append(q.st, tok);
    q.tokens.push_back(tok);
    q.num_output++;
    int32_t finish = kFinishNone, matched = -1;
    if (!q.r.ignore_eos && (contains(eos_ids_, tok) || contains(q.r.stop_token_ids, tok))) {
      finish = kFinishStop;
      matched = tok;
    } else if (q.num_output >= q.r.max_new_tokens || int32_t(q.tokens.size()) >= context_len_) {
      finish = kFinishLength;
    }
    StepEvent e = make_event(q, tok, o.so.logprob, finish, matched);
    e.top_logprobs = std::move(o.so.top_logprobs);
    e.token_ids_logprobs = std::move(o.so.token_ids_logprobs);
    attach_prompt_logprobs(q, e);
    out.push_back(std::move(e));
    if (finish != kFinishNone) q.finished = true, finished.push_back(&q);
  }
  for (auto& [q, n] : plan) {
    const bool prefill_done = q->kv_done == int32_t(q->tokens.size());
    if (q->r.max_new_tokens == 0 && prefill_done) {  // prefill only: cached, reported, done
      StepEvent e = make_event(*q, -1, 0.0f, kFinishLength, -1);
      attach_prompt_logprobs(*q, e);
      if (q->r.pooled) e.embedding = std::move(q->pooled_row);
      out.push_back(std::move(e));
      q->finished = true;
      finished.push_back(q);
    } else if (n > 1 && !q->finished) {
      cache_unfinished(*q);
    }
  }
  for (Req* q : finished) release(*q, true);
  if (!finished.empty()) {
    for (ReqPtr& p : running_)
      if (p->finished) done_.push_back(std::move(p));
    running_.erase(std::remove(running_.begin(), running_.end(), nullptr), running_.end());
  }
  finish_us_ += elapsed_us(t0, clock::now());
}

void Scheduler::replace_model(Model& model, std::vector<int32_t> eos_ids) {
  if (!running_.empty()) throw std::logic_error("replace_model with requests running");
  tree_.flush();
  model_ = &model;
  eos_ids_ = std::move(eos_ids);
  vocab_ = model.config().vocab_size;
  row_width_ = model.config().logits_width();
}

bool Scheduler::flush_cache() {
  if (!waiting_.empty() || !running_.empty()) return false;
  return tree_.flush();
}

Scheduler::Stats Scheduler::stats() const {
  Stats s;
  s.waiting = int32_t(waiting_.size());
  s.running = int32_t(running_.size());
  s.free_pages = pool_.available();
  s.cached_pages = int32_t(tree_.total_cached_pages());
  for (auto& q : running_) s.live_pages += int32_t(q->own_pages.size());
  s.total_retractions = total_retractions_;
  s.steps = steps_;
  return s;
}

void Scheduler::close(std::vector<StepEvent>& out) {
  if (has_inflight_) {  // its tokens are real: emit them, then abort what is left
    try {
      finish_inflight(out);
    } catch (...) {  // (the step that failed): nothing of it to read
      has_inflight_ = false;
      for (const Row& r : inflight_.rows) r.q->pending = false;
    }
  }
  done_.clear();
  for (auto& q : running_) {
    release(*q, false);
    out.push_back(make_event(*q, -1, 0.0f, kFinishAbort, -1));
  }
  running_.clear();
  for (auto& q : waiting_) out.push_back(make_event(*q, -1, 0.0f, kFinishAbort, -1));
  waiting_.clear();
  pending_aborts_.clear();
  tree_.flush();
}

}  // namespace sgl
