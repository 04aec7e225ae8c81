#include "engine/scheduler.h"

#include <algorithm>
#include <climits>
#include <stdexcept>

namespace sgl {

namespace {
int32_t ceil_div(int32_t a, int32_t b) { return (a + b - 1) / b; }
bool contains(const std::vector<int32_t>& v, int32_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }
}  // namespace

Scheduler::Scheduler(Model& model, KvCache& kv, SchedulerConfig cfg, std::vector<int32_t> eos_ids)
    : model_(model),
      kv_(kv),
      cfg_(cfg),
      eos_ids_(std::move(eos_ids)),
      pool_(kv.num_pages()),
      tree_(pool_, cfg.page_size, cfg.disable_radix_cache),
      context_len_(model.config().max_position_embeddings),
      vocab_(model.config().vocab_size) {
  if (cfg_.page_size != kv.page_size()) throw std::invalid_argument("Scheduler: page_size differs from the KV cache");
  if (cfg_.max_prefill_tokens <= 0) cfg_.max_prefill_tokens = INT32_MAX;
  if (cfg_.max_running_requests <= 0) cfg_.max_running_requests = INT32_MAX;
}

Scheduler::~Scheduler() = default;

void Scheduler::submit(SchedRequest req) {
  auto q = std::make_unique<Req>();
  q->r = std::move(req);
  q->r.params.stop_token_ids = q->r.stop_token_ids;  // masked by the sampler during min_new_tokens
  q->r.params.ignore_eos = q->r.ignore_eos;
  q->tokens = q->r.prompt;
  q->prompt_len = int32_t(q->r.prompt.size());
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

void Scheduler::retract(Req& q) {
  release(q, false);
  ++total_retractions_;
}

bool Scheduler::step(std::vector<StepEvent>& out) {
  const int32_t P = cfg_.page_size;
  const size_t out0 = out.size();
  // (0) aborts
  if (!pending_aborts_.empty()) {
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
  if (waiting_.empty() && running_.empty()) return out.size() > out0;

  int64_t budget = cfg_.max_prefill_tokens;
  if (cfg_.chunked_prefill_size > 0) budget = std::min<int64_t>(budget, cfg_.chunked_prefill_size);

  // (1) plan running requests (admission order); retract the newest when pages run out
  std::vector<std::pair<Req*, int32_t>> plan;
  bool retracted = false;
  for (size_t i = 0; i < running_.size(); ++i) {
    Req& q = *running_[i];
    const int32_t remaining = int32_t(q.tokens.size()) - q.kv_done;
    int32_t n = remaining <= 1 ? remaining : int32_t(std::min<int64_t>(remaining, budget));
    if (n <= 0) continue;
    bool ok = false;
    while (true) {
      const int32_t need = ceil_div(q.kv_done + n, P) - int32_t(q.prefix_pages.size() + q.own_pages.size());
      if (alloc_pages(need, q.own_pages)) { ok = true; break; }
      // retract the most recently admitted running request (the last one; possibly q itself)
      Req& victim = *running_.back();
      retract(victim);
      retracted = true;
      ReqPtr v = std::move(running_.back());
      running_.pop_back();
      waiting_.push_front(std::move(v));
      if (&victim == &q) break;
    }
    if (!ok) break;
    if (remaining > 1) budget -= n;
    plan.emplace_back(&q, n);
  }

  // (2) admit waiting requests
  if (!retracted && !waiting_.empty()) {
    if (cfg_.policy == SchedulerConfig::LPM && !tree_.disabled() && waiting_.size() > 1) {
      std::vector<std::pair<size_t, size_t>> keyed;  // (matched, index)
      for (size_t i = 0; i < waiting_.size(); ++i) {
        const Req& q = *waiting_[i];
        auto m = tree_.match_prefix(q.tokens.data(), q.tokens.size() - 1);
        keyed.emplace_back(m.matched_tokens, i);
      }
      std::stable_sort(keyed.begin(), keyed.end(), [](auto& a, auto& b) { return a.first > b.first; });
      std::deque<ReqPtr> sorted;
      for (auto& k : keyed) sorted.push_back(std::move(waiting_[k.second]));
      waiting_.swap(sorted);
    }
    while (!waiting_.empty() && int32_t(running_.size()) < cfg_.max_running_requests && budget > 0) {
      Req& q = *waiting_.front();
      const int32_t len = int32_t(q.tokens.size());
      if (len == 0 || len >= context_len_) {  // empty or too long: cannot run
        out.push_back(make_event(q, -1, 0.0f, kFinishAbort, -1));
        waiting_.pop_front();
        continue;
      }
      auto m = tree_.match_prefix(q.tokens.data(), size_t(len - 1));
      tree_.lock(m.last_node);
      const int32_t matched = int32_t(m.matched_tokens);
      const int32_t n = int32_t(std::min<int64_t>(len - matched, budget));
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
      q.admit_seq = ++admit_counter_;
      budget -= n;
      running_.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
      plan.emplace_back(running_.back().get(), n);
    }
  }

  if (plan.empty()) return out.size() > out0 || !waiting_.empty() || !running_.empty();

  // (3) one forward
  std::vector<int32_t> token_ids, qo{0}, kv_indptr{0}, pages, kv_lens, rows;
  std::vector<Req*> row_req;
  for (auto& [q, n] : plan) {
    token_ids.insert(token_ids.end(), q->tokens.begin() + q->kv_done, q->tokens.begin() + q->kv_done + n);
    qo.push_back(int32_t(token_ids.size()));
    const int32_t kvlen = q->kv_done + n;
    const int32_t np = ceil_div(kvlen, P);
    for (int32_t p = 0; p < np; ++p)
      pages.push_back(p < int32_t(q->prefix_pages.size()) ? q->prefix_pages[p]
                                                          : q->own_pages[p - q->prefix_pages.size()]);
    kv_indptr.push_back(int32_t(pages.size()));
    kv_lens.push_back(kvlen);
    if (kvlen == int32_t(q->tokens.size())) {
      rows.push_back(int32_t(token_ids.size()) - 1);
      row_req.push_back(q);
    }
  }
  ForwardBatch fb;
  fb.B = int32_t(plan.size());
  fb.T = int32_t(token_ids.size());
  fb.R = int32_t(rows.size());
  fb.token_ids = token_ids.data();
  fb.qo_indptr = qo.data();
  fb.kv_indptr = kv_indptr.data();
  fb.kv_page_indices = pages.data();
  fb.kv_lens = kv_lens.data();
  fb.logit_rows = rows.data();
  logits_.resize(size_t(std::max(1, fb.R)) * vocab_);
  model_.forward(fb, kv_, logits_.data());
  for (auto& [q, n] : plan) q->kv_done += n;

  // (4) sample, finish
  std::unordered_set<Req*> finished;
  for (size_t i = 0; i < row_req.size(); ++i) {
    Req& q = *row_req[i];
    SampleOutput so;
    int32_t tok = sample_row(logits_.data() + i * size_t(vocab_), vocab_, q.r.params, q.st, so);
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
    out.push_back(make_event(q, tok, so.logprob, finish, matched));
    if (finish != kFinishNone) {
      release(q, true);
      finished.insert(&q);
    }
  }
  if (!finished.empty())
    running_.erase(std::remove_if(running_.begin(), running_.end(),
                                  [&](const ReqPtr& p) { return finished.count(p.get()) > 0; }),
                   running_.end());
  return true;
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
  return s;
}

void Scheduler::close(std::vector<StepEvent>& out) {
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
