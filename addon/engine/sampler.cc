// Native CPU sampler; semantics documented in sampler.h.
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace sgl {

namespace {

const float kNegInf = -std::numeric_limits<float>::infinity();

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct GlobalSeed {
  bool set = false;
  uint64_t state = 0;
};
GlobalSeed& global_seed() {
  static GlobalSeed g;
  return g;
}
uint64_t next_global_seed() {
  GlobalSeed& g = global_seed();
  if (!g.set) {
    std::random_device rd;
    g.state = (uint64_t(rd()) << 32) ^ uint64_t(rd());
    g.set = true;
  }
  return splitmix64(g.state);
}

inline double uniform01(std::mt19937_64& r) { return double(r() >> 11) * 0x1.0p-53; }

// Ranks token ids by key descending, ties by lower id; sorts only as large a prefix as asked for.
struct Ranker {
  const float* key = nullptr;
  std::vector<int32_t> idx;
  size_t sorted = 0;
  void reset(const float* k, int32_t V) {
    key = k;
    idx.resize(size_t(V));
    for (int32_t i = 0; i < V; ++i) idx[size_t(i)] = i;
    sorted = 0;
  }
  bool before(int32_t a, int32_t b) const { return key[a] > key[b] || (key[a] == key[b] && a < b); }
  // Afterwards idx[0..n) are the n best tokens, in order.
  void ensure(size_t n) {
    n = std::min(n, idx.size());
    if (n <= sorted) return;
    auto cmp = [this](int32_t a, int32_t b) { return before(a, b); };
    if (n < idx.size()) std::nth_element(idx.begin() + long(sorted), idx.begin() + long(n), idx.end(), cmp);
    std::sort(idx.begin() + long(sorted), idx.begin() + long(n), cmp);
    sorted = n;
  }
};

// Number of leading ranks (<= L) whose exclusive cumulative probability is <= top_p.
size_t top_p_count(Ranker& rk, const float* e, double Z, double top_p, size_t L) {
  double cum = 0.0;
  size_t r = 0, n = std::min<size_t>(L, 256);
  for (;;) {
    rk.ensure(n);
    for (; r < n; ++r) {
      if (cum > top_p) return r;
      cum += double(e[rk.idx[r]]) / Z;
    }
    if (n >= L) return L;
    n = std::min(L, n * 4);
  }
}

struct Scratch {
  std::vector<float> x;  // scaled logits
  std::vector<float> e;  // exp(x - max)
  std::vector<int32_t> heap;
  Ranker rk;
};
Scratch& scratch() {
  static thread_local Scratch s;
  return s;
}

}  // namespace

void sampler_set_global_seed(uint64_t seed) {
  GlobalSeed& g = global_seed();
  g.state = seed;
  g.set = true;
}

void sampler_state_init(SamplerState& st, const SamplingParams& p, const int32_t* prompt, size_t n,
                        const std::vector<int32_t>& eos_ids) {
  st.output_counts.clear();
  st.track_counts = p.repetition_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f;
  st.num_output = 0;
  st.prompt_tokens.assign(prompt, prompt + n);
  std::sort(st.prompt_tokens.begin(), st.prompt_tokens.end());
  st.prompt_tokens.erase(std::unique(st.prompt_tokens.begin(), st.prompt_tokens.end()), st.prompt_tokens.end());
  st.min_tokens_stop_ids = p.stop_token_ids;
  st.min_tokens_stop_ids.insert(st.min_tokens_stop_ids.end(), eos_ids.begin(), eos_ids.end());
  std::sort(st.min_tokens_stop_ids.begin(), st.min_tokens_stop_ids.end());
  st.min_tokens_stop_ids.erase(std::unique(st.min_tokens_stop_ids.begin(), st.min_tokens_stop_ids.end()),
                               st.min_tokens_stop_ids.end());
  st.rng.seed(p.has_seed ? p.seed : next_global_seed());
}

void sampler_state_append(SamplerState& st, int32_t token) {
  if (st.track_counts) st.output_counts[token] += 1;
  st.num_output += 1;
}

void sampler_logit_edits(const SamplingParams& p, const SamplerState& st, int32_t V, std::vector<LogitEdit>& out) {
  auto add = [&](int32_t t, int32_t op, float v) {
    if (t >= 0 && t < V) out.push_back(LogitEdit{t, op, v});
  };
  const float rp = p.repetition_penalty;
  if (rp != 1.0f) {
    for (const auto& kv : st.output_counts) add(kv.first, kLogitEditRepetition, rp);
    if (p.repetition_penalty_counts_prompt)
      for (int32_t t : st.prompt_tokens)
        if (!st.output_counts.count(t)) add(t, kLogitEditRepetition, rp);
  }
  if (p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
    for (const auto& kv : st.output_counts) {
      if (kv.second <= 0) continue;
      add(kv.first, kLogitEditSubtract, p.frequency_penalty * float(kv.second) + p.presence_penalty);
    }
  }
  if (st.num_output < p.min_new_tokens)
    for (int32_t t : st.min_tokens_stop_ids) add(t, kLogitEditMask, 0.0f);
  for (const auto& [t, b] : p.logit_bias) add(t, kLogitEditBias, b);  // sampling_batch_info.py: after the penalties
}

void apply_logit_edits(float* logits, const LogitEdit* edits, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    float& l = logits[edits[i].token];
    const float v = edits[i].value;
    switch (edits[i].op) {
      case kLogitEditRepetition: l = l > 0.0f ? l / v : l * v; break;
      case kLogitEditSubtract: l -= v; break;
      case kLogitEditMask: l = kNegInf; break;
      default: l += v; break;
    }
  }
}

