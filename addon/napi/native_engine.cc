// NativeEngine: the engine thread, its command queue and the batched step callback (see native_engine.h).
//
// JS-visible behaviour:
//  * new NativeEngine(opts): every option is checked first (TypeError naming the field; all fields of
//    NativeEngineOptions except randomSeed are required); then the model is loaded on the CPU backend (a
//    load failure is an Error with the loader's message, which names the file or directory). randomSeed
//    seeds the process-wide seed source of requests without a seed (sampler_set_global_seed).
//    isEmbedding (default false) serves a causal LM in embedding mode (rows = final-norm hidden states);
//    sequence classifiers (num_labels > 0: reward models, the XLM-R cross-encoder) are pooled models whether
//    or not it is set.
//  * submit(req): the request is checked and converted on the JS thread (TypeError naming the field: wrong
//    type, non-integer / out-of-range number, token id outside [0, vocabSize), empty inputIds, logitBias
//    arrays of different lengths or only one of them given). After close() has begun: Error("engine is
//    closed"). Prompts the model cannot hold (>= contextLength tokens, or more pages than the pool) finish
//    with an abort event (finish 3), as the scheduler decides. pooled (default false) must match the model:
//    a non-pooled request on a pooled model, or a pooled one on a generation model, is an Error (nothing
//    queued). A pooled request finishes with one event (finish 2, token -1) whose embedding row is the
//    model's row of its last prompt token (an encoder's first), raw; its sampling fields are ignored.
//  * abort(rid): queued in order with the submits; unknown rids are ignored. No-op after close().
//  * flushCache(): resolves true when the radix cache was emptied, false while requests wait or run (also
//    while an abort is still pending: aborts take effect at the next step). Rejects (Error "engine is
//    closed") after close() has begun.
//  * expertRecord('start' | 'stop' | 'dump' | 'dump_reset'): with expertDistributionRecorderMode ('stat', 'stat_approx',
//    'per_pass', 'per_token'; expertDistributionRecorderBufferSize passes kept, default 1000, -1 all), runs
//    on the engine thread between steps: start clears the record and records, stop keeps it, both resolve
//    null; dump resolves {mode, recording, numLayers, numExperts, topK, numPasses, logicalCount [L*E],
//    passIds, passCounts [P*L*E], passTokens [P], topkIds} (addon/engine/expert_recorder.h); dump_reset resolves
//    the same and clears the record in the same gap between steps (recording stays on or off). Without a mode:
//    Error("expert distribution recording is off: ...") thrown synchronously.
//  * stats(): the snapshot the engine thread took after its last step or command batch; submits still in
//    the queue count as waiting. Still readable after close (then it shows the emptied pool).
//  * close(): requests still queued are submitted, then every live request ends with an abort event
//    (delivered through onStep before the promise resolves), every page is returned, the engine thread is
//    joined and the model freed. A second close() while closing resolves when the first does; after it,
//    immediately. info() after close throws Error("engine is closed").
//  * A fatal error in a step (a C++ exception) is delivered as {n: 0, error} and every live request is then
//    aborted (abort events in the next output); the engine keeps serving new requests afterwards.
//  * Event loop: the thread-safe function is referenced only while requests are live (submitted and not yet
//    finished) or a flushCache()/close() promise is pending, so an idle engine never keeps Node alive; the
//    JS object is kept from garbage collection for the same span. If it is collected while open, the
//    engine closes itself (no promise); at environment teardown the engine thread is stopped and joined.
//  * Engines in one process serialise their steps on a process-wide mutex (the CPU backend's thread pool
//    is single-caller). NativeModel.forward on the JS thread must not run concurrently with an engine step.
#include "napi/native_engine.h"

#include <chrono>
#include <cmath>
#include <atomic>
#include <cstdlib>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "cpu/thread_pool.h"
#include "engine/expert_recorder.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "kv/kv_cache.h"
#include "model/model_config.h"
#include "model/safetensors.h"
#include "models/model.h"
#include "napi/backend_select.h"
#include "napi/model_info.h"
#include "napi/napi_util.h"

