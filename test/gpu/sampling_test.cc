// Parity of Backend::sample_rows on CUDA (cuda/sampling.cu) against its CPU reference sample_rows_cpu
// (addon/cpu/sample_rows.cc, i.e. the sampler's own sample_row): random logits rows of V = 1000, 32000 and
// 151936 under many parameter combinations (greedy with penalties, top-k, top-p, min-p and their joint use,
// temperatures, repetition / frequency / presence penalties over output counts and the prompt, the
// min_new_tokens stop-id mask, logit_bias, top logprobs, token-id logprobs, ties, an all-masked row). Outputs
// and the kernel's scratch are poisoned first. Per case: tokens equal (no mismatch allowed on random data), the
// edited logits bit-equal, logprobs within 1e-4 (abs + rel), top-N lists equal. The CPU reference is first
// checked against sample_row itself (the same token and logprob bit for bit), and per V the rows are sampled
// once more one at a time (R = 1), every output bit-equal to the batch's. Prints PASS/FAIL lines and
// "N passed, M failed".
#include <algorithm>
#include <cfloat>
#include <initializer_list>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "backend/backend.h"
#include "cpu/ops.h"
#include "engine/sample_rows_batch.h"
#include "engine/sampler.h"
#include "gpu_check.h"

using namespace sgl;
using gpu_check::check;

namespace {

struct Case {
  const char* name;
  float T;
  int top_k;
  float top_p, min_p;
  float rep, freq, pres;
  bool counts_prompt;
  int min_new;
  int n_bias;
  bool lp;
  int top_n, n_ids;
  int ties;  // 0 none, 1 logits rounded to 0.25 (many ties), 2 a tie at the top
  bool masked;  // every logit NaN / -inf
};

const Case kCases[] = {
    {"greedy+rep", 0.0f, -1, 1.0f, 0.0f, 1.3f, 0, 0, false, 0, 0, true, 5, 0, 0, false},
    {"greedy+freq+pres+bias", 0.0f, -1, 1.0f, 0.0f, 1.0f, 0.5f, 0.3f, false, 0, 3, true, 20, 4, 0, false},
    {"top_k1", 0.7f, 1, 1.0f, 0.0f, 1.0f, 0, 0, false, 0, 0, true, 0, 0, 0, false},
    {"top_k20", 0.7f, 20, 1.0f, 0.0f, 1.0f, 0, 0, false, 0, 0, false, 0, 0, 0, false},
    {"top_k50 T1.3 lp5", 1.3f, 50, 1.0f, 0.0f, 1.0f, 0, 0, false, 0, 0, true, 5, 0, 0, false},
    {"top_p0.8", 1.0f, -1, 0.8f, 0.0f, 1.0f, 0, 0, false, 0, 0, true, 0, 0, 0, false},
    {"top_p0.95 T1.3 lp20 ids", 1.3f, -1, 0.95f, 0.0f, 1.0f, 0, 0, false, 0, 0, true, 20, 6, 0, false},
    {"min_p0.05", 1.0f, -1, 1.0f, 0.05f, 1.0f, 0, 0, false, 0, 0, true, 0, 0, 0, false},
    {"top_k50+top_p0.9+min_p0.05", 0.7f, 50, 0.9f, 0.05f, 1.0f, 0, 0, false, 0, 0, true, 5, 2, 0, false},
    {"penalties+top_p0.95", 1.0f, -1, 0.95f, 0.0f, 1.2f, 0.5f, 0.3f, false, 0, 0, true, 5, 3, 0, false},
    {"min_new mask+top_k20", 1.0f, 20, 1.0f, 0.0f, 1.0f, 0, 0, false, 1000, 0, true, 5, 4, 0, false},
    {"bias+top_p0.8", 0.7f, -1, 0.8f, 0.0f, 1.0f, 0, 0, false, 0, 6, true, 0, 0, 0, false},
    {"rep counts prompt+top_k40", 1.0f, 40, 1.0f, 0.0f, 1.5f, 0, 0, true, 0, 0, true, 5, 0, 0, false},
    {"ties top_k20 top_p0.9 lp20", 1.0f, 20, 0.9f, 0.0f, 1.0f, 0, 0, false, 0, 0, true, 20, 3, 1, false},
    {"ties at top greedy lp5", 0.0f, -1, 1.0f, 0.0f, 1.0f, 0, 0, false, 0, 0, true, 5, 2, 2, false},
    {"ties at top top_k5", 1.0f, 5, 1.0f, 0.0f, 1.0f, 0.2f, 0, false, 0, 0, true, 5, 0, 2, false},
    {"penalties whole vocab (id walk)", 1.3f, -1, 1.0f, 0.0f, 1.1f, 0.2f, 0, false, 0, 0, true, 0, 2, 0, false},
    {"min_p tiny keeps all (id walk)", 1.0f, -1, 1.0f, 1e-30f, 1.0f, 0, 0, false, 0, 0, true, 5, 0, 0, false},
    {"top_p0.5 ids out of range", 1.0f, -1, 0.5f, 0.0f, 1.0f, 0, 0, false, 0, 0, true, 5, 5, 0, false},
    {"greedy top64", 0.0f, -1, 1.0f, 0.0f, 1.0f, 0, 0.1f, false, 0, 0, true, 64, 0, 0, false},
    {"top_k64 top_p0.99 lp64", 0.9f, 64, 0.99f, 0.0f, 1.0f, 0, 0, false, 0, 0, true, 64, 0, 1, false},
    {"all masked", 0.8f, 20, 0.9f, 0.0f, 1.0f, 0, 0, false, 0, 0, true, 5, 2, 0, true},
    {"all masked greedy", 0.0f, -1, 1.0f, 0.0f, 1.0f, 0, 0, false, 0, 0, false, 0, 0, 0, true},
};
constexpr int kRowsPerCase = 3;

bool close(float a, float b) {
  if (a == b) return true;  // float32 min on both sides included
  return std::fabs(a - b) <= 1e-4f * (1.0f + std::fabs(b));
}

// Host arrays of one batch of rows, in SampleRowsParams order.
struct Batch : SampleRowsBatch {
  std::vector<float> logits;
  std::vector<int32_t> case_of;  // [R] index into kCases
  // sample_row's own answer per row (the reference's reference)
  std::vector<int32_t> sr_token;
  std::vector<float> sr_logprob;
};

template <class T>
T* to_device(const Backend& be, const std::vector<T>& v) {
  T* d = static_cast<T*>(be.alloc(std::max<size_t>(1, v.size()) * sizeof(T)));
  if (!v.empty()) be.upload(d, v.data(), v.size() * sizeof(T));
  return d;
}

}  // namespace