void apply_penalties(float* logits, int32_t V, const SamplingParams& p, const SamplerState& st) {
  static thread_local std::vector<LogitEdit> edits;
  edits.clear();
  sampler_logit_edits(p, st, V, edits);
  apply_logit_edits(logits, edits.data(), edits.size());
}

void log_softmax_row(const float* logits, int32_t V, float* out, float temperature) {
  const float inv_t = (temperature > 0.0f) ? 1.0f / temperature : 1.0f;
  float m = kNegInf;
  for (int32_t i = 0; i < V; ++i) m = std::max(m, logits[i] * inv_t);
  double z = 0.0;
  for (int32_t i = 0; i < V; ++i) z += std::exp(double(logits[i] * inv_t - m));
  const float lz = float(std::log(z));
  for (int32_t i = 0; i < V; ++i) out[i] = logits[i] * inv_t - m - lz;
}

namespace {
// No penalty, bias or min-token mask changes the logits, and no logprob beyond the chosen token's is asked.
bool plain_logits(const SamplingParams& p, const SamplerState& st) {
  return p.repetition_penalty == 1.0f && p.frequency_penalty == 0.0f && p.presence_penalty == 0.0f &&
         p.logit_bias.empty() && !(st.num_output < p.min_new_tokens && !st.min_tokens_stop_ids.empty()) &&
         p.top_logprobs_num == 0 && p.token_ids_logprob.empty();
}
}  // namespace

bool is_plain_greedy(const SamplingParams& p, const SamplerState& st) {
  const bool greedy = (p.temperature >= 0.0f && p.temperature < kSamplingEps) || p.top_k == 1;
  return greedy && plain_logits(p, st);
}

bool is_plain_sample(const SamplingParams& p, const SamplerState& st, int32_t V) {
  if (p.temperature >= 0.0f && p.temperature < kSamplingEps) return false;  // greedy
  const bool all_k = p.top_k <= 0 || p.top_k >= V;
  return all_k && p.top_p >= 1.0f && p.min_p <= 0.0f && p.temperature > 0.0f && plain_logits(p, st);
}

double sampler_draw_uniform(SamplerState& st) { return uniform01(st.rng); }