namespace sgl {
namespace {

constexpr double kMaxSafeInteger = 9007199254740991.0;  // Number.MAX_SAFE_INTEGER

// One engine step (or command batch) at a time per process: the CPU thread pool has a single caller and the
// sampler's global seed source is unsynchronised.
std::mutex g_step_mu;

// ---------------------------------------------------------------------------------------------------------
// Argument checks (TypeError naming the field)

[[noreturn]] void type_error(const Napi::Env& env, const std::string& key, const std::string& what) {
  throw Napi::TypeError::New(env, key + " " + what);
}

Napi::Value required(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) type_error(o.Env(), key, "is required");
  return v;
}

double number_field(const Napi::Object& o, const char* key) {
  Napi::Value v = required(o, key);
  if (!v.IsNumber()) type_error(o.Env(), key, "must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) type_error(o.Env(), key, "must be a finite number");
  return d;
}

int64_t int_value(const Napi::Env& env, const Napi::Value& v, const char* key, double lo, double hi) {
  if (!v.IsNumber()) type_error(env, key, "must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d) type_error(env, key, "must be an integer");
  if (d < lo || d > hi) {
    char buf[128];
    if (hi >= kMaxSafeInteger)
      std::snprintf(buf, sizeof buf, "must be an integer >= %.0f", lo);
    else
      std::snprintf(buf, sizeof buf, "must be an integer in [%.0f, %.0f]", lo, hi);
    type_error(env, key, buf);
  }
  return int64_t(d);
}

int64_t int_field(const Napi::Object& o, const char* key, double lo, double hi) {
  return int_value(o.Env(), required(o, key), key, lo, hi);
}

bool bool_field(const Napi::Object& o, const char* key) {
  Napi::Value v = required(o, key);
  if (!v.IsBoolean()) type_error(o.Env(), key, "must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

bool absent(const Napi::Value& v) { return v.IsUndefined() || v.IsNull(); }

// An Int32Array of token ids, each in [0, vocab).
std::vector<int32_t> token_ids_field(const Napi::Object& o, const char* key, int32_t vocab) {
  Napi::Int32Array a = prop_i32(o, key);
  std::vector<int32_t> ids(a.Data(), a.Data() + a.ElementLength());
  for (int32_t id : ids)
    if (id < 0 || id >= vocab)
      type_error(o.Env(), key, "must hold token ids in [0, " + std::to_string(vocab) + "), got " + std::to_string(id));
  return ids;
}

// ---------------------------------------------------------------------------------------------------------
// What the engine thread sends to JS

struct StepPacket {
  std::vector<double> rid;
  std::vector<int32_t> token, finish, matched_stop, prompt_tokens, completion_tokens, cached_tokens;
  std::vector<float> logprob;
  std::vector<int32_t> top_indptr{0}, top_ids;
  std::vector<float> top_lps;
  std::vector<int32_t> ids_indptr{0};
  std::vector<float> ids_lps;
  std::vector<int32_t> input_start, input_indptr{0};
  std::vector<float> input_lps;
  std::vector<int32_t> input_top_indptr{0}, input_top_ids;
  std::vector<float> input_top_lps;
  std::vector<int32_t> input_ids_indptr{0};
  std::vector<float> input_ids_lps;
  std::vector<int32_t> emb_indptr{0};
  std::vector<float> emb;
  StepTiming timing;
  double prev_loop_us = 0;
  bool has_error = false;
  std::string error;
};

void pack_events(const std::vector<StepEvent>& events, StepPacket& p) {
  const size_t n = events.size();
  size_t n_top = 0, n_ids = 0, n_in = 0, n_in_top = 0, n_in_ids = 0, n_emb = 0;
  for (const StepEvent& e : events) {
    n_emb += e.embedding.size();
    n_top += e.top_logprobs.size();
    n_ids += e.token_ids_logprobs.size();
    n_in += e.input_logprobs.size();
    n_in_top += e.input_top_logprobs.size();
    n_in_ids += e.input_token_ids_logprobs.size();
  }
  for (auto* v : {&p.token, &p.finish, &p.matched_stop, &p.prompt_tokens, &p.completion_tokens, &p.cached_tokens,
                  &p.input_start})
    v->reserve(n);
  for (auto* v : {&p.top_indptr, &p.ids_indptr, &p.input_indptr, &p.input_top_indptr, &p.input_ids_indptr, &p.emb_indptr})
    v->reserve(n + 1);
  p.rid.reserve(n);
  p.logprob.reserve(n);
  p.top_ids.reserve(n_top);
  p.top_lps.reserve(n_top);
  p.ids_lps.reserve(n_ids);
  p.input_lps.reserve(n_in);
  p.input_top_ids.reserve(n_in_top);
  p.input_top_lps.reserve(n_in_top);
  p.input_ids_lps.reserve(n_in_ids);
  p.emb.reserve(n_emb);
  for (const StepEvent& e : events) {
    p.rid.push_back(double(e.rid));
    p.token.push_back(e.token);
    p.logprob.push_back(e.logprob);
    p.finish.push_back(e.finish);
    p.matched_stop.push_back(e.matched_stop);
    p.prompt_tokens.push_back(e.prompt_tokens);
    p.completion_tokens.push_back(e.completion_tokens);
    p.cached_tokens.push_back(e.cached_tokens);
    for (const auto& [id, lp] : e.top_logprobs) {
      p.top_ids.push_back(id);
      p.top_lps.push_back(lp);
    }
    p.top_indptr.push_back(int32_t(p.top_ids.size()));
    p.ids_lps.insert(p.ids_lps.end(), e.token_ids_logprobs.begin(), e.token_ids_logprobs.end());
    p.ids_indptr.push_back(int32_t(p.ids_lps.size()));
    p.input_start.push_back(e.input_logprob_start);
    p.input_lps.insert(p.input_lps.end(), e.input_logprobs.begin(), e.input_logprobs.end());
    p.input_indptr.push_back(int32_t(p.input_lps.size()));
    for (const auto& [id, lp] : e.input_top_logprobs) {
      p.input_top_ids.push_back(id);
      p.input_top_lps.push_back(lp);
    }
    p.input_top_indptr.push_back(int32_t(p.input_top_ids.size()));
    p.input_ids_lps.insert(p.input_ids_lps.end(), e.input_token_ids_logprobs.begin(), e.input_token_ids_logprobs.end());
    p.input_ids_indptr.push_back(int32_t(p.input_ids_lps.size()));
    p.emb.insert(p.emb.end(), e.embedding.begin(), e.embedding.end());
    p.emb_indptr.push_back(int32_t(p.emb.size()));
  }
}

struct Message {
  enum Kind { kStep, kFlush, kUpdateWeights, kExpertRecord } kind = kStep;
  std::unique_ptr<ExpertRecordDump> record;  // kExpertRecord: the dump (null for start / stop)
  std::unique_ptr<StepPacket> step;
  uint64_t flush_id = 0;  // kFlush / kUpdateWeights: the pending promise
  bool flush_ok = false;
  std::string text;  // kUpdateWeights: the error message when it failed
};

struct Command {
  enum Kind { kSubmit, kAbort, kFlush, kUpdateWeights, kExpertRecord } kind = kSubmit;
  enum RecordOp { kStart, kStop, kDump, kDumpReset } record_op = kStart;  // kExpertRecord
  SchedRequest req;  // kSubmit
  int64_t rid = 0;   // kAbort
  uint64_t flush_id = 0;
  std::string path;  // kUpdateWeights
};

class NativeEngine;
struct EngineCore;
void call_js(Napi::Env env, Napi::Function on_step, EngineCore* core, Message* msg);
using Tsfn = Napi::TypedThreadSafeFunction<EngineCore, Message, call_js>;

// State shared by the JS object, the engine thread and the thread-safe function. Owned by shared_ptrs held
// by the JS object and by the thread-safe function's finalizer data; the engine thread uses a raw pointer
// (the finalizer joins it before dropping its reference).
struct EngineCore {
  // Model state: built on the JS thread by the constructor, then used only by the engine thread until the
  // finalizer (JS thread) has joined it and frees it.
  std::unique_ptr<ModelConfig> config;
  const Backend* backend = nullptr;  // chosen at construction (device option), used for reloads too
  ModelRunOptions run_opts;
  std::unique_ptr<Checkpoint> ckpt;
  std::unique_ptr<Model> model;
  std::unique_ptr<KvCache> kv;
  std::unique_ptr<Scheduler> sched;
  std::unique_ptr<ExpertRecorder> recorder;  // --expert-distribution-recorder-mode, else null
  std::unique_ptr<Command> pending_update;  // engine thread: an update waiting for the running set to drain
  std::mutex model_mu;  // guards the swap of config / ckpt / model against info() on the JS thread
  int32_t total_pages = 0;
  int32_t vocab = 0;

  // Shared, under mu.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Command> cmds;
  bool stop = false;
  Scheduler::Stats snap;
  int32_t queued_submits = 0;

  std::thread thread;
  Tsfn tsfn;

  // JS thread only.
  enum State { kOpen, kClosing, kClosed } state = kOpen;
  bool tsfn_alive = false, tsfn_refd = true;
  int64_t live = 0;  // submitted requests without their finishing event yet
  uint64_t next_flush_id = 1;
  std::unordered_map<uint64_t, Napi::Promise::Deferred> flushes;
  std::vector<Napi::Promise::Deferred> close_waiters;
  NativeEngine* owner = nullptr;  // the JS object while it exists
  bool owner_refd = false;

  // Bumped under mu with every command: the engine thread's idle spin (run) watches it without the lock.
  std::atomic<uint32_t> cmd_seq{0};

  void push(Command c) {
    {
      std::lock_guard<std::mutex> lk(mu);
      if (c.kind == Command::kSubmit) ++queued_submits;
      cmds.push_back(std::move(c));
      cmd_seq.fetch_add(1, std::memory_order_release);
    }
    cv.notify_one();
  }
  void request_stop() {
    {
      std::lock_guard<std::mutex> lk(mu);
      stop = true;
      cmd_seq.fetch_add(1, std::memory_order_release);
    }
    cv.notify_one();
  }

  void run();  // engine thread
  void post(Message* m) {
    if (tsfn.BlockingCall(m) != napi_ok) delete m;
  }
  void post_events(std::vector<StepEvent>& events, const StepTiming& timing, double prev_loop_us) {
    auto* m = new Message();
    m->step = std::make_unique<StepPacket>();
    pack_events(events, *m->step);
    m->step->timing = timing;
    m->step->prev_loop_us = prev_loop_us;
    post(m);
  }

  void update_ref(Napi::Env env);      // JS thread
  void finalize(Napi::Env env);        // JS thread: the thread-safe function's finalizer
  bool update_weights(const std::string& dir, std::string& error);  // engine thread
};

// Loads another checkpoint of the same architecture and shape and swaps it in; on any failure the served
// model stays as it was. Runs on the engine thread once no request is running (admission is paused until
// then, so queued requests wait and then run on the new weights); the radix cache is emptied.
bool EngineCore::update_weights(const std::string& dir, std::string& error) {
  try {
    auto cfg = std::make_unique<ModelConfig>(model_config_load(dir));
    const ModelConfig& a = *config;
    const ModelConfig& b = *cfg;
    if (b.architecture != a.architecture || b.hidden_size != a.hidden_size || b.num_layers != a.num_layers ||
        b.num_heads != a.num_heads || b.num_kv_heads != a.num_kv_heads || b.head_dim != a.head_dim ||
        b.vocab_size != a.vocab_size || b.intermediate_size != a.intermediate_size)
      throw std::runtime_error(dir + ": a different architecture or shape (" + b.architecture + ") than the served " +
                               a.architecture + "; weights can only be updated with the same one");
    cfg->is_embedding = a.is_embedding;  // served as it was launched
    auto ck = std::make_unique<Checkpoint>(dir);
    auto m = model_create(b, *ck, *backend, run_opts);
    std::vector<int32_t> eos;
    for (int64_t id : b.eos_token_ids) eos.push_back(int32_t(id));
    sched->replace_model(*m, std::move(eos));
    std::lock_guard<std::mutex> lk(model_mu);
    model = std::move(m);
    ckpt = std::move(ck);
    config = std::move(cfg);
    return true;
  } catch (const std::exception& e) {
    error = e.what();
    return false;
  }
}

// On a device backend, the engine thread polls for kIdleSpin after its last piece of work before it sleeps on
// the condition variable: a client that sends its next request within that time (a sequential client: the
// next /encode ~1 ms after the last answer) skips the thread's wake-up (tens of µs on a VM). SGLang's
// scheduler polls its queue the same way, without a bound. The CPU backend does not spin: its cores are the
// forward's.
constexpr auto kIdleSpin = std::chrono::milliseconds(5);

void EngineCore::run() {
  std::vector<StepEvent> events;
  bool busy = false;
  double prev_loop_us = 0;  // wall time of the previous iteration that ran a forward (posting included)
  const bool spin = backend != &cpu_backend() && [] {  // SGL_ENGINE_SPIN=0: always sleep at once
    const char* e = std::getenv("SGL_ENGINE_SPIN");
    return !(e != nullptr && e[0] == '0');
  }();
  uint32_t seen_seq = 0;
  auto last_work = std::chrono::steady_clock::now();
  for (;;) {
    std::deque<Command> batch;
    bool stopping;
    if (spin && !busy) {
      while (cmd_seq.load(std::memory_order_acquire) == seen_seq &&
             std::chrono::steady_clock::now() - last_work < kIdleSpin)
        std::this_thread::yield();
    }
    {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return stop || !cmds.empty() || busy; });
      batch.swap(cmds);
      stopping = stop;
      seen_seq = cmd_seq.load(std::memory_order_relaxed);
    }
    if (!batch.empty() || busy) last_work = std::chrono::steady_clock::now();
    events.clear();
    int32_t taken_submits = 0;
    std::vector<std::pair<uint64_t, bool>> flush_results;
    StepTiming timing;  // zero unless a step ran
    const auto loop_start = std::chrono::steady_clock::now();
    std::string fatal;
    {
      std::lock_guard<std::mutex> step_lock(g_step_mu);
      for (Command& c : batch) {
        switch (c.kind) {
          case Command::kSubmit: {
            ++taken_submits;
            const int64_t rid = c.req.rid;
            const int32_t plen = int32_t(c.req.prompt.size());
            try {
              sched->submit(std::move(c.req));
            } catch (...) {  // (out of memory) it never reached the scheduler: end it here
              StepEvent e;
              e.rid = rid;
              e.finish = kFinishAbort;
              e.prompt_tokens = plen;
              events.push_back(std::move(e));
            }
            break;
          }
          case Command::kAbort:
            try {
              sched->abort(c.rid);  // a set insertion
            } catch (...) {
            }
            break;
          case Command::kFlush: {
            bool ok = false;
            try {
              ok = sched->flush_cache();
            } catch (...) {
            }
            flush_results.emplace_back(c.flush_id, ok);
            break;
          }
          case Command::kExpertRecord: {
            auto* m = new Message();
            m->kind = Message::kExpertRecord;
            m->flush_id = c.flush_id;
            if (c.record_op == Command::kStart)
              recorder->start();
            else if (c.record_op == Command::kStop)
              recorder->stop();
            else {
              m->record = std::make_unique<ExpertRecordDump>(recorder->dump());
              if (c.record_op == Command::kDumpReset) recorder->reset();  // no step in between: no pass lost
            }
            post(m);
            break;
          }
          case Command::kUpdateWeights: {
            if (pending_update) {  // one at a time
              auto* m = new Message();
              m->kind = Message::kUpdateWeights;
              m->flush_id = c.flush_id;
              m->text = "another weight update is in progress";
              post(m);
            } else {
              pending_update = std::make_unique<Command>(std::move(c));
              sched->set_admission_paused(true);  // drain the running requests; new ones wait
            }
            break;
          }
        }
      }
      if (pending_update && (stopping || sched->stats().running == 0)) {
        auto* m = new Message();
        m->kind = Message::kUpdateWeights;
        m->flush_id = pending_update->flush_id;
        m->flush_ok = !stopping && update_weights(pending_update->path, m->text);
        if (stopping) m->text = "the engine is shutting down";
        post(m);
        pending_update.reset();
        sched->set_admission_paused(false);
      }
      if (!stopping) {
        try {
          busy = sched->step(events);
          cpu_pool().park();  // free the workers' cores for Node's thread while results are posted
          timing = sched->last_timing();
        } catch (const std::exception& e) {
          fatal = e.what();
        } catch (...) {
          fatal = "unknown native error in the engine step";
        }
      }
      if (stopping || !fatal.empty()) {
        // close(), or a fatal step: abort everything still live (events of the failed step gathered so far
        // stay in front of the abort events). After a fatal step the engine keeps serving new requests.
        try {
          sched->close(events);
        } catch (const std::exception& e) {
          if (fatal.empty()) fatal = e.what();
        }
        busy = false;
        timing = StepTiming{};
      }
    }
    if (!fatal.empty()) {
      auto* m = new Message();
      m->step = std::make_unique<StepPacket>();
      m->step->has_error = true;
      m->step->error = fatal;
      post(m);
    }
    const Scheduler::Stats st = sched->stats();
    {
      std::lock_guard<std::mutex> lk(mu);
      snap = st;
      queued_submits -= taken_submits;
    }
    for (const auto& [id, ok] : flush_results) {
      auto* m = new Message();
      m->kind = Message::kFlush;
      m->flush_id = id;
      m->flush_ok = ok;
      post(m);
    }
    if (!events.empty()) post_events(events, timing, prev_loop_us);
    if (timing.batch_size > 0)
      prev_loop_us =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - loop_start).count();
    if (stopping) break;
  }
  // The last use of the thread-safe function: once its queue drains, the finalizer (JS thread) joins this
  // thread, frees the model and resolves close().
  tsfn.Release();
}

// ---------------------------------------------------------------------------------------------------------
// JS class

class NativeEngine : public Napi::ObjectWrap<NativeEngine> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "NativeEngine",
                       {InstanceMethod("info", &NativeEngine::info), InstanceMethod("submit", &NativeEngine::submit),
                        InstanceMethod("abort", &NativeEngine::abort),
                        InstanceMethod("flushCache", &NativeEngine::flush_cache),
                        InstanceMethod("updateWeights", &NativeEngine::update_weights),
                        InstanceMethod("expertRecord", &NativeEngine::expert_record),
                        InstanceMethod("stats", &NativeEngine::stats), InstanceMethod("close", &NativeEngine::close)});
  }

  explicit NativeEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeEngine>(info) {
    Napi::Env env = info.Env();
    Napi::Object opts = arg_object(info, 0, "options");
    const std::string dir = prop_string(opts, "modelPath");
    // numPages 0: size the pool from device memory (memFractionStatic); only on a device backend.
    const int num_pages_opt = int(int_field(opts, "numPages", 0, 2147483647));
    std::string device = "cpu";
    if (!absent(opts.Get("device"))) device = prop_string(opts, "device");
    // --dtype: "float32" / "float" pick CUDA's float32 table on a GPU (select_backend); the CPU ignores it.
    std::string dtype = "auto";
    if (!absent(opts.Get("dtype"))) dtype = prop_string(opts, "dtype");
    ModelRunOptions run_opts;
    if (!absent(opts.Get("cudaGraphMaxBs"))) run_opts.graph_max_bs = int(int_field(opts, "cudaGraphMaxBs", 1, 4096));
    if (!absent(opts.Get("disableCudaGraph"))) run_opts.disable_graphs = bool_field(opts, "disableCudaGraph");
    if (!absent(opts.Get("isEmbedding"))) run_opts.is_embedding = bool_field(opts, "isEmbedding");
    if (!absent(opts.Get("pruneLastLayer"))) run_opts.prune_last_layer = bool_field(opts, "pruneLastLayer");
    double mem_fraction = 0.85;
    if (!absent(opts.Get("memFractionStatic"))) {
      mem_fraction = number_field(opts, "memFractionStatic");
      if (!(mem_fraction > 0 && mem_fraction < 1)) type_error(env, "memFractionStatic", "must be in (0, 1)");
    }
    SchedulerConfig sc;
    sc.page_size = int32_t(int_field(opts, "pageSize", 1, 65536));
    sc.chunked_prefill_size = int32_t(int_field(opts, "chunkedPrefillSize", -1, 2147483647));
    if (sc.chunked_prefill_size == 0) type_error(env, "chunkedPrefillSize", "must be -1 (no chunking) or positive");
    sc.max_prefill_tokens = int32_t(int_field(opts, "maxPrefillTokens", 1, 2147483647));
    sc.max_running_requests = int32_t(int_field(opts, "maxRunningRequests", 1, 2147483647));
    sc.disable_radix_cache = bool_field(opts, "disableRadixCache");
    sc.overlap = absent(opts.Get("disableOverlapSchedule")) || !bool_field(opts, "disableOverlapSchedule");
    {
      Napi::Value v = required(opts, "schedulePolicy");
      const std::string policy = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
      if (policy == "fcfs")
        sc.policy = SchedulerConfig::FCFS;
      else if (policy == "lpm")
        sc.policy = SchedulerConfig::LPM;
      else
        type_error(env, "schedulePolicy", "must be 'fcfs' or 'lpm'");
    }
    bool has_seed = false;
    uint64_t seed = 0;
    {
      Napi::Value v = opts.Get("randomSeed");
      if (!absent(v)) {
        seed = uint64_t(int_value(env, v, "randomSeed", -kMaxSafeInteger, kMaxSafeInteger));
        has_seed = true;
      }
    }
    // --expert-distribution-recorder-mode / --expert-distribution-recorder-buffer-size
    std::string record_mode;
    if (!absent(opts.Get("expertDistributionRecorderMode")))
      record_mode = prop_string(opts, "expertDistributionRecorderMode");
    ExpertRecordMode rec_mode = ExpertRecordMode::kStat;
    if (!record_mode.empty()) {
      try {
        rec_mode = expert_record_mode_parse(record_mode);
      } catch (const std::exception& e) {
        type_error(env, "expertDistributionRecorderMode", "must be 'stat', 'stat_approx', 'per_pass' or 'per_token'");
      }
    }
    int64_t rec_buffer = 1000;
    if (!absent(opts.Get("expertDistributionRecorderBufferSize"))) {
      rec_buffer = int_field(opts, "expertDistributionRecorderBufferSize", -1, 2147483647);
      if (rec_buffer == 0) type_error(env, "expertDistributionRecorderBufferSize", "must be positive or -1 (unlimited)");
    }
    Napi::Value on_step = required(opts, "onStep");
    if (!on_step.IsFunction()) type_error(env, "onStep", "must be a function");

    auto core = std::make_shared<EngineCore>();
    try {
      const Backend& be = select_backend(device, dtype);
      if (num_pages_opt == 0 && &be == &cpu_backend()) type_error(env, "numPages", "must be positive on the CPU backend");
      core->backend = &be;
      core->config = std::make_unique<ModelConfig>(model_config_load(dir));
      // Embedding mode applies to causal LMs; a sequence classifier is pooled anyway (its rows are its labels).
      core->config->is_embedding = run_opts.is_embedding && core->config->num_labels == 0;
      core->ckpt = std::make_unique<Checkpoint>(dir);
      core->run_opts = run_opts;
      core->model = model_create(*core->config, *core->ckpt, be, run_opts);
      const int num_pages =
          num_pages_opt > 0 ? num_pages_opt : kv_pages_from_memory(be, *core->config, sc.page_size, mem_fraction);
      core->kv = std::make_unique<KvCache>(be, core->config->num_layers, num_pages, sc.page_size,
                                           core->config->num_kv_heads, core->config->head_dim);
      std::vector<int32_t> eos;
      for (int64_t id : core->config->eos_token_ids) eos.push_back(int32_t(id));
      core->sched = std::make_unique<Scheduler>(*core->model, *core->kv, sc, std::move(eos));
      if (!record_mode.empty()) {
        const ModelConfig& mc = *core->config;
        core->recorder = std::make_unique<ExpertRecorder>(rec_mode, rec_buffer, mc.num_layers, mc.num_experts,
                                                          mc.num_experts_per_tok);
        core->sched->set_expert_recorder(core->recorder.get());
      }
    } catch (const Napi::Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
    core->total_pages = core->kv->num_pages();
    core->vocab = core->config->vocab_size;
    core->snap = core->sched->stats();
    if (has_seed) {
      std::lock_guard<std::mutex> lk(g_step_mu);  // the seed source is process-wide, drawn by engine threads
      sampler_set_global_seed(seed);
    }

    core->tsfn = Tsfn::New(env, on_step.As<Napi::Function>(), "sglang.NativeEngine", 0, 1, core.get(),
                           [](Napi::Env fenv, std::shared_ptr<EngineCore>* holder, EngineCore* c) {
                             std::unique_ptr<std::shared_ptr<EngineCore>> keep(holder);
                             c->finalize(fenv);
                           },
                           new std::shared_ptr<EngineCore>(core));
    core->tsfn_alive = true;
    core->tsfn.Unref(env);
    core->tsfn_refd = false;
    core->owner = this;
    EngineCore* raw = core.get();
    try {
      core->thread = std::thread([raw] { raw->run(); });
    } catch (const std::exception& e) {
      core->owner = nullptr;
      core->tsfn.Release();  // finalizes (nothing to join)
      throw Napi::Error::New(env, std::string("cannot start the engine thread: ") + e.what());
    }
    core_ = std::move(core);
  }

  ~NativeEngine() override {
    if (!core_) return;
    core_->owner = nullptr;
    core_->owner_refd = false;
    if (core_->state == EngineCore::kOpen) {  // collected (or torn down) while open: close without a promise
      core_->state = EngineCore::kClosing;
      core_->request_stop();
    }
  }

 private:
  std::shared_ptr<EngineCore> core_;

  Napi::Value info(const Napi::CallbackInfo& info) {
    if (core_->state == EngineCore::kClosed) throw Napi::Error::New(info.Env(), "engine is closed");
    std::lock_guard<std::mutex> lk(core_->model_mu);
    return model_info_object(info.Env(), *core_->config, *core_->ckpt, *core_->kv, *core_->backend);
  }

  Napi::Value submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (core_->state != EngineCore::kOpen) throw Napi::Error::New(env, "engine is closed");
    Napi::Object o = arg_object(info, 0, "request");
    const int32_t V = core_->vocab;
    Command c;
    c.kind = Command::kSubmit;
    SchedRequest& r = c.req;
    SamplingParams& p = r.params;
    r.rid = int_field(o, "rid", -kMaxSafeInteger, kMaxSafeInteger);
    if (!absent(o.Get("pooled"))) r.pooled = bool_field(o, "pooled");
    {
      std::lock_guard<std::mutex> lk(core_->model_mu);
      const ModelConfig& mc = *core_->config;
      if (mc.is_pooled() && !r.pooled)
        throw Napi::Error::New(env, mc.architecture + (mc.is_embedding ? " (served with isEmbedding)" : "") +
                                        " is not a generation model: only pooled requests (pooled: true) run on it");
      if (!mc.is_pooled() && r.pooled)
        throw Napi::Error::New(env, mc.architecture +
                                        " is not an embedding model: pooled requests need isEmbedding (--is-embedding) "
                                        "or a sequence classifier");
    }
    r.prompt = token_ids_field(o, "inputIds", V);
    if (r.prompt.empty()) type_error(env, "inputIds", "must not be empty");
    r.max_new_tokens = int32_t(int_field(o, "maxNewTokens", 0, 2147483647));
    p.min_new_tokens = int32_t(int_field(o, "minNewTokens", 0, 2147483647));
    p.temperature = float(number_field(o, "temperature"));
    if (p.temperature < 0) type_error(env, "temperature", "must be >= 0");
    p.top_p = float(number_field(o, "topP"));
    if (!(p.top_p > 0 && p.top_p <= 1)) type_error(env, "topP", "must be in (0, 1]");
    p.top_k = int32_t(int_field(o, "topK", -1, 2147483647));
    p.min_p = float(number_field(o, "minP"));
    if (!(p.min_p >= 0 && p.min_p <= 1)) type_error(env, "minP", "must be in [0, 1]");
    p.frequency_penalty = float(number_field(o, "frequencyPenalty"));
    p.presence_penalty = float(number_field(o, "presencePenalty"));
    p.repetition_penalty = float(number_field(o, "repetitionPenalty"));
    if (!(p.repetition_penalty > 0)) type_error(env, "repetitionPenalty", "must be > 0");
    r.ignore_eos = bool_field(o, "ignoreEos");
    p.ignore_eos = r.ignore_eos;
    r.stop_token_ids = token_ids_field(o, "stopTokenIds", V);
    p.stop_token_ids = r.stop_token_ids;
    {
      Napi::Value ids = o.Get("logitBiasIds"), vals = o.Get("logitBiasValues");
      if (absent(ids) != absent(vals))
        type_error(env, absent(ids) ? "logitBiasIds" : "logitBiasValues",
                   "is required when the other logitBias array is given");
      if (!absent(ids)) {
        std::vector<int32_t> bias_ids = token_ids_field(o, "logitBiasIds", V);
        if (!vals.IsTypedArray() || vals.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
          type_error(env, "logitBiasValues", "must be a Float32Array");
        Napi::Float32Array fv = vals.As<Napi::Float32Array>();
        if (fv.ElementLength() != bias_ids.size())
          type_error(env, "logitBiasValues", "must have the length of logitBiasIds");
        for (size_t i = 0; i < bias_ids.size(); ++i) {
          if (std::isnan(fv[i])) type_error(env, "logitBiasValues", "must not hold NaN");
          p.logit_bias.emplace_back(bias_ids[i], fv[i]);
        }
      }
    }
    {
      Napi::Value v = o.Get("seed");
      if (!absent(v)) {
        p.seed = uint64_t(int_value(env, v, "seed", -kMaxSafeInteger, kMaxSafeInteger));
        p.has_seed = true;
      }
    }
    p.return_logprob = bool_field(o, "returnLogprob");
    p.top_logprobs_num = int32_t(int_field(o, "topLogprobsNum", 0, V));
    if (!absent(o.Get("tokenIdsLogprob"))) p.token_ids_logprob = token_ids_field(o, "tokenIdsLogprob", V);
    r.logprob_start_len = int32_t(int_field(o, "logprobStartLen", -1, 2147483647));

    core_->push(std::move(c));
    core_->live++;
    core_->update_ref(env);
    return env.Undefined();
  }

  Napi::Value abort(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1) type_error(env, "rid", "is required");
    const int64_t rid = int_value(env, info[0], "rid", -kMaxSafeInteger, kMaxSafeInteger);
    if (core_->state != EngineCore::kOpen) return env.Undefined();
    Command c;
    c.kind = Command::kAbort;
    c.rid = rid;
    core_->push(std::move(c));
    return env.Undefined();
  }

  // Queues a command answered through a promise (flush, update weights); call_js resolves it by flush_id.
  Napi::Value queue_promised(Napi::Env env, Command c) {
    Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
    if (core_->state != EngineCore::kOpen) {
      d.Reject(Napi::Error::New(env, "engine is closed").Value());
      return d.Promise();
    }
    c.flush_id = core_->next_flush_id++;
    core_->flushes.emplace(c.flush_id, d);
    core_->push(std::move(c));
    core_->update_ref(env);
    return d.Promise();
  }

  Napi::Value flush_cache(const Napi::CallbackInfo& info) {
    Command c;
    c.kind = Command::kFlush;
    return queue_promised(info.Env(), std::move(c));
  }

  // updateWeights(modelPath) → Promise<{success, message}>; message is the loader's error when it failed.
  Napi::Value update_weights(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "modelPath must be a string");
    Command c;
    c.kind = Command::kUpdateWeights;
    c.path = info[0].As<Napi::String>().Utf8Value();
    return queue_promised(info.Env(), std::move(c));
  }

  // expertRecord('start' | 'stop' | 'dump' | 'dump_reset') → Promise<record | null>, run on the engine thread
  // between steps ('dump_reset': the record, then cleared in the same gap between two steps).
  Napi::Value expert_record(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string op = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    Command c;
    c.kind = Command::kExpertRecord;
    if (op == "start")
      c.record_op = Command::kStart;
    else if (op == "stop")
      c.record_op = Command::kStop;
    else if (op == "dump")
      c.record_op = Command::kDump;
    else if (op == "dump_reset")
      c.record_op = Command::kDumpReset;
    else
      throw Napi::TypeError::New(env, "op must be 'start', 'stop', 'dump' or 'dump_reset'");
    if (!core_->recorder)
      throw Napi::Error::New(env, "expert distribution recording is off: launch with --expert-distribution-recorder-mode "
                                  "(stat, stat_approx, per_pass or per_token)");
    return queue_promised(env, std::move(c));
  }

  Napi::Value stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Scheduler::Stats s;
    int32_t queued;
    {
      std::lock_guard<std::mutex> lk(core_->mu);
      s = core_->snap;
      queued = core_->queued_submits;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("waiting", s.waiting + queued);
    o.Set("running", s.running);
    o.Set("freePages", s.free_pages);
    o.Set("cachedPages", s.cached_pages);
    o.Set("livePages", s.live_pages);
    o.Set("totalPages", core_->total_pages);
    o.Set("totalRetractions", double(s.total_retractions));
    o.Set("steps", double(s.steps));
    return o;
  }

  Napi::Value close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
    if (core_->state == EngineCore::kClosed) {
      d.Resolve(env.Undefined());
      return d.Promise();
    }
    core_->close_waiters.push_back(d);
    if (core_->state == EngineCore::kOpen) {
      core_->state = EngineCore::kClosing;
      core_->request_stop();
    }
    core_->update_ref(env);
    return d.Promise();
  }

  friend struct EngineCore;
};

