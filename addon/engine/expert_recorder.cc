#include "engine/expert_recorder.h"

#include <algorithm>
#include <climits>
#include <stdexcept>

namespace sgl {

ExpertRecordMode expert_record_mode_parse(const std::string& s) {
  if (s == "stat") return ExpertRecordMode::kStat;
  if (s == "stat_approx") return ExpertRecordMode::kStatApprox;
  if (s == "per_pass") return ExpertRecordMode::kPerPass;
  if (s == "per_token") return ExpertRecordMode::kPerToken;
  throw std::invalid_argument("expert distribution recorder mode must be one of stat, stat_approx, per_pass, per_token; got \"" +
                              s + "\"");
}

const char* expert_record_mode_name(ExpertRecordMode m) {
  switch (m) {
    case ExpertRecordMode::kStat: return "stat";
    case ExpertRecordMode::kStatApprox: return "stat_approx";
    case ExpertRecordMode::kPerPass: return "per_pass";
    case ExpertRecordMode::kPerToken: return "per_token";
  }
  return "stat";
}

ExpertRecorder::ExpertRecorder(ExpertRecordMode mode, int64_t buffer_size, int32_t num_layers, int32_t num_experts,
                               int32_t top_k)
    : mode_(mode), buffer_size_(buffer_size), L_(num_layers), E_(num_experts), K_(top_k),
      sum_(size_t(num_layers) * size_t(num_experts), 0) {
  if (buffer_size == 0 || buffer_size < -1)
    throw std::invalid_argument("expert distribution recorder buffer size must be positive or -1, got " +
                                std::to_string(buffer_size));
}

void ExpertRecorder::start() {
  window_.clear();
  std::fill(sum_.begin(), sum_.end(), 0);
  num_passes_ = 0;
  recording_ = true;
}

void ExpertRecorder::stop() { recording_ = false; }

void ExpertRecorder::reset() {
  window_.clear();
  std::fill(sum_.begin(), sum_.end(), 0);
  num_passes_ = 0;
}

void ExpertRecorder::add(const ExpertPass& p, int64_t pass_id) {
  if (!recording_ || p.counts.size() != sum_.size()) return;
  for (size_t i = 0; i < sum_.size(); ++i) sum_[i] += p.counts[i];
  ++num_passes_;
  // An unlimited window in a stat mode needs only the sums; otherwise each pass is kept to leave it again.
  if (buffer_size_ < 0 && !keeps_passes()) return;
  Pass q;
  q.id = pass_id;
  q.tokens = p.T;
  q.counts = p.counts;
  if (mode_ == ExpertRecordMode::kPerToken) q.topk = p.topk;
  window_.push_back(std::move(q));
  if (buffer_size_ > 0 && int64_t(window_.size()) > buffer_size_) {
    const Pass& old = window_.front();
    for (size_t i = 0; i < sum_.size(); ++i) sum_[i] -= old.counts[i];
    window_.pop_front();
    --num_passes_;
  }
}

ExpertRecordDump ExpertRecorder::dump() const {
  ExpertRecordDump d;
  d.mode = mode_;
  d.recording = recording_;
  d.num_layers = L_;
  d.num_experts = E_;
  d.top_k = K_;
  d.num_passes = num_passes_;
  d.logical_count.resize(sum_.size());
  for (size_t i = 0; i < sum_.size(); ++i) d.logical_count[i] = int32_t(std::min<int64_t>(sum_[i], INT32_MAX));
  if (!keeps_passes()) return d;
  for (const Pass& p : window_) {
    d.pass_ids.push_back(double(p.id));
    d.pass_counts.insert(d.pass_counts.end(), p.counts.begin(), p.counts.end());
    if (mode_ == ExpertRecordMode::kPerToken) {
      d.pass_tokens.push_back(p.tokens);
      d.topk_ids.insert(d.topk_ids.end(), p.topk.begin(), p.topk.end());
    }
  }
  return d;
}

}  // namespace sgl
