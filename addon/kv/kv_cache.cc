#include "kv/kv_cache.h"

#include <stdexcept>
#include <string>

namespace sgl {

KvCache::KvCache(const Backend& backend, int num_layers, int num_pages, int page_size, int num_kv_heads,
                 int head_dim)
    : backend_(backend), num_pages_(num_pages), page_size_(page_size), num_kv_heads_(num_kv_heads), head_dim_(head_dim) {
  if (num_pages <= 0) throw std::invalid_argument("numPages must be positive, got " + std::to_string(num_pages));
  if (page_size <= 0) throw std::invalid_argument("pageSize must be positive, got " + std::to_string(page_size));
  size_t per_layer = size_t(num_pages + 1) * page_size  // + the scratch page
                      * num_kv_heads * head_dim * dtype_size(backend.act_dtype);
  for (int l = 0; l < num_layers; l++) {
    void* k = backend.alloc(per_layer);
    void* v = backend.alloc(per_layer);
    if (!k || !v) {
      if (k) backend.free(k);
      if (v) backend.free(v);
      for (void* p : k_) backend.free(p);
      for (void* p : v_) backend.free(p);
      throw std::runtime_error("out of memory allocating the KV cache (" + std::to_string(per_layer * 2 * num_layers) + " bytes)");
    }
    backend.memset_zero(k, per_layer);
    backend.memset_zero(v, per_layer);
    k_.push_back(k);
    v_.push_back(v);
  }
}

KvCache::~KvCache() {
  for (size_t i = 0; i < k_.size(); i++) {
    backend_.free(k_[i]);
    backend_.free(v_[i]);
  }
}

size_t KvCache::bytes() const {
  return size_t(num_pages_) * page_size_ * num_kv_heads_ * head_dim_ * dtype_size(backend_.act_dtype) * 2 * k_.size();
}

}  // namespace sgl