// ---------------------------------------------------------------------------------------------------------
// JS-thread parts of EngineCore

void EngineCore::update_ref(Napi::Env env) {
  const bool want = live > 0 || !flushes.empty() || state == kClosing;
  if (tsfn_alive && want != tsfn_refd) {
    if (want)
      tsfn.Ref(env);
    else
      tsfn.Unref(env);
    tsfn_refd = want;
  }
  if (owner && want != owner_refd) {
    if (want)
      owner->Ref();
    else
      owner->Unref();
    owner_refd = want;
  }
}

void EngineCore::finalize(Napi::Env env) {
  // Normally reached after the engine thread's last Release(); at environment teardown it can come first:
  // then stop the thread here (its later calls on the closing thread-safe function fail harmlessly).
  request_stop();
  if (thread.joinable()) thread.join();
  tsfn_alive = false;
  sched.reset();
  kv.reset();
  model.reset();
  ckpt.reset();
  state = kClosed;
  live = 0;
  try {
    if (env != nullptr) {
      Napi::HandleScope scope(env);
      for (auto& [id, d] : flushes) d.Resolve(Napi::Boolean::New(env, false));
      flushes.clear();
      for (auto& d : close_waiters) d.Resolve(env.Undefined());
      close_waiters.clear();
      update_ref(env);
    }
  } catch (...) {  // teardown: nothing left to tell
  }
}

