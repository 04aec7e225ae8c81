// The paged KV cache storage: per layer, K and V pages [num_pages, P, Hkv, D] in the backend's activation
// dtype. Which pages belong to which sequence is the caller's business (page tables in ForwardBatch).
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace sgl {

class KvCache {
 public:
  KvCache(const Backend& backend, int num_layers, int num_pages, int page_size, int num_kv_heads, int head_dim);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  void* k(int layer) const { return k_[layer]; }  // [num_pages, P, Hkv, D]
  void* v(int layer) const { return v_[layer]; }  // [num_pages, P, Hkv, D]
  int num_pages() const { return num_pages_; }
  // One page past the pool (never handed out): padding sequences of a CUDA-graph step write their K/V there.
  int scratch_page() const { return num_pages_; }
  int page_size() const { return page_size_; }
  int num_layers() const { return int(k_.size()); }
  size_t bytes() const;

 private:
  const Backend& backend_;
  int num_pages_, page_size_, num_kv_heads_, head_dim_;
  std::vector<void*> k_, v_;
};

}  // namespace sgl