RowSpec sampler_row_spec(const SamplingParams& p, int32_t V) {
  // sampling_params.py normalisation
  float T = p.temperature;
  int64_t top_k = p.top_k;
  if (T >= 0.0f && T < kSamplingEps) {
    T = 1.0f;
    top_k = 1;
  }
  if (top_k <= 0 || top_k > V) top_k = V;
  RowSpec s;
  s.top_k = int32_t(top_k);
  if (s.greedy()) T = 1.0f;  // greedy rows report log_softmax of the penalized logits
  s.inv_t = 1.0f / T;
  s.top_p = p.top_p;
  s.min_p = p.min_p;
  s.return_logprob = p.return_logprob;
  s.top_logprobs_num = std::min(std::max(p.top_logprobs_num, 0), V);
  s.token_ids = p.token_ids_logprob.data();
  s.n_token_ids = int32_t(p.token_ids_logprob.size());
  return s;
}

namespace {

// sample_row after the penalties. The uniform comes from st's stream when st is set (drawn for every
// non-greedy row), else it is u.
int32_t sample_core(const float* logits, int32_t V, const RowSpec& spec, SamplerState* st, double u_given,
                    SampleOutput& out) {
  out.top_logprobs.clear();
  out.token_ids_logprobs.clear();
  const int64_t top_k = spec.top_k;
  const bool greedy = spec.greedy();
  const double top_p = double(spec.top_p);
  const bool use_top_p = !greedy && top_p < 1.0;

  if (greedy && !spec.return_logprob) {  // the common fast path: one pass, no copies, no exponentials
    // Max over 8 independent lanes (NaN compares false, so it is never chosen), then the first index of it.
    float lane[8] = {kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf};
    int32_t i = 0;
    for (; i + 8 <= V; i += 8)
      for (int j = 0; j < 8; ++j) lane[j] = logits[i + j] > lane[j] ? logits[i + j] : lane[j];
    float best = kNegInf;
    for (; i < V; ++i) best = logits[i] > best ? logits[i] : best;
    for (int j = 0; j < 8; ++j) best = lane[j] > best ? lane[j] : best;
    int32_t token = 0;
    while (token < V && !(logits[token] == best)) ++token;
    if (token == V) token = 0;  // everything NaN / -inf
    out.token = token;
    return token;
  }

  // A sampled row draws its uniform first, even when everything turns out masked below: the stream then
  // advances once per sampled row whatever the logits, so a backend that samples the row elsewhere (the
  // GPU's sample_rows, with the uniform drawn on the host beforehand) never has to undo a draw.
  const double u = greedy ? 0.0 : st ? uniform01(st->rng) : u_given;
  Scratch& s = scratch();
  s.x.resize(size_t(V));
  s.e.resize(size_t(V));
  float* x = s.x.data();
  float* e = s.e.data();
  const float inv_t = spec.inv_t;
  float m = kNegInf;
  for (int32_t i = 0; i < V; ++i) {
    float v = logits[i];
    v = std::isnan(v) ? kNegInf : v * inv_t;
    x[i] = v;
    m = std::max(m, v);
  }
  if (m == kNegInf) {  // everything masked: nothing sensible to sample
    out.token = 0;
    out.logprob = kLogprobFloor;
    return 0;
  }
  double Z = 0.0;
  for (int32_t i = 0; i < V; ++i) {
    e[i] = std::exp(x[i] - m);
    Z += double(e[i]);
  }
  Ranker& rk = s.rk;
  bool ranked = false;
  auto ranker = [&]() -> Ranker& {
    if (!ranked) {
      rk.reset(x, V);
      ranked = true;
    }
    return rk;
  };

  int32_t token = -1;
  if (greedy) {
    token = 0;
    for (int32_t i = 1; i < V; ++i)
      if (x[i] > x[token]) token = i;
  } else {
    // kept set = sorted ranks r < L, with L = min(top_k, #{p >= min_p * p_max}), then the top-p prefix.
    size_t L = size_t(top_k);
    const float minp_e = spec.min_p > 0.0f ? spec.min_p : 0.0f;  // p_i >= min_p * p_max  <=>  e_i >= min_p
    if (minp_e > 0.0f) {
      size_t c = 0;
      for (int32_t i = 0; i < V; ++i) c += e[i] >= minp_e;
      L = std::min(L, std::max<size_t>(c, 1));
    }
    if (use_top_p || L < size_t(V)) {
      // sorted candidate prefix: a bounded heap scan when L is small, else the lazily sorted full ranking
      const int32_t* cand;
      size_t K;
      if (L <= 1024 && L * 8 < size_t(V)) {
        std::vector<int32_t>& h = s.heap;
        h.clear();
        auto worse = [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
        for (int32_t i = 0; i < V; ++i) {
          if (h.size() < L) {
            h.push_back(i);
            std::push_heap(h.begin(), h.end(), worse);  // heap top = worst kept
          } else if (x[i] > x[h.front()]) {             // ties keep the lower (earlier) id
            std::pop_heap(h.begin(), h.end(), worse);
            h.back() = i;
            std::push_heap(h.begin(), h.end(), worse);
          }
        }
        std::sort(h.begin(), h.end(), worse);
        cand = h.data();
        K = h.size();
        if (use_top_p) {
          double cum = 0.0;
          size_t r = 0;
          for (; r < K; ++r) {
            if (cum > top_p) break;
            cum += double(e[h[r]]) / Z;
          }
          K = r;
        }
      } else {
        Ranker& r = ranker();
        K = use_top_p ? top_p_count(r, e, Z, top_p, L) : (r.ensure(L), L);
        cand = r.idx.data();
      }
      double tot = 0.0;
      for (size_t j = 0; j < K; ++j) tot += double(e[cand[j]]);
      const double target = u * tot;
      double acc = 0.0;
      token = cand[K - 1];
      for (size_t j = 0; j < K; ++j) {
        acc += double(e[cand[j]]);
        if (acc > target && e[cand[j]] > 0.0f) {
          token = cand[j];
          break;
        }
      }
    } else {
      const double target = u * Z;
      double acc = 0.0;
      token = -1;
      for (int32_t i = 0; i < V; ++i) {
        if (e[i] <= 0.0f) continue;
        acc += double(e[i]);
        token = i;
        if (acc > target) break;
      }
    }
  }
  out.token = token;

  if (spec.return_logprob) {
    // Distribution reported: log_softmax(x) (greedy, or top_p >= 1), else renormalized over the top-p nucleus.
    size_t Kp = size_t(V);
    double S = Z;
    if (use_top_p) {
      Ranker& r = ranker();
      Kp = top_p_count(r, e, Z, top_p, size_t(V));
      S = 0.0;
      for (size_t j = 0; j < Kp; ++j) S += double(e[r.idx[j]]);
      if (Kp < size_t(V)) r.ensure(Kp + 1);
    }
    const double logS = std::log(S);
    auto lp = [&](int32_t t) -> float {
      if (t < 0 || t >= V) return kLogprobFloor;
      if (Kp < size_t(V) && !rk.before(t, rk.idx[Kp])) return kLogprobFloor;
      float v = float(double(x[t] - m) - logS);
      return greedy ? v : std::max(v, kLogprobFloor);  // sampled rows: clamp(min=finfo.min)
    };
    out.logprob = lp(token);
    if (spec.top_logprobs_num > 0) {
      Ranker& r = ranker();
      size_t N = std::min<size_t>(size_t(spec.top_logprobs_num), size_t(V));
      r.ensure(N);
      out.top_logprobs.reserve(N);
      for (size_t j = 0; j < N; ++j) out.top_logprobs.emplace_back(r.idx[j], lp(r.idx[j]));
    }
    out.token_ids_logprobs.reserve(size_t(spec.n_token_ids));
    for (int32_t j = 0; j < spec.n_token_ids; ++j) out.token_ids_logprobs.push_back(lp(spec.token_ids[j]));
  }
  return token;
}

}  // namespace

int32_t sample_row_u(const float* logits, int32_t V, const RowSpec& s, double u, SampleOutput& out) {
  return sample_core(logits, V, s, nullptr, u, out);
}

int32_t sample_row(float* logits, int32_t V, const SamplingParams& p, SamplerState& st, SampleOutput& out) {
  apply_penalties(logits, V, p, st);
  return sample_core(logits, V, sampler_row_spec(p, V), &st, 0.0, out);
}

}  // namespace sgl