int main() {
  const Backend* cuda = gpu_check::cuda_or_skip();
  if (!cuda) return 0;
  if (!cuda->sample_rows) {
    check(false, "the CUDA table has sample_rows");
    return gpu_check::summary();
  }
  std::mt19937 rng(11);
  constexpr int nC = int(sizeof(kCases) / sizeof(kCases[0]));
  for (int V : {1000, 32000, 151936}) {
    const int R = nC * kRowsPerCase;
    Batch b;
    b.logits.resize(size_t(R) * V);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    std::uniform_int_distribution<int> tok(0, V - 1);
    for (int r = 0; r < R; ++r) {
      const int ci = r / kRowsPerCase;
      const Case& c = kCases[ci];
      // stored at logits row R-1-r: rows[] is a permutation
      const int at = R - 1 - r;
      float* row = b.logits.data() + size_t(at) * V;
      for (int i = 0; i < V; ++i) row[i] = nd(rng);
      if (c.ties == 1)
        for (int i = 0; i < V; ++i) row[i] = std::round(row[i] * 4.0f) / 4.0f;
      if (c.ties == 2) {
        const int a = tok(rng), d = tok(rng), e = tok(rng);
        row[a] = row[d] = row[e] = 25.0f;
      }
      if (r % kRowsPerCase == 1) row[tok(rng)] = std::numeric_limits<float>::quiet_NaN();
      if (c.masked)
        for (int i = 0; i < V; ++i)
          row[i] = i % 3 ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
      SamplingParams p;
      p.temperature = c.T;
      p.top_k = c.top_k;
      p.top_p = c.top_p;
      p.min_p = c.min_p;
      p.repetition_penalty = c.rep;
      p.frequency_penalty = c.freq;
      p.presence_penalty = c.pres;
      p.repetition_penalty_counts_prompt = c.counts_prompt;
      p.min_new_tokens = c.min_new;
      p.stop_token_ids = {tok(rng), tok(rng)};
      for (int k = 0; k < c.n_bias; ++k) p.logit_bias.push_back({tok(rng), float(k % 2 ? -3.5 : 6.25)});
      if (c.n_bias >= 3) p.logit_bias.push_back(p.logit_bias[0]);  // a repeated token
      p.return_logprob = c.lp;
      p.top_logprobs_num = c.top_n;
      for (int k = 0; k < c.n_ids; ++k) p.token_ids_logprob.push_back(tok(rng));
      if (c.n_ids >= 5) p.token_ids_logprob[0] = -1, p.token_ids_logprob[1] = V + 5;
      if (c.min_new && c.n_ids >= 2) p.token_ids_logprob[1] = p.stop_token_ids[0];  // a masked id
      std::vector<int32_t> prompt(64);
      for (auto& t : prompt) t = tok(rng);
      SamplerState st;
      sampler_state_init(st, p, prompt.data(), prompt.size(), {V - 1, 2});
      for (int k = 0; k < 40; ++k) sampler_state_append(st, k % 3 ? tok(rng) : prompt[size_t(k)]);
      for (int k = 0; k < 5; ++k) sampler_state_append(st, prompt[0]);  // a token seen many times

      b.case_of.push_back(ci);
      // the uniform as the scheduler draws it (SampleRowsBatch::add), and sample_row's answer from the same stream
      SamplerState st_ref = st;
      b.add(at, p, st, V);
      std::vector<float> copy(row, row + V);
      SampleOutput so;
      sample_row(copy.data(), V, p, st_ref, so);
      b.sr_token.push_back(so.token);
      b.sr_logprob.push_back(p.return_logprob ? so.logprob : std::numeric_limits<float>::quiet_NaN());
    }
    const int NI = int(b.ids.size());

    // CPU reference
    std::vector<float> ref_logits = b.logits;
    std::vector<int32_t> ref_tok(R, -9), ref_st(R, -9), ref_tid(size_t(R) * kSampleMaxTopN, -9);
    std::vector<float> ref_lp(R), ref_tlp(size_t(R) * kSampleMaxTopN), ref_ilp(std::max(1, NI));
    SampleRowsParams hp{};
    b.fill_inputs(hp, V);
    hp.logits = ref_logits.data();
    hp.token = ref_tok.data(), hp.logprob = ref_lp.data(), hp.status = ref_st.data();
    hp.top_ids = ref_tid.data(), hp.top_lps = ref_tlp.data(), hp.ids_lps = ref_ilp.data();
    sample_rows_cpu(hp);
    {
      int bad = 0;
      std::string first;
      for (int r = 0; r < R; ++r) {
        const bool ok = ref_tok[r] == b.sr_token[r] &&
                        (std::isnan(b.sr_logprob[r]) || ref_lp[r] == b.sr_logprob[r]);
        if (!ok && bad++ == 0)
          first = std::string(" first: ") + kCases[b.case_of[r]].name + " " + std::to_string(ref_tok[r]) + " vs " +
                  std::to_string(b.sr_token[r]);
      }
      check(bad == 0, "V=" + std::to_string(V) + " sample_rows_cpu equals sample_row (" + std::to_string(R - bad) +
                          "/" + std::to_string(R) + ")" + first);
    }

    // CUDA
    float* d_logits = to_device(*cuda, b.logits);
    int32_t* d_rows = to_device(*cuda, b.rows);
    float* d_inv = to_device(*cuda, b.inv_temp);
    int32_t* d_k = to_device(*cuda, b.top_k);
    float* d_p = to_device(*cuda, b.top_p);
    float* d_minp = to_device(*cuda, b.min_p);
    double* d_u = to_device(*cuda, b.u);
    int32_t* d_flags = to_device(*cuda, b.flags);
    int32_t* d_topn = to_device(*cuda, b.top_n);
    int32_t* d_eptr = to_device(*cuda, b.edit_indptr);
    LogitEdit* d_edits = to_device(*cuda, b.edits);
    int32_t* d_iptr = to_device(*cuda, b.ids_indptr);
    int32_t* d_ids = to_device(*cuda, b.ids);
    std::vector<int32_t> tok_out(R, -7), st_out(R, -7), tid_out(size_t(R) * kSampleMaxTopN, -7);
    std::vector<float> lp_out(R, NAN), tlp_out(size_t(R) * kSampleMaxTopN, NAN), ilp_out(std::max(1, NI), NAN);
    int32_t* d_tok = to_device(*cuda, tok_out);  // poisoned
    int32_t* d_st = to_device(*cuda, st_out);
    int32_t* d_tid = to_device(*cuda, tid_out);
    float* d_lp = to_device(*cuda, lp_out);
    float* d_tlp = to_device(*cuda, tlp_out);
    float* d_ilp = to_device(*cuda, ilp_out);
    // the kernel's scratch, poisoned: it must not rely on any initial contents
    const size_t scratch_bytes = sample_rows_scratch_bytes(R, V);
    void* d_scratch = cuda->alloc(scratch_bytes);
    cudaMemset(d_scratch, 0xa5, scratch_bytes);
    SampleRowsParams dp{d_logits, d_rows, R, V, d_inv, d_k, d_p, d_minp, d_u, d_flags, d_topn, d_eptr, d_edits,
                        d_iptr, d_ids, d_tok, d_lp, d_st, d_tid, d_tlp, d_ilp, d_scratch};
    cuda->sample_rows(dp);
    cuda->sync();
    const cudaError_t err = cudaGetLastError();
    check(err == cudaSuccess, "V=" + std::to_string(V) + " kernel ran (" + cudaGetErrorString(err) + ")");
    std::vector<float> dev_logits(b.logits.size());
    cuda->download(dev_logits.data(), d_logits, dev_logits.size() * sizeof(float));
    cuda->download(tok_out.data(), d_tok, size_t(R) * 4);
    cuda->download(st_out.data(), d_st, size_t(R) * 4);
    cuda->download(lp_out.data(), d_lp, size_t(R) * 4);
    cuda->download(tid_out.data(), d_tid, tid_out.size() * 4);
    cuda->download(tlp_out.data(), d_tlp, tlp_out.size() * 4);
    if (NI) cuda->download(ilp_out.data(), d_ilp, size_t(NI) * 4);

    int total_mismatch = 0;
    for (int ci = 0; ci < nC; ++ci) {
      const Case& c = kCases[ci];
      int tok_bad = 0;
      bool lp_ok = true, top_ok = true, ids_ok = true, edits_ok = true, st_ok = true;
      std::string detail;
      for (int r = ci * kRowsPerCase; r < (ci + 1) * kRowsPerCase; ++r) {
        const size_t at = size_t(b.rows[r]) * V;
        for (int i = 0; i < V && edits_ok; ++i) {
          const float a = dev_logits[at + i], e = ref_logits[at + i];
          edits_ok = std::memcmp(&a, &e, 4) == 0 || (std::isnan(a) && std::isnan(e));
        }
        st_ok = st_ok && st_out[r] == ref_st[r];
        if (tok_out[r] != ref_tok[r]) {
          if (tok_bad++ == 0)
            detail += " row " + std::to_string(r) + " token " + std::to_string(tok_out[r]) + " vs " +
                      std::to_string(ref_tok[r]);
          continue;  // the logprobs of different tokens differ
        }
        if (!close(lp_out[r], ref_lp[r])) {
          if (lp_ok) detail += " logprob " + std::to_string(lp_out[r]) + " vs " + std::to_string(ref_lp[r]);
          lp_ok = false;
        }
        if (ref_st[r] || !(b.flags[r] & kSampleReturnLogprob)) continue;
        for (int j = 0; j < b.top_n[r]; ++j) {
          const size_t k = size_t(r) * kSampleMaxTopN + j;
          if (tid_out[k] != ref_tid[k] || !close(tlp_out[k], ref_tlp[k])) {
            if (top_ok)
              detail += " top[" + std::to_string(j) + "] " + std::to_string(tid_out[k]) + "/" +
                        std::to_string(tlp_out[k]) + " vs " + std::to_string(ref_tid[k]) + "/" +
                        std::to_string(ref_tlp[k]);
            top_ok = false;
          }
        }
        for (int j = b.ids_indptr[r]; j < b.ids_indptr[r + 1]; ++j)
          if (!close(ilp_out[j], ref_ilp[j])) {
            if (ids_ok) detail += " id lp " + std::to_string(ilp_out[j]) + " vs " + std::to_string(ref_ilp[j]);
            ids_ok = false;
          }
      }
      total_mismatch += tok_bad;
      if (!edits_ok) detail += " edited logits differ";
      if (!st_ok) detail += " status differs";
      check(tok_bad == 0 && lp_ok && top_ok && ids_ok && edits_ok && st_ok,
            "V=" + std::to_string(V) + " " + c.name + detail);
    }
    std::printf("V=%d: %d of %d tokens differ from the CPU reference\n", V, total_mismatch, R);

    // The same rows one at a time (R = 1, from the pristine logits): every output bit-equal to the batch's,
    // so that a row's result does not depend on the rows beside it.
    {
      cuda->upload(d_logits, b.logits.data(), b.logits.size() * sizeof(float));
      cudaMemset(d_scratch, 0x5a, scratch_bytes);
      std::vector<int32_t> tok1(R, -7), st1(R, -7), tid1(size_t(R) * kSampleMaxTopN, -7);
      std::vector<float> lp1(R, NAN), tlp1(size_t(R) * kSampleMaxTopN, NAN), ilp1(std::max(1, NI), NAN);
      cuda->upload(d_tok, tok1.data(), size_t(R) * 4);
      cuda->upload(d_st, st1.data(), size_t(R) * 4);
      cuda->upload(d_lp, lp1.data(), size_t(R) * 4);
      cuda->upload(d_tid, tid1.data(), tid1.size() * 4);
      cuda->upload(d_tlp, tlp1.data(), tlp1.size() * 4);
      cuda->upload(d_ilp, ilp1.data(), ilp1.size() * 4);
      for (int r = 0; r < R; ++r) {
        // row r's inputs and outputs at their batch positions (the indptr offsets index the whole lists)
        SampleRowsParams one{d_logits, d_rows + r, 1, V, d_inv + r, d_k + r, d_p + r, d_minp + r, d_u + r,
                             d_flags + r, d_topn + r, d_eptr + r, d_edits, d_iptr + r, d_ids, d_tok + r, d_lp + r,
                             d_st + r, d_tid + size_t(r) * kSampleMaxTopN, d_tlp + size_t(r) * kSampleMaxTopN, d_ilp,
                             d_scratch};
        cuda->sample_rows(one);
      }
      cuda->sync();
      cuda->download(tok1.data(), d_tok, size_t(R) * 4);
      cuda->download(st1.data(), d_st, size_t(R) * 4);
      cuda->download(lp1.data(), d_lp, size_t(R) * 4);
      cuda->download(tid1.data(), d_tid, tid1.size() * 4);
      cuda->download(tlp1.data(), d_tlp, tlp1.size() * 4);
      if (NI) cuda->download(ilp1.data(), d_ilp, size_t(NI) * 4);
      auto same = [](const void* a, const void* c, size_t n) { return std::memcmp(a, c, n) == 0; };
      int bad = 0;
      std::string first;
      for (int r = 0; r < R; ++r) {
        bool ok = tok1[r] == tok_out[r] && st1[r] == st_out[r] && same(&lp1[r], &lp_out[r], 4);
        if (!st_out[r] && (b.flags[r] & kSampleReturnLogprob)) {
          const size_t k = size_t(r) * kSampleMaxTopN, n = size_t(b.top_n[r]);
          ok = ok && same(&tid1[k], &tid_out[k], 4 * n) && same(&tlp1[k], &tlp_out[k], 4 * n);
          const size_t j0 = size_t(b.ids_indptr[r]), j1 = size_t(b.ids_indptr[r + 1]);
          ok = ok && same(ilp1.data() + j0, ilp_out.data() + j0, 4 * (j1 - j0));
        }
        if (!ok && bad++ == 0)
          first = std::string(" first: ") + kCases[b.case_of[r]].name + " token " + std::to_string(tok1[r]) + " vs " +
                  std::to_string(tok_out[r]);
      }
      check(bad == 0, "V=" + std::to_string(V) + " one row at a time bit-equal to the batch (" +
                          std::to_string(R - bad) + "/" + std::to_string(R) + ")" + first);
    }
    for (void* ptr : std::initializer_list<void*>{d_logits, d_rows, d_inv, d_k, d_p, d_minp, d_u, d_flags, d_topn,
                                                  d_eptr, d_edits, d_iptr, d_ids, d_tok, d_st, d_tid, d_lp, d_tlp,
                                                  d_ilp, d_scratch})
      cuda->free(ptr);
  }
  return gpu_check::summary();
}
