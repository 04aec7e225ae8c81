// Radix prefix cache over token ids at page granularity (after SGLang's mem_cache/radix_cache.py): every
// edge is a token run whose length is a multiple of page_size, and its node owns the KV pages of those
// tokens. Single-threaded (the engine thread owns it), so no locking.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/page_pool.h"

namespace sgl {

class RadixCache {
 public:
  struct Node {
    Node* parent = nullptr;
    // Keyed by the first page of the child's edge (children never share a first page).
    std::map<std::vector<int32_t>, std::unique_ptr<Node>> children;
    std::vector<int32_t> tokens;  // the edge; size is a multiple of page_size
    std::vector<int32_t> pages;   // tokens.size() / page_size pages
    int32_t lock_ref = 0;         // locks on this node or any descendant
    uint64_t last_access = 0;     // logical clock, for LRU
    uint64_t id = 0;              // creation order: breaks LRU ties deterministically
  };

  struct MatchResult {
    std::vector<int32_t> pages;  // pages of the matched prefix, in order
    size_t matched_tokens = 0;   // a multiple of page_size
    Node* last_node = nullptr;   // covers exactly the matched prefix (root when nothing matched)
  };

  RadixCache(PagePool& pool, int32_t page_size, bool disabled);
  ~RadixCache();
  RadixCache(const RadixCache&) = delete;
  RadixCache& operator=(const RadixCache&) = delete;

  // Longest cached prefix of tokens[0, n) in whole pages. May split a node so last_node ends exactly at
  // the match. Updates LRU times along the path.
  MatchResult match_prefix(const int32_t* tokens, size_t n);

  // Inserts the first floor(n / P) * P tokens; pages[i] holds tokens [i*P, (i+1)*P). Returns how many
  // leading tokens were already cached: the caller's pages for those are not taken (the caller frees the
  // ones it allocated itself, i.e. those past its own matched prefix); the tree owns all later pages.
  size_t insert(const int32_t* tokens, size_t n, const int32_t* pages);

  // lock/unlock the node and its ancestors (excluding root). unlock below zero throws std::logic_error.
  void lock(Node* node);
  void unlock(Node* node);

  // Frees least-recently-used unlocked leaves until >= num_pages pages were freed or nothing is evictable.
  int32_t evict(int32_t num_pages);

  // Frees every page and resets the tree; refused (false, no change) while any node is locked.
  bool flush();

  size_t total_cached_pages() const { return total_pages_; }
  size_t protected_pages() const { return protected_pages_; }
  size_t evictable_pages() const { return evictable_pages_; }
  int32_t page_size() const { return page_size_; }
  bool disabled() const { return disabled_; }
  Node* root() { return root_.get(); }

  std::vector<int32_t> all_pages() const;  // every page the tree owns (tests / debugging)
  // Recomputes the counters and structural invariants from the tree; returns "" or a description.
  std::string check_invariants() const;
  std::string debug_string() const;

 private:
  std::vector<int32_t> page_key(const int32_t* tokens) const {
    return std::vector<int32_t>(tokens, tokens + page_size_);
  }
  size_t match_pages(const Node* node, const int32_t* tokens, size_t max_pages) const;
  Node* split(Node* node, size_t keep_pages);
  std::unique_ptr<Node> new_node(Node* parent);
  void free_subtree_pages(Node* node);
  static void destroy(std::unique_ptr<Node> node);

  PagePool& pool_;
  int32_t page_size_;
  bool disabled_;
  std::unique_ptr<Node> root_;
  uint64_t clock_ = 0, next_id_ = 0;
  size_t total_pages_ = 0, protected_pages_ = 0, evictable_pages_ = 0;
};

}  // namespace sgl
