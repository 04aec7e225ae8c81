#include "engine/page_pool.h"

#include <stdexcept>
#include <string>

namespace sgl {

PagePool::PagePool(int32_t num_pages) : capacity_(num_pages) {
  if (num_pages < 0) throw std::invalid_argument("PagePool: negative num_pages");
  free_list_.reserve(num_pages);
  // Reversed so that a fresh pool hands out 0, 1, 2, ... (easier to read in logs and tests).
  for (int32_t i = num_pages - 1; i >= 0; --i) free_list_.push_back(i);
  is_free_.assign(num_pages, true);
}

bool PagePool::alloc(int32_t n, std::vector<int32_t>& out) {
  if (n < 0 || size_t(n) > free_list_.size()) return false;
  out.reserve(out.size() + n);
  for (int32_t i = 0; i < n; ++i) {
    int32_t id = free_list_.back();
    free_list_.pop_back();
    is_free_[id] = false;
    out.push_back(id);
  }
  return true;
}

void PagePool::free(const int32_t* ids, size_t n) {
  // Mark as we validate (this also catches an id listed twice in one call); on error undo the marks so a
  // bad call leaves the pool unchanged.
  for (size_t i = 0; i < n; ++i) {
    int32_t id = ids[i];
    std::string err;
    if (id < 0 || id >= capacity_)
      err = "PagePool::free: page " + std::to_string(id) + " out of range [0, " + std::to_string(capacity_) + ")";
    else if (is_free_[id])
      err = "PagePool::free: double free of page " + std::to_string(id);
    if (!err.empty()) {
      for (size_t j = 0; j < i; ++j) is_free_[ids[j]] = false;
      throw std::logic_error(err);
    }
    is_free_[id] = true;
  }
  free_list_.insert(free_list_.end(), ids, ids + n);
}

}  // namespace sgl
