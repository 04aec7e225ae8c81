// Free list of KV cache page ids [0, num_pages). Single-threaded (the engine thread owns it).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace sgl {

class PagePool {
 public:
  explicit PagePool(int32_t num_pages);

  // Appends n page ids to out; returns false (out untouched) if fewer than n are free.
  bool alloc(int32_t n, std::vector<int32_t>& out);
  // Throws std::logic_error on an out-of-range id or a page that is already free.
  void free(const int32_t* ids, size_t n);
  void free(const std::vector<int32_t>& ids) { free(ids.data(), ids.size()); }

  int32_t available() const { return int32_t(free_list_.size()); }
  int32_t capacity() const { return capacity_; }
  bool is_free(int32_t id) const { return id >= 0 && id < capacity_ && is_free_[id]; }

 private:
  int32_t capacity_;
  std::vector<int32_t> free_list_;  // a stack: pop from the back
  std::vector<bool> is_free_;       // double-free detection
};

}  // namespace sgl