template <typename T>
Napi::TypedArrayOf<T> to_array(Napi::Env env, const std::vector<T>& v) {
  Napi::TypedArrayOf<T> a = Napi::TypedArrayOf<T>::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(T));
  return a;
}

void call_js(Napi::Env env, Napi::Function on_step, EngineCore* core, Message* msg) {
  std::unique_ptr<Message> m(msg);
  if (env == nullptr) return;  // thread-safe function torn down with this message still queued
  if (m->kind == Message::kFlush || m->kind == Message::kUpdateWeights || m->kind == Message::kExpertRecord) {
    auto it = core->flushes.find(m->flush_id);
    if (it == core->flushes.end()) return;
    Napi::Promise::Deferred d = it->second;
    core->flushes.erase(it);
    core->update_ref(env);
    if (m->kind == Message::kExpertRecord) {
      if (!m->record) {
        d.Resolve(env.Null());
        return;
      }
      const ExpertRecordDump& r = *m->record;
      Napi::Object o = Napi::Object::New(env);
      o.Set("mode", expert_record_mode_name(r.mode));
      o.Set("recording", r.recording);
      o.Set("numLayers", r.num_layers);
      o.Set("numExperts", r.num_experts);
      o.Set("topK", r.top_k);
      o.Set("numPasses", double(r.num_passes));
      o.Set("logicalCount", to_array(env, r.logical_count));
      o.Set("passIds", to_array(env, r.pass_ids));
      o.Set("passCounts", to_array(env, r.pass_counts));
      o.Set("passTokens", to_array(env, r.pass_tokens));
      o.Set("topkIds", to_array(env, r.topk_ids));
      d.Resolve(o);
    } else if (m->kind == Message::kFlush) {
      d.Resolve(Napi::Boolean::New(env, m->flush_ok));
    } else {
      Napi::Object r = Napi::Object::New(env);
      r.Set("success", m->flush_ok);
      r.Set("message", m->flush_ok ? std::string() : m->text);
      d.Resolve(r);
    }
    return;
  }
  const StepPacket& p = *m->step;
  const size_t n = p.rid.size();
  for (size_t i = 0; i < n; ++i)
    if (p.finish[i] != kFinishNone && core->live > 0) core->live--;
  core->update_ref(env);

  Napi::Object o = Napi::Object::New(env);
  o.Set("n", double(n));
  o.Set("rid", to_array(env, p.rid));
  o.Set("token", to_array(env, p.token));
  o.Set("logprob", to_array(env, p.logprob));
  o.Set("finish", to_array(env, p.finish));
  o.Set("matchedStop", to_array(env, p.matched_stop));
  o.Set("promptTokens", to_array(env, p.prompt_tokens));
  o.Set("completionTokens", to_array(env, p.completion_tokens));
  o.Set("cachedTokens", to_array(env, p.cached_tokens));
  o.Set("topIndptr", to_array(env, p.top_indptr));
  o.Set("topIds", to_array(env, p.top_ids));
  o.Set("topLogprobs", to_array(env, p.top_lps));
  o.Set("idsIndptr", to_array(env, p.ids_indptr));
  o.Set("idsLogprobs", to_array(env, p.ids_lps));
  o.Set("inputStart", to_array(env, p.input_start));
  o.Set("inputIndptr", to_array(env, p.input_indptr));
  o.Set("inputLogprobs", to_array(env, p.input_lps));
  o.Set("inputTopIndptr", to_array(env, p.input_top_indptr));
  o.Set("inputTopIds", to_array(env, p.input_top_ids));
  o.Set("inputTopLogprobs", to_array(env, p.input_top_lps));
  o.Set("inputIdsIndptr", to_array(env, p.input_ids_indptr));
  o.Set("inputIdsLogprobs", to_array(env, p.input_ids_lps));
  o.Set("embeddingIndptr", to_array(env, p.emb_indptr));
  o.Set("embedding", to_array(env, p.emb));
  o.Set("scheduleUs", p.timing.schedule_us);
  o.Set("forwardUs", p.timing.forward_us);
  o.Set("sampleUs", p.timing.sample_us);
  o.Set("batchSize", p.timing.batch_size);
  o.Set("numTokens", p.timing.num_tokens);
  o.Set("prevLoopUs", p.prev_loop_us);
  if (p.has_error) o.Set("error", p.error);
  try {
    on_step.Call({o});
  } catch (const Napi::Error& e) {
    // A throwing onStep is the caller's bug: report it as an uncaught exception ('uncaughtException'),
    // as an event handler's would be, rather than Node's legacy swallow-and-warn for N-API callbacks.
    napi_fatal_exception(env, e.Value());
  }
}

}  // namespace

Napi::Function native_engine_class(Napi::Env env) { return NativeEngine::define(env); }

}  // namespace sgl
