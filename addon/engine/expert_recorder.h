// The expert distribution recorder (SGLang's --expert-distribution-recorder-mode): a window of the last
// buffer_size forward passes' routing, fed by the scheduler with each recorded pass (Model::take_expert_pass)
// and read by dump(). Modes:
//  - stat / stat_approx: the per-(layer, expert) token counts summed over the window (stat_approx is stat
//    here: there is no dispatcher whose approximate counts it would read);
//  - per_pass: the same, plus each pass's counts;
//  - per_token: per_pass, plus each pass's chosen experts per layer and token.
// Engine thread only.
#pragma once
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "models/model.h"

namespace sgl {

enum class ExpertRecordMode { kStat, kStatApprox, kPerPass, kPerToken };

// "stat" | "stat_approx" | "per_pass" | "per_token"; throws std::invalid_argument naming the choices.
ExpertRecordMode expert_record_mode_parse(const std::string& s);
const char* expert_record_mode_name(ExpertRecordMode m);

struct ExpertRecordDump {
  ExpertRecordMode mode = ExpertRecordMode::kStat;
  bool recording = false;
  int32_t num_layers = 0, num_experts = 0, top_k = 0;
  int64_t num_passes = 0;               // passes in the window
  std::vector<int32_t> logical_count;   // [L * E] summed over the window
  std::vector<double> pass_ids;         // [P] per_pass / per_token
  std::vector<int32_t> pass_counts;     // [P * L * E]
  std::vector<int32_t> pass_tokens;     // [P] per_token
  std::vector<int32_t> topk_ids;        // per_token: per pass [L, T_p, K], concatenated
};

class ExpertRecorder {
 public:
  // buffer_size: passes kept (> 0), or -1 for all of them.
  ExpertRecorder(ExpertRecordMode mode, int64_t buffer_size, int32_t num_layers, int32_t num_experts, int32_t top_k);

  void start();  // clears the record and records
  void stop();   // keeps the record
  void reset();  // clears the record; recording or not stays as it is (SGLang's dump_record then _reset)
  bool recording() const { return recording_; }
  // What the model must record for the passes to come: 0 nothing, 1 counts, 2 counts and per-token ids.
  int32_t level() const { return !recording_ || E_ == 0 ? 0 : mode_ == ExpertRecordMode::kPerToken ? 2 : 1; }
  void add(const ExpertPass& pass, int64_t pass_id);
  ExpertRecordDump dump() const;

 private:
  struct Pass {
    int64_t id = 0;
    int32_t tokens = 0;
    std::vector<int32_t> counts;  // [L * E]; kept only where the window or the mode needs it
    std::vector<int32_t> topk;    // per_token: [L, T, K]
  };
  bool keeps_passes() const { return mode_ == ExpertRecordMode::kPerPass || mode_ == ExpertRecordMode::kPerToken; }

  ExpertRecordMode mode_;
  int64_t buffer_size_;
  int32_t L_, E_, K_;
  bool recording_ = false;
  std::deque<Pass> window_;
  std::vector<int64_t> sum_;  // [L * E] over the window
  int64_t num_passes_ = 0;
};

}  // namespace sgl
